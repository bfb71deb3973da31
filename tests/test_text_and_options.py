"""Pure helpers: the message splitter, option parsing, context building, the rate limiter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.conversation import build_context, estimate_tokens
from bot.domain import Turn, TurnKind, TurnRole, TurnStatus
from bot.errors import UserError
from bot.logs import SecretRedactor
from bot.options import parse_options
from bot.text import one_line, split_message


# Without code fences: a block cut in two gains fence lines (tests/test_split_fences.py).
@given(st.text().filter(lambda t: "```" not in t), st.integers(min_value=1, max_value=300))
def test_split_message_keeps_every_character_within_the_limit(text: str, limit: int) -> None:
    pieces = split_message(text, limit)
    assert "".join(pieces) == text
    assert all(len(p) <= limit for p in pieces)
    assert all(pieces) or pieces == [""]


def test_split_message_prefers_line_and_word_boundaries() -> None:
    text = "alpha beta gamma\n\ndelta epsilon"
    assert split_message(text, 20) == ["alpha beta gamma\n\n", "delta epsilon"]
    assert split_message("one two three", 9) == ["one two ", "three"]
    assert split_message("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_one_line_flattens_and_shortens() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("z" * 300, 10) == "z" * 9 + "…"


def test_parse_options() -> None:
    assert parse_options("--voice nova hi there", ["voice"], command="tts") == (
        "hi there",
        {"voice": "nova"},
    )
    assert parse_options("--voice=echo  x -- y", ["voice"], command="tts") == (
        "x -- y",
        {"voice": "echo"},
    )
    assert parse_options("what is --voice?", ["voice"], command="tts") == ("what is --voice?", {})
    assert parse_options("--reset", [], command="model", flags=["reset"]) == ("", {"reset": "true"})
    with pytest.raises(UserError, match="Unknown option --loud for /tts. It accepts: --voice"):
        parse_options("--loud hi", ["voice"], command="tts")
    with pytest.raises(UserError, match="needs a value"):
        parse_options("--voice", ["voice"], command="tts")


def test_options_may_follow_the_text_or_sit_inside_it() -> None:
    size = ["size"]
    assert parse_options("a lighthouse --size 256x256", size, command="imagine") == (
        "a lighthouse",
        {"size": "256x256"},
    )
    assert parse_options("a lighthouse --size=512x512", size, command="imagine") == (
        "a lighthouse",
        {"size": "512x512"},
    )
    assert parse_options("a lighthouse --size 256x256 at dusk", size, command="imagine") == (
        "a lighthouse at dusk",
        {"size": "256x256"},
    )
    # Words that aren't this command's options stay in the prompt, line breaks too.
    assert parse_options("draw --verbose\nflags --size 256x256", size, command="imagine") == (
        "draw --verbose\nflags",
        {"size": "256x256"},
    )
    flags = ["translate", "answer"]
    assert parse_options("memo --answer --translate", [], command="transcribe", flags=flags) == (
        "memo",
        {"answer": "true", "translate": "true"},
    )
    # A flag counts only at either end: a prompt may mention one in passing.
    reset = ["reset"]
    text = "explain what --reset does"
    assert parse_options(text, [], command="persona", flags=reset) == (text, {})
    assert parse_options("be brief --reset", [], command="persona", flags=reset) == (
        "be brief",
        {"reset": "true"},
    )
    # A command without options reads none.
    assert parse_options("what is --size 3?", [], command="ask") == ("what is --size 3?", {})
    with pytest.raises(UserError, match="--size of /imagine needs a value"):
        parse_options("a lighthouse --size", size, command="imagine")
    with pytest.raises(UserError, match="--size is given twice"):
        parse_options("--size 256x256 a lighthouse --size 512x512", size, command="imagine")


def _turn(i: int, role: TurnRole, content: str, status: TurnStatus = TurnStatus.OK) -> Turn:
    return Turn(i, role, TurnKind.TEXT, content, "u", "Bo", status, 0.0)


def test_context_keeps_the_newest_turns_within_budget() -> None:
    turns = [
        _turn(i, TurnRole.USER if i % 2 else TurnRole.ASSISTANT, f"message {i} " + "x" * 40)
        for i in range(1, 21)
    ]
    context = build_context("Be brief.", turns, budget_tokens=60)
    assert context[0].role == "system" and context[0].content == "Be brief."
    assert context[-1].content.endswith(turns[-1].content)
    assert sum(estimate_tokens(m.content) for m in context) <= 60 or len(context) == 2
    assert context[1].role == "user"


def test_context_skips_failed_and_pending_turns_and_marks_interrupted() -> None:
    turns = [
        _turn(1, TurnRole.USER, "too long", TurnStatus.FAILED),
        _turn(2, TurnRole.USER, "q"),
        _turn(3, TurnRole.ASSISTANT, "half", TurnStatus.INTERRUPTED),
        _turn(4, TurnRole.USER, "again"),
        _turn(5, TurnRole.ASSISTANT, "", TurnStatus.PENDING),
    ]
    context = build_context(None, turns, budget_tokens=1000)
    assert [m.content for m in context[1:]] == [
        "Bo: q",
        "half [this answer was cut off]",
        "Bo: again",
    ]


def test_the_newest_turn_is_kept_even_over_budget() -> None:
    context = build_context("p", [_turn(1, TurnRole.USER, "z" * 1000)], budget_tokens=10)
    assert len(context) == 2


def test_redactor_scrubs_messages_and_tracebacks() -> None:
    import logging

    redactor = SecretRedactor(["sk-secret-1234"])
    try:
        raise ValueError("boom sk-secret-1234")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, "f", 1, "key=%s", ("sk-secret-1234",), sys.exc_info()
        )
    redactor.filter(record)
    assert record.getMessage() == "key=[redacted]"
    # The traceback is kept, redacted, where formatters print it from (not in the message).
    assert record.exc_info is None and record.exc_text is not None
    assert "sk-secret-1234" not in record.exc_text
    assert "[redacted]" in record.exc_text and "ValueError" in record.exc_text
