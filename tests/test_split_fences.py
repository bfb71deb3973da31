"""`split_message` never leaves a piece inside a code fence (issue 11, item 6): a block that fits
moves to a piece of its own; a longer one is closed and reopened, with its info string."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.streaming import StreamRenderer
from bot.text import FENCE_OPEN, is_fence_close, split_message
from tests.platform import RecordingReplier

CODE = "```python\n" + "".join(f"x{i} = {i}\n" for i in range(30)) + "```\n"


def balanced(piece: str) -> bool:
    """Every fence the piece opens, it closes (so the piece renders on its own)."""
    ticks = ""
    for line in piece.split("\n"):
        if ticks and is_fence_close(line, ticks):
            ticks = ""
        elif not ticks and (match := FENCE_OPEN.match(line)):
            ticks = match.group(1)
    return not ticks


def test_a_block_that_fits_is_moved_to_the_next_piece_whole() -> None:
    text = "Some words before it.\n" + "```\ncode line\nmore code\n```\nafter"
    pieces = split_message(text, 40)
    assert pieces == ["Some words before it.\n", "```\ncode line\nmore code\n```\nafter"]


def test_a_block_longer_than_a_piece_is_closed_and_reopened_with_its_language() -> None:
    pieces = split_message("Intro.\n\n" + CODE + "\nAfter.", 80)
    assert pieces[0] == "Intro.\n\n"
    assert all(len(p) <= 80 and balanced(p) for p in pieces)
    middle = pieces[1:-1]
    assert len(middle) >= 3
    assert all(p.startswith("```python\n") and p.rstrip("\n").endswith("```") for p in middle)
    # Lines stay whole, and nothing is lost.
    lines = [line for p in pieces for line in p.split("\n") if line.startswith("x")]
    assert lines == [f"x{i} = {i}" for i in range(30)]


@pytest.mark.parametrize("limit", [1, 3, 8, 12])
def test_limits_too_small_for_fences_still_make_progress(limit: int) -> None:
    pieces = split_message(CODE, limit)
    assert all(len(p) <= limit for p in pieces) and "".join(pieces) == CODE


_LINES = st.lists(
    st.sampled_from(["```", "```js", "code();", "", "a b c d e f g", "x" * 50, "- item"]),
    max_size=40,
)


@given(_LINES, st.integers(min_value=30, max_value=200))
def test_pieces_fit_stay_balanced_and_lose_nothing(lines: list[str], limit: int) -> None:
    text = "\n".join(lines)
    pieces = split_message(text, limit)
    assert all(len(p) <= limit for p in pieces)

    # Only fence lines are added, so everything else comes back in order.
    def content(s: str) -> str:
        return "".join(s.split("\n")).replace("```js", "").replace("```", "")

    assert content("".join(pieces)) == content(text)
    if balanced(text):  # a text whose blocks are all closed gives pieces that are too
        assert all(balanced(p) for p in pieces)


@given(_LINES, st.integers(min_value=30, max_value=200), st.data())
def test_pieces_before_the_last_never_change_as_the_text_grows(
    lines: list[str], limit: int, data: st.DataObject
) -> None:
    text = "\n".join(lines)
    grown = text + data.draw(st.text(alphabet="`\n ab", max_size=200))
    before, after = split_message(text, limit), split_message(grown, limit)
    assert after[: len(before) - 1] == before[:-1]


async def test_a_streamed_code_block_shows_as_code_in_every_message() -> None:
    replier = RecordingReplier(max_message_length=80)
    renderer = StreamRenderer(replier, placeholder="…", interval=0)
    await renderer.start()
    answer = "Here it is:\n\n" + CODE + "\nThat's all."
    for at in range(0, len(answer), 7):
        renderer.feed(answer[at : at + 7])
        await asyncio.sleep(0)
    await renderer.finish()
    assert len(replier.texts) >= 4
    assert all(len(t) <= 80 and balanced(t) for t in replier.texts)
    assert renderer.message_ids == replier.order
    assert replier.texts[-1].endswith("That's all.")
