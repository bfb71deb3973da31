"""Markdown answers as Slack mrkdwn (issue 11, item 6): a table of cases, the no-ping property,
and end to end: what the fake Slack receives, also while an answer streams in small chunks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.slack.mrkdwn import to_mrkdwn
from bot.tokmodel.fake import FakeTokModel
from tests.slack.conftest import Bot

CASES = [
    # emphasis
    ("**bold**", "*bold*"),
    ("__bold__", "*bold*"),
    ("*italic*", "_italic_"),
    ("_italic_", "_italic_"),
    ("~~struck~~", "~struck~"),
    ("***both***", "*_both_*"),
    ("**a *b* c**", "*a _b_ c*"),
    ("** not bold **", "** not bold **"),
    ("2 * 3 * 4 and snake_case_name", "2 * 3 * 4 and snake_case_name"),
    # headings, lists, quotes
    ("# Title", "*Title*"),
    ("### A **b** section ##", "*A b section*"),
    ("- one\n* two\n+ three", "• one\n• two\n• three"),
    ("  - nested *x*", "  • _x_".replace("• _x_", "• nested _x_")),
    ("1. first\n2. second", "1. first\n2. second"),
    ("> quoted **b**", "> quoted *b*"),
    (">", ">"),
    (">> nested", "> &gt; nested"),
    # links
    ("[docs](https://example.com/a?b=1&c=2)", "<https://example.com/a?b=1&amp;c=2|docs>"),
    ("[](https://example.com)", "<https://example.com>"),
    ("![a cat](https://example.com/cat.png)", "<https://example.com/cat.png|a cat>"),
    ('[t](https://x.io "title")', "<https://x.io|t>"),
    ("<https://example.com>", "<https://example.com>"),
    ("[mail](mailto:a@b.c)", "<mailto:a@b.c|mail>"),
    ("see https://e.com/a_b_c_ now", "see https://e.com/a_b_c_ now"),
    ("https://e.com/?a=1&b=<2>", "https://e.com/?a=1&amp;b=&lt;2&gt;"),
    # links that would be pings or other control sequences are text
    ("[hi](!everyone)", "hi (!everyone)"),
    ("[hi](@U0ALICE)", "hi (@U0ALICE)"),
    ("[x](javascript:alert)", "x (javascript:alert)"),
    ("[x](https://a.io|<!here>)", "x (https://a.io|&lt;!here&gt;)"),
    ("<!everyone> <!here> <@U1> <#C1>", "&lt;!everyone&gt; &lt;!here&gt; &lt;@U1&gt; &lt;#C1&gt;"),
    ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
    # code
    ("`**kept** <x> & _y_`", "`**kept** &lt;x&gt; &amp; _y_`"),
    ("``a ` b``", "`a ` b`"),
    ("```python\nx = '<!here>'  # **no**\n```\nafter **b**",
     "```\nx = '&lt;!here&gt;'  # **no**\n```\nafter *b*"),
    ("````\n```\ninner\n````", "```\n```\ninner\n```"),
    ("```js\n# not a heading\n- not a list\n```", "```\n# not a heading\n- not a list\n```"),
    # mid-stream: half-written constructs stay as typed and spoil nothing after them
    ("**bold and *it* text", "**bold and _it_ text"),
    ("a **half\n- item **b**", "a **half\n• item *b*"),
    ("```py\nopen **x**", "```\nopen **x**\n```"),
    ("[half](https://exa", "[half](https://exa"),
    ("`open code **b**", "`open code *b*"),
]  # fmt: skip


@pytest.mark.parametrize(("markdown", "expected"), CASES)
def test_markdown_becomes_mrkdwn(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


#: The only `<…>` sequences the converter may produce: web and mail links.
_OUR_LINKS = re.compile(r"<(?:https?://|mailto:)[^<>|\s]+(?:\|[^<>]*)?>")


def only_safe_controls(shown: str) -> bool:
    """No `<` or `>` except our links and a quote's leading `>`."""
    rest = _OUR_LINKS.sub("", shown)
    rest = "\n".join(line[1:] if line.startswith(">") else line for line in rest.split("\n"))
    return "<" not in rest and ">" not in rest


@given(
    st.text(alphabet=st.sampled_from("<>!&@^|#*_~`[]() :/.abcU01\nhttps"), max_size=120) | st.text()
)
def test_model_output_can_never_ping_anyone(text: str) -> None:
    assert only_safe_controls(to_mrkdwn(text))


ANSWER = (
    "# Plan\n\nUse **bold**, *italics* and ~~old~~ ideas; see [the docs](https://example.com).\n"
    "- first\n- second\n\n```python\nprint('<!here>')\n```\nDone <!channel>."
)
SHOWN = (
    "*Plan*\n\nUse *bold*, _italics_ and ~old~ ideas; see <https://example.com|the docs>.\n"
    "• first\n• second\n\n```\nprint('&lt;!here&gt;')\n```\nDone &lt;!channel&gt;."
)


async def test_slack_receives_the_answer_as_mrkdwn_even_while_it_streams(
    bot: Bot, fake: FakeTokModel
) -> None:
    fake.set_reply(ANSWER)
    fake.chunk_chars = 3  # `**` and ``` arrive split across chunks
    fake.chunk_delay = 0.01  # slowly enough for several edits
    await bot.command("/ask", "a plan, formatted")
    await bot.slack.wait_for(lambda: bot.adapter.bot.busy == 0 and SHOWN in bot.slack.texts())
    [message] = bot.slack.messages
    assert message.text == SHOWN
    assert len(message.edits) >= 2  # it did stream
    for shown in [message.text, *message.edits]:
        assert only_safe_controls(shown)
        assert shown.count("```") % 2 == 0  # code never spills past its block
