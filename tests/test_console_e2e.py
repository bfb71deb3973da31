"""`tokbot console` as a user runs it: a subprocess, scripted on stdin, against the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import sys
import termios
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.tokmodel.fake import FakeTokModel, Fault
from bot.tokmodel.fake_vision import images_in, solid_png
from tests.conftest import API_KEY


@dataclass
class Run:
    code: int
    out: str
    err: str


async def console(
    script: str,
    tmp_path: Path,
    fake: FakeTokModel | None,
    *extra: str,
    merged: bool = False,
    **env: str,
) -> Run:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/console.db",
        "TOKBOT_OUTPUT_DIR": str(tmp_path / "out"),
        "TOKBOT_LOG_LEVEL": "DEBUG",
        "TOKBOT_TOKMODEL_TIMEOUT": "2",
        "TOKBOT_TOKMODEL_RETRY_BUDGET": "2",
    }
    if fake is not None:
        environment |= {"TOKMODEL_API_KEY": API_KEY, "TOKMODEL_BASE_URL": fake.url}
    environment |= env
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "console",
        *extra,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merged else asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=environment,
    )
    out, err = await asyncio.wait_for(process.communicate(script.encode()), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), (err or b"").decode())


def write_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(8000)
        clip.writeframes(b"\x00\x10" * 8000)


async def test_history_survives_a_restart(fake: FakeTokModel, tmp_path: Path) -> None:
    first = await console("/ask Remember the number 42\n/ask Which number?\n", tmp_path, fake)
    assert first.code == 0, first.err
    assert "You said: «" in first.out
    assert "I can see 2 earlier message(s)" in first.out
    second = await console("/ask And now?\n", tmp_path, fake)
    assert second.code == 0, second.err
    assert "I can see 4 earlier message(s)" in second.out
    assert "Remember the number 42" in second.out  # «The first was: …»
    assert API_KEY not in first.err + second.err


async def test_plain_lines_are_questions_and_quit_ends(fake: FakeTokModel, tmp_path: Path) -> None:
    run = await console("hello there\n/quit\n/ask never asked\n", tmp_path, fake)
    assert run.code == 0
    assert "hello there" in run.out and "never asked" not in run.out


async def test_media_commands_write_files_and_transcripts_join_the_history(
    fake: FakeTokModel, tmp_path: Path
) -> None:
    clip = tmp_path / "standup.wav"
    write_wav(clip)
    script = (
        f"/imagine --size 256x256 a lighthouse\n/tts hello team\n/transcribe {clip}\n/ask ok?\n"
    )
    run = await console(script, tmp_path, fake)
    assert run.code == 0, run.err
    files = sorted((tmp_path / "out").iterdir())
    png = next(f for f in files if f.suffix == ".png")
    mp3 = next(f for f in files if f.suffix == ".mp3")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and str(png) in run.out
    assert mp3.stat().st_size > 100 and str(mp3) in run.out
    assert "(stand-in transcript of standup.wav" in run.out
    last_chat = [r for r in fake.requests if r.path == "/v1/chat/completions"][-1]
    assert last_chat.json is not None
    assert any(
        "(voice message): (stand-in transcript" in m["content"] for m in last_chat.json["messages"]
    )


async def test_transcribe_with_answer_is_a_voice_question(
    fake: FakeTokModel, tmp_path: Path
) -> None:
    clip = tmp_path / "question.wav"
    write_wav(clip)
    run = await console(f"/transcribe --answer {clip}\n/ask and then?\n", tmp_path, fake)
    assert run.code == 0, run.err
    transcript = run.out.index("🎙️ ")
    answered = run.out.index("You said: «")
    assert transcript < answered  # the transcript, then its answer
    assert "(voice message): (stand-in transcript of question.wav" in run.out[answered:]
    # Both are history: the follow-up sees the voice question and its answer.
    assert "I can see 2 earlier message(s)" in run.out


async def test_options_after_the_text_are_read(fake: FakeTokModel, tmp_path: Path) -> None:
    clip = tmp_path / "question.wav"
    write_wav(clip)
    red, blue = solid_png(64, 64, (220, 30, 30)), solid_png(16, 16, (30, 60, 220))
    (tmp_path / "my red.png").write_bytes(red)
    (tmp_path / "blue.png").write_bytes(blue)
    script = (
        "/imagine a lighthouse --size 256x256\n"
        "/imagine a harbour --size 512x512 at dusk\n"
        f"/transcribe {clip} --answer\n"
        '/ask which is bigger? --image "my red.png" --image blue.png\n'
    )
    run = await console(script, tmp_path, fake)
    assert run.code == 0, run.err
    drawn = [r.json for r in fake.requests if r.path == "/v1/images/generations"]
    assert [(d["prompt"], d["size"]) for d in drawn if d] == [
        ("a lighthouse", "256x256"),
        ("a harbour at dusk", "512x512"),
    ]
    assert "You said: «" in run.out  # --answer after the path answered the transcript
    chats = [r.json for r in fake.requests if r.path == "/v1/chat/completions"]
    assert images_in(chats[-1]) == [red, blue]
    assert "which is bigger? [picture: my red.png]" in run.out


async def test_ask_with_images_sends_the_pictures_and_a_follow_up_still_has_them(
    fake: FakeTokModel, tmp_path: Path
) -> None:
    red, blue = solid_png(64, 64, (220, 30, 30)), solid_png(16, 16, (30, 60, 220))
    (tmp_path / "my red.png").write_bytes(red)
    (tmp_path / "blue.png").write_bytes(blue)
    script = '/ask --image "my red.png" --image blue.png which is bigger?\n/ask and its colour?\n'
    run = await console(script, tmp_path, fake)
    assert run.code == 0, run.err
    first, second = [r.json for r in fake.requests if r.path == "/v1/chat/completions"]
    assert images_in(first) == [red, blue] and images_in(second) == [red, blue]
    assert "which is bigger? [picture: my red.png]" in run.out
    assert "I see 2 picture(s): a 64×64 PNG, mostly red; a 16×16 PNG, mostly blue" in run.out


async def test_a_model_that_refused_pictures_is_not_asked_with_them_again(
    fake: FakeTokModel, tmp_path: Path
) -> None:
    blind = "mistral/mistral-large-latest"
    fake.text_only_models.add(blind)
    (tmp_path / "red.png").write_bytes(solid_png(8, 8, (220, 30, 30)))
    (tmp_path / "blue.png").write_bytes(solid_png(8, 8, (30, 60, 220)))
    script = "/ask --image red.png what's this?\n/forget\n/ask --image blue.png and this?\n"
    run = await console(script, tmp_path, fake, TOKBOT_CHAT_MODEL=blind)
    assert run.code == 0, run.err
    models = [r.json["model"] for r in fake.requests if r.path == "/v1/chat/completions" and r.json]
    assert models == [blind, "openai/gpt-4o-mini", "openai/gpt-4o-mini"]
    assert run.out.count(f"`{blind}` can't look at pictures, so `openai/gpt-4o-mini`") == 2


async def test_each_failure_is_explained_and_the_turn_kept(
    fake: FakeTokModel, tmp_path: Path
) -> None:
    fake.fail(Fault(status=403, path="/v1/chat/completions"))
    fake.fail(Fault(status=429, retry_after=30, times=-1, path="/v1/audio/speech"))
    run = await console("/ask are we out?\n/tts hi\n/ask are we back?\n", tmp_path, fake)
    assert run.code == 0
    assert "out of credits" in run.out
    assert "try again in about 30 seconds" in run.out
    # The refused question was kept: the next answer sees it (and the /tts request).
    assert "I can see 2 earlier message(s)" in run.out and "are we out?»" in run.out
    assert API_KEY not in run.out + run.err
    assert "Traceback" not in run.out + run.err


async def test_bad_input_gets_one_line_each(fake: FakeTokModel, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not audio")
    script = (
        "/ask\n"
        "/imagine --size 3x3 a cat\n"
        "/transcribe missing.wav\n"
        f"/transcribe {tmp_path / 'notes.txt'}\n"
        "/frobnicate\n"
        "/tts --speed 3 hi\n"
    )
    run = await console(script, tmp_path, fake)
    assert run.code == 0
    lines = [line for line in run.out.splitlines() if line.startswith("tokbot> ")]
    assert len(lines) == 6, run.out
    for expected, line in zip(
        [
            "Ask me something",
            "Unknown size",
            "No such file",
            "isn't audio",
            "Unknown command /frobnicate",
            "Unknown option --speed",
        ],
        lines,
        strict=True,
    ):
        assert expected in line
    assert "Traceback" not in run.out + run.err


async def test_offline_mode_needs_no_key(tmp_path: Path) -> None:
    run = await console("/ask hello offline\n/imagine --size 256x256 a cat\n", tmp_path, None)
    assert run.code == 0, run.err
    assert "(stand-in) You said" in run.out and "hello offline" in run.out
    assert "TOKMODEL_API_KEY is not set" in run.err
    assert any(f.suffix == ".png" for f in (tmp_path / "out").iterdir())


# -- at a real terminal (a pseudo-terminal): keys, signals, the terminal's own line limit ------


class Terminal:
    """`tokbot console` on a pseudo-terminal, as a person at a keyboard uses it."""

    def __init__(self, pid: int, master: int) -> None:
        self.pid = pid
        self.master = master
        self.screen = ""
        self.code: int | None = None
        self._changed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    @classmethod
    async def open(cls, tmp_path: Path, fake: FakeTokModel | None, **env: str) -> Terminal:
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "TERM": "xterm",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "DATABASE_URL": f"sqlite:///{tmp_path}/console.db",
            "TOKBOT_OUTPUT_DIR": str(tmp_path / "out"),
            "TOKBOT_TOKMODEL_TIMEOUT": "2",
            "TOKBOT_TOKMODEL_RETRY_BUDGET": "0",
            "TOKBOT_TOKMODEL_MAX_RETRIES": "0",
        }
        if fake is not None:
            environment |= {"TOKMODEL_API_KEY": API_KEY, "TOKMODEL_BASE_URL": fake.url}
        environment |= env
        args = [sys.executable, "-m", "adapters.cli", "console"] + ([] if fake else ["--offline"])
        pid, master = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal, as in a shell
            # A shell starts a job with Ctrl-C's signal at its default; an ignored signal would
            # stay ignored across exec (whatever this test process inherited or set).
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.chdir(tmp_path)
            os.execve(sys.executable, args, environment)
        # 24 rows of 100 columns, so readline knows where lines wrap.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        return cls(pid, master)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.screen += data.decode(errors="replace")
        self._changed.set()

    async def expect(self, text: str, start: int = 0, timeout: float = 30.0) -> int:
        """Wait until `text` is on screen after position `start`; return where it ends."""
        try:
            async with asyncio.timeout(timeout):
                while (found := self.screen.find(text, start)) < 0:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"never showed {text!r}; the screen:\n{self.screen}") from None
        return found + len(text)

    async def type(self, keys: str) -> None:
        data = keys.encode()
        # In a thread: the terminal echoes while we write, and its buffers are small.
        await asyncio.to_thread(self._write_all, data)

    def _write_all(self, data: bytes) -> None:
        for start in range(0, len(data), 512):
            os.write(self.master, data[start : start + 512])

    async def exited(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while not (ended := os.waitpid(self.pid, os.WNOHANG))[0]:
            assert time.monotonic() < deadline, f"still running; the screen:\n{self.screen}"
            await asyncio.sleep(0.05)
        self.code = os.waitstatus_to_exitcode(ended[1])
        return self.code

    async def close(self) -> None:
        if self.code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)


@pytest.fixture
async def terminal(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Terminal]]]:
    opened: list[Terminal] = []

    async def open_terminal(fake: FakeTokModel | None = None, **env: str) -> Terminal:
        term = await Terminal.open(tmp_path, fake, **env)
        opened.append(term)
        await term.expect("you> ")
        return term

    yield open_terminal
    for term in opened:
        await term.close()


async def test_ctrl_c_at_the_prompt_exits(terminal: Callable[..., Awaitable[Terminal]]) -> None:
    term = await terminal()
    await term.type("\x03")
    assert await term.exited() in (0, 130)
    assert "Traceback" not in term.screen and term.screen.endswith("\r\n")


async def test_ctrl_d_ends_the_line_and_exits(terminal: Callable[..., Awaitable[Terminal]]) -> None:
    term = await terminal()
    await term.type("\x04")
    assert await term.exited() == 0
    assert term.screen.endswith("you> \r\n"), repr(term.screen[-40:])


async def test_lines_can_be_edited_and_recalled(
    terminal: Callable[..., Awaitable[Terminal]],
) -> None:
    term = await terminal()
    left = "\x1b[D"
    await term.type("/ask helo world" + left * 7 + "l\r")  # the missing "l", typed in place
    seen = await term.expect("You said: «")
    await term.expect("hello world»", seen)
    after = await term.expect("you> ", seen)
    await term.type("\x1b[A\r")  # up arrow: the same question again
    seen = await term.expect("I can see 2 earlier message(s)", after)
    await term.expect("hello world»", after)
    await term.type("/quit\r")
    assert await term.exited() == 0


async def test_a_quoted_path_with_spaces(
    terminal: Callable[..., Awaitable[Terminal]], tmp_path: Path
) -> None:
    write_wav(tmp_path / "my standup.wav")
    term = await terminal()
    await term.type('/transcribe "my standup.wav"\r')
    # (The multipart upload percent-encodes the space in the file's name: aiohttp's FormData.)
    seen = await term.expect("(stand-in transcript of my")
    await term.expect("standup.wav, 16044 bytes)", seen)


async def test_a_paste_longer_than_the_terminal_line_limit_arrives_whole(
    terminal: Callable[..., Awaitable[Terminal]], fake: FakeTokModel
) -> None:
    term = await terminal(fake)
    question = " ".join(f"w{i:04d}" for i in range(1200))  # 7,199 characters: over 4,095
    await term.type(question + "\r")
    await term.expect("You said: «", timeout=30)
    [chat] = [r for r in fake.requests if r.path == "/v1/chat/completions"]
    assert chat.json is not None
    assert question in chat.json["messages"][-1]["content"]


async def test_log_lines_stay_out_of_the_answers(
    terminal: Callable[..., Awaitable[Terminal]], fake: FakeTokModel, tmp_path: Path
) -> None:
    fake.fail(Fault(status=500, times=-1, path="/v1/chat/completions"))
    term = await terminal(fake, TOKBOT_LOG_LEVEL="DEBUG")
    banner_log = tmp_path / "out" / "console.log"
    assert str(banner_log) in term.screen  # the banner says where the log goes
    await term.type("/ask are you there?\r")
    seen = await term.expect("TokModel")
    await term.expect("you> ", seen)
    await term.type("/quit\r")
    assert await term.exited() == 0
    assert "TokModel request failed" in banner_log.read_text()
    assert "DEBUG" not in term.screen and "WARNING" not in term.screen


async def test_piped_log_lines_never_land_inside_an_answer(
    fake: FakeTokModel, tmp_path: Path
) -> None:
    run = await console("/ask hi\n/help\n", tmp_path, fake, merged=True, TOKBOT_LOG_LEVEL="INFO")
    assert run.code == 0
    logged = [line for line in run.out.splitlines() if " INFO bot.core " in line]
    assert len(logged) == 2  # one per command, each on a line of its own
    assert all(line.startswith("20") for line in logged), logged


async def test_recall_finds_what_was_said_offline(fake: FakeTokModel, tmp_path: Path) -> None:
    script = "/ask note: the VPN certificate expires in March\n/ask lunch?\n/recall certificate\n"
    run = await console(script, tmp_path, fake)
    assert run.code == 0, run.err
    recalled = run.out[run.out.index("🔎 What this channel said about «certificate»") :]
    assert "VPN certificate expires in March" in recalled and "lunch" not in recalled
    assert not any(r.path == "/v1/rerank" for r in fake.requests)  # one candidate: no rerank
