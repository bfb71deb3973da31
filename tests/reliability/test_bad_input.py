"""Hostile and broken input: malformed Slack and Discord payloads, unknown event types, empty,
giant, unicode and control-character prompts, wrong mimetypes, truncated and oversize audio,
unknown options. Each gets a clear reply, a clean 4xx or (for events nobody should answer) a
deliberate silence; never a 5xx, a crash (an error logged) or a hang. Plus property tests for
the message splitter and the mention sanitizers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.discord import DiscordAdapter
from adapters.discord import translate as discord_translate
from adapters.discord.fake import FakeDiscord
from adapters.slack import translate as slack_translate
from adapters.slack.fake import FakeSlack
from bot.settings import Settings
from bot.text import split_message
from bot.tokmodel.fake import FakeTokModel
from tests.reliability.conftest import Figures
from tests.slack.conftest import ALICE, BOB, Bot, running

REPLY, REJECTED, IGNORED = "a clear reply", "a clean 4xx", "ignored"
Send = Callable[[Bot], Awaitable[int]]


@dataclass(frozen=True)
class Case:
    name: str
    send: Send
    expect: str


def wav(seconds: float = 0.5) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(8000)
        clip.writeframes(b"\x00\x10" * int(8000 * seconds))
    return buffer.getvalue()


async def raw(bot: Bot, body: str | bytes, content_type: str = "application/json") -> int:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    headers = {"Content-Type": content_type, **bot.slack.sign(data.decode("utf-8", "replace"))}
    async with (
        aiohttp.ClientSession() as session,
        session.post(bot.url, data=io.BytesIO(data), headers=headers) as response,
    ):
        return response.status


def envelope(**event: Any) -> Send:
    async def send(bot: Bot) -> int:
        base = bot.slack.message_event("hello", mention=True)
        merged = {k: v for k, v in {**base, **event}.items() if v is not None}
        body = bot.slack.event_body(merged)
        return (await bot.slack.post_event(bot.url, body))[0]

    return send


def body_with(**fields: Any) -> Send:
    async def send(bot: Bot) -> int:
        body = bot.slack.event_body(bot.slack.message_event("hello", mention=True))
        body.update(fields)
        for name in [k for k, v in fields.items() if v is None]:
            del body[name]
        return await raw(bot, json.dumps(body))

    return send


def body_text(text: str | bytes, content_type: str = "application/json") -> Send:
    async def send(bot: Bot) -> int:
        return await raw(bot, text, content_type)

    return send


def command(name: str, text: str = "", user: str = ALICE, drop: tuple[str, ...] = ()) -> Send:
    async def send(bot: Bot) -> int:
        payload = bot.slack.command_payload(name, text, user_id=user)
        for field in drop:
            payload.pop(field, None)
        return (await bot.slack.post_command(bot.url, payload))[0]

    return send


def voice(name: str, data: bytes, kind: str, **overrides: Any) -> Send:
    async def send(bot: Bot) -> int:
        file = bot.slack.add_file(name, data, kind)
        file.update(overrides)
        for key in [k for k, v in overrides.items() if v is None]:
            del file[key]
        event = bot.slack.message_event("", files=[file])
        return (await bot.slack.post_event(bot.url, bot.slack.event_body(event)))[0]

    return send


def mention_text(text: Any) -> Send:
    return envelope(text=text)


CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f"
SLACK_CASES = [
    # Malformed Events API bodies
    Case("empty body", body_text(""), REJECTED),
    Case("not JSON", body_text("{{{ not json"), REJECTED),
    Case("a JSON array", body_text("[1, 2, 3]"), REJECTED),
    Case("JSON null", body_text("null"), REJECTED),
    Case("a JSON string", body_text('"event"'), REJECTED),
    Case("JSON nested 100,000 deep", body_text("[" * 100_000 + "]" * 100_000), REJECTED),
    Case("binary garbage", body_text(bytes(range(256)) * 4), REJECTED),
    Case("2 MB of JSON", body_with(padding="x" * 2_000_000), IGNORED),
    Case("wrong content type", body_text("a=b", "text/plain"), REJECTED),
    Case("event_callback without an event", body_with(event=None), IGNORED),
    Case("event is a string", body_with(event="app_mention"), IGNORED),
    Case("event is a list", body_with(event=[1, 2]), IGNORED),
    Case("unknown envelope type", body_with(type="surprise"), IGNORED),
    Case("event_id is a number", body_with(event_id=12345), REPLY),
    Case("event_id missing", body_with(event_id=None), REPLY),
    Case("team_id missing", body_with(team_id=None), REPLY),
    Case("authorizations missing", body_with(authorizations=None), REPLY),
    # Unknown or odd events
    Case("unknown event type", envelope(type="reaction_added"), IGNORED),
    Case("event type missing", envelope(type=None), IGNORED),
    Case("mention without a user", envelope(user=None), IGNORED),
    Case("mention with a numeric user", envelope(user=42), IGNORED),
    Case("mention without a channel", envelope(channel=None), IGNORED),
    Case("mention without ts", envelope(ts=None), REPLY),
    Case("mention text null", mention_text(None), REPLY),
    Case("mention text a number", mention_text(12345), REPLY),
    Case("mention text an object", mention_text({"a": 1}), REPLY),
    Case("mention of nobody but the bot", mention_text("<@UBOT>"), REPLY),
    Case("message files a string", envelope(type="message", files="nope"), IGNORED),
    Case("message files of numbers", envelope(type="message", files=[1, 2]), IGNORED),
    Case("message subtype unknown", envelope(type="message", subtype="tombstone"), IGNORED),
    # Prompts
    Case("empty /ask", command("/ask"), REPLY),
    Case("whitespace /ask", command("/ask", " \t\n "), REPLY),
    Case("giant /ask (100k characters)", command("/ask", "x" * 100_000), REPLY),
    Case("unicode /ask", command("/ask", "日本語 🤖 مرحبا Ωμέγα 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"), REPLY),
    Case("combining marks /ask", command("/ask", "Z̷̢̛a̶̡l̸g̵o" * 50), REPLY),
    Case("bidi and zero-width /ask", command("/ask", "\u202eabc\u200b\u200d\ufeff"), REPLY),
    Case("control characters /ask", command("/ask", CONTROL + "hi"), REPLY),
    Case("NUL bytes /ask", command("/ask", "a\x00b\x00"), REPLY),
    Case("lone surrogate mention", mention_text("bad \ud800 half"), REPLY),
    Case("NUL in a mention", mention_text("x\x00y"), REPLY),
    Case("broadcast syntax /ask", command("/ask", "<!channel> <!here> @everyone"), REPLY),
    Case("unknown command", command("/frobnicate", "x"), REPLY),
    Case("command name missing", command("/ask", "x", drop=("command",)), IGNORED),
    Case("user_id missing", command("/ask", "x", drop=("user_id",)), REPLY),
    Case("channel_id missing", command("/ask", "x", drop=("channel_id",)), IGNORED),
    Case("text missing", command("/ask", "x", drop=("text",)), REPLY),
    # Options
    Case("unknown option", command("/imagine", "--bogus 1 a cat"), REPLY),
    Case("bad image size", command("/imagine", "--size 99999x1 a cat"), REPLY),
    Case("option without a value", command("/tts", "--voice"), REPLY),
    Case("unknown voice", command("/tts", "--voice nobody hi"), REPLY),
    Case("unknown transcription mode", command("/transcription", "sideways", user=BOB), REPLY),
    Case("giant /tts", command("/tts", "y" * 50_000), REPLY),
    Case("giant /imagine", command("/imagine", "z" * 50_000), REPLY),
    Case("giant /persona by an admin", command("/persona", "p" * 200_000, user=BOB), REPLY),
    Case("giant /model id by an admin", command("/model", "m" * 5_000, user=BOB), REPLY),
    # Audio
    Case("truncated wav", voice("cut.wav", wav()[:30], "audio/wav"), REPLY),
    Case("empty audio file", voice("empty.m4a", b"", "audio/mp4"), REPLY),
    Case("PNG sent as audio/mpeg", voice("x.mp3", b"\x89PNG\r\n\x1a\n" * 20, "audio/mpeg"), REPLY),
    Case("text sent as audio/wav", voice("x.wav", b"hello " * 100, "audio/wav"), REPLY),
    Case("audio claiming 10 GB", voice("big.wav", wav(), "audio/wav", size=10**10), REPLY),
    Case("audio size a string", voice("s.wav", wav(), "audio/wav", size="big"), REPLY),
    Case(
        "audio without a URL",
        voice("u.wav", wav(), "audio/wav", url_private_download=None, url_private=None),
        REPLY,
    ),
    Case(
        "audio at a foreign URL",
        voice("f.wav", wav(), "audio/wav", url_private_download="http://127.0.0.1:9/x.wav"),
        REPLY,
    ),
    Case("mimetype missing", voice("m.wav", wav(), "audio/wav", mimetype=None), IGNORED),
]


async def test_bad_slack_input_gets_a_clear_reply_or_a_4xx(
    slack_settings: Callable[..., Settings],
    slack: FakeSlack,
    fake: FakeTokModel,
    caplog: pytest.LogCaptureFixture,
    reliability: Figures,
) -> None:
    settings = slack_settings(TOKBOT_RATE_LIMIT_PER_MINUTE="0", TOKBOT_MAX_AUDIO_BYTES="200000")
    fake.set_reply("noted")  # short answers: the input is on trial here, not streaming
    outcomes: dict[str, str] = {}
    async with running(settings, slack, fake) as bot:
        for case in SLACK_CASES:
            caplog.clear()
            before = len(slack.messages) + len(slack.ephemeral)  # public and private replies
            try:
                status = await asyncio.wait_for(case.send(bot), 10)
            except TimeoutError:
                outcomes[case.name] = "hang"
                continue
            await until(
                lambda before=before, case=case: (
                    bot.adapter.bot.busy == 0
                    and (
                        case.expect != REPLY or len(slack.messages) + len(slack.ephemeral) > before
                    )
                ),
                timeout=5,
            )
            replies = len(slack.messages) + len(slack.ephemeral) - before
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            if status >= 500 or errors:
                got = f"crash ({status}, {[r.getMessage()[:80] for r in errors]})"
            elif 400 <= status < 500:
                got = REJECTED
            elif replies:
                got = REPLY
            else:
                got = IGNORED
            outcomes[case.name] = got
        healthy = await bot.adapter.healthy()
    wrong = {name: got for name, got in outcomes.items() if not _as_expected(name, got)}
    crashes = sum(got.startswith(("crash", "hang")) for got in outcomes.values())
    reliability.record(
        "bad input",
        f"{len(SLACK_CASES)} malformed/hostile Slack requests (bodies, events, prompts, options, "
        "audio)",
        f"{len(SLACK_CASES) - len(wrong)}/{len(SLACK_CASES)} as expected, {crashes} crashes",
        cases=len(SLACK_CASES),
        as_expected=len(SLACK_CASES) - len(wrong),
        crashes=crashes,
    )
    assert healthy
    assert wrong == {}, json.dumps(wrong, indent=1)


async def until(condition: Callable[[], bool], timeout: float) -> None:
    """Wait (polling briefly) until `condition()` holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    await asyncio.sleep(0.05)  # time for a listener to start its work
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def _as_expected(name: str, got: str) -> bool:
    """Nobody is answered for input that asks nothing: a 4xx or a silent 200 both do."""
    expected = next(case.expect for case in SLACK_CASES if case.name == name)
    return got == expected or (expected == IGNORED and got == REJECTED)


# -- Discord -----------------------------------------------------------------------------------

DiscordSend = Callable[[FakeDiscord], Awaitable[dict[str, Any]]]


def interaction(name: str, options: dict[str, Any] | None = None, **files: Any) -> DiscordSend:
    async def send(fake: FakeDiscord) -> dict[str, Any]:
        attachments = {k: fake.attachment(*v) for k, v in files.items()}
        return await fake.interaction(name, options, attachments=attachments or None)

    return send


def discord_message(
    content: str, *files: tuple[str, bytes, str], voice: bool = False
) -> DiscordSend:
    async def send(fake: FakeDiscord) -> dict[str, Any]:
        attachments = [fake.attachment(*f, voice=voice) for f in files]
        return await fake.message(
            content, mention_bot=bool(content), attachments=attachments or None, voice=voice
        )

    return send


BOT_MENTION = "<@900000000000000001>"
DISCORD_CASES: list[tuple[str, DiscordSend, str]] = [
    ("unknown app command", interaction("frobnicate", {"x": "y"}), REPLY),
    ("empty /ask", interaction("ask", {"question": ""}), REPLY),
    ("giant /ask", interaction("ask", {"question": "x" * 100_000}), REPLY),
    ("control characters /ask", interaction("ask", {"question": CONTROL + "hi"}), REPLY),
    ("NUL /ask", interaction("ask", {"question": "a\x00b"}), REPLY),
    ("unicode /ask", interaction("ask", {"question": "日本語 🤖 \u202e مرحبا"}), REPLY),
    ("unknown option", interaction("ask", {"question": "hi", "bogus": "1"}), REPLY),
    ("unknown image size", interaction("imagine", {"prompt": "cat", "size": "1x1"}), REPLY),
    ("unknown voice", interaction("tts", {"text": "hi", "voice": "nobody"}), REPLY),
    ("giant /tts", interaction("tts", {"text": "y" * 50_000}), REPLY),
    (
        "PNG given to /transcribe",
        interaction("transcribe", audio=("p.png", b"\x89PNG\r\n\x1a\n" * 10, "image/png")),
        REPLY,
    ),
    (
        "truncated audio to /transcribe",
        interaction("transcribe", audio=("cut.wav", wav()[:30], "audio/wav")),
        REPLY,
    ),
    (
        "empty audio to /transcribe",
        interaction("transcribe", audio=("e.mp3", b"", "audio/mpeg")),
        REPLY,
    ),
    (
        "oversize audio to /transcribe",
        interaction("transcribe", audio=("big.wav", wav(4), "audio/wav")),
        REPLY,
    ),
    ("mention with nothing else", discord_message(BOT_MENTION), REPLY),
    ("giant mention", discord_message(BOT_MENTION + " z" * 20_000), REPLY),
    (
        "truncated voice message",
        discord_message("", ("voice-message.ogg", b"OggS\x00\x02", "audio/ogg"), voice=True),
        REPLY,
    ),
    (
        "voice message that is text",
        discord_message("", ("voice-message.ogg", b"hello " * 50, "audio/ogg"), voice=True),
        REPLY,
    ),
]


async def test_bad_discord_input_gets_a_clear_reply(
    start_adapter: Callable[..., Awaitable[DiscordAdapter]],
    discord_fake: FakeDiscord,
    fake: FakeTokModel,
    caplog: pytest.LogCaptureFixture,
    reliability: Figures,
) -> None:
    await start_adapter(TOKBOT_RATE_LIMIT_PER_MINUTE="0", TOKBOT_MAX_AUDIO_BYTES="20000")
    fake.set_reply("noted")
    outcomes: dict[str, str] = {}
    expected: dict[str, str] = {}
    for name, send, expect in DISCORD_CASES:
        caplog.clear()
        expected[name] = expect
        before = shown(discord_fake)
        try:
            await asyncio.wait_for(send(discord_fake), 10)
        except TimeoutError:
            outcomes[name] = "hang"
            continue
        await until(
            lambda before=before, expect=expect: expect != REPLY or shown(discord_fake) > before,
            timeout=5,
        )
        await asyncio.sleep(0.05)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        if errors:
            outcomes[name] = f"crash ({[r.getMessage()[:80] for r in errors]})"
        else:
            outcomes[name] = REPLY if shown(discord_fake) > before else IGNORED
    wrong = {name: got for name, got in outcomes.items() if got != expected[name]}
    crashes = sum(got.startswith(("crash", "hang")) for got in outcomes.values())
    reliability.record(
        "bad input",
        f"{len(DISCORD_CASES)} malformed/hostile Discord interactions and messages",
        f"{len(DISCORD_CASES) - len(wrong)}/{len(DISCORD_CASES)} as expected, {crashes} crashes",
        cases=len(DISCORD_CASES),
        as_expected=len(DISCORD_CASES) - len(wrong),
        crashes=crashes,
    )
    assert wrong == {}, json.dumps(wrong, indent=1)


def shown(fake: FakeDiscord) -> int:
    """Messages people see (not a "thinking…" one) and immediate (type 4) interaction replies."""
    immediate = sum(
        body.get("type") == 4 for bodies in fake.interaction_responses.values() for body in bodies
    )
    return sum(bool(m.content) for m in fake.messages.values()) + immediate


# -- properties ----------------------------------------------------------------------------------


# Without code fences: a block cut in two gains fence lines (tests/test_split_fences.py).
@given(st.text().filter(lambda t: "```" not in t), st.integers(min_value=1, max_value=300))
def test_split_message_keeps_everything_within_the_limit(text: str, limit: int) -> None:
    pieces = split_message(text, limit)
    assert "".join(pieces) == text
    assert all(len(piece) <= limit for piece in pieces)
    assert all(pieces) or pieces == [""]


@given(st.text(alphabet=st.sampled_from("<>!&@^|#*_ abcU0123\n"), max_size=80) | st.text())
def test_slack_text_can_never_mention_anyone(text: str) -> None:
    shown = slack_translate.to_slack(text)
    # No <!channel>, <!here>, <@U…>, <!subteam^…>: the only `<…>` are web links, the only other
    # `>` a quote's (tests/slack/test_mrkdwn.py has the converter's own cases).
    rest = re.sub(r"<(?:https?://|mailto:)[^<>|\s]+(?:\|[^<>]*)?>", "", shown)
    rest = "\n".join(line.removeprefix(">") for line in rest.split("\n"))
    assert "<" not in rest and ">" not in rest


@given(st.text(), st.integers(min_value=1, max_value=2**63 - 1))
def test_discord_mention_stripping_removes_only_the_bot(text: str, bot_id: int) -> None:
    stripped = discord_translate.strip_mentions(f"<@{bot_id}> {text} <@!{bot_id}>", bot_id)
    assert f"<@{bot_id}>" not in stripped and f"<@!{bot_id}>" not in stripped
    assert stripped == " ".join(discord_translate.strip_mentions(text, bot_id).split())


@given(st.text())
def test_clean_text_is_always_storable(text: str) -> None:
    from bot.text import clean_text

    cleaned = clean_text(text)
    assert "\x00" not in cleaned
    cleaned.encode("utf-8")
