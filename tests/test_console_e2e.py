"""`tokbot console` as a user runs it: a subprocess, scripted on stdin, against the stand-in."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

from bot.tokmodel.fake import FakeTokModel, Fault
from tests.conftest import API_KEY


@dataclass
class Run:
    code: int
    out: str
    err: str


async def console(
    script: str, tmp_path: Path, fake: FakeTokModel | None, *extra: str, **env: str
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
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=environment,
    )
    out, err = await asyncio.wait_for(process.communicate(script.encode()), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


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
