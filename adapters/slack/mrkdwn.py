"""Markdown (what models and the core write) to Slack's mrkdwn (what a message's `text` shows).

slack_sdk has no converter (3.48: only the `markdown` block and `markdown_text` argument, which
the Web API renders itself); mrkdwn is documented at
https://api.slack.com/reference/surfaces/formatting. The rules, line by line:

- fenced code: kept as a ``` block, the info string (language) dropped, contents only escaped;
  a block still open at the end (an answer mid-stream) is closed so the rest reads as code;
- `# Heading` → `*Heading*`; `- item` / `* item` / `+ item` → `• item`; `1. item` and `> quote`
  kept;
- inline: `**b**` / `__b__` → `*b*`, `*i*` → `_i_` (`_i_` stays), `~~s~~` → `~s~`,
  `` `code` `` kept (contents only escaped), `[t](u)` → `<u|t>` for http(s)/mailto links (others
  as `t (u)`), bare URLs untouched (their `_` are not italics).

Every character of the text is escaped (`&`, `<`, `>`) except the `<`, `|`, `>` of the links built
here and a quote's leading `>`, so model output can never produce `<!everyone>`, `<!here>`,
`<@U…>` or any other control sequence. Emphasis is converted only where it is closed on its line,
so a half-written `**bold` mid-stream stays as typed and cannot spill onto what follows.
"""

from __future__ import annotations

import re

from bot.text import FENCE_OPEN, is_fence_close

_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(.*)$")
_QUOTE = re.compile(r"^[ \t]*>[ \t]?(.*)$")

# Spans converted as a whole, their insides untouched: code spans, links (and images), Markdown
# autolinks, bare URLs. Matched left to right, so a URL inside a link belongs to the link.
_SPAN = re.compile(
    r"(?P<ticks>`+)(?P<code>.+?)(?P=ticks)"
    r"|!?\[(?P<label>[^\]\n]*)\]\((?P<url>[^()\s]+)(?:[ \t]+\"[^\"\n]*\")?\)"
    r"|<(?P<auto>(?:https?://|mailto:)[^\s<>]+)>"
    r"|(?P<bare>https?://[^\s<>]+)"
)
_SAFE_URL = re.compile(r"^(?:https?://|mailto:)[^\s<>|]+$")

_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*")
_BOLD_STARS = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_BOLD_UNDERSCORES = re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")

# Private-use characters stand in for spans and bold while emphasis is converted.
_SPAN_MARK = "\ue000"
_SPAN_END = "\ue001"
_BOLD_MARK = "\ue002"
_MARKS = re.compile("[\ue000-\ue002]")
_SPAN_REF = re.compile(f"{_SPAN_MARK}(\\d+){_SPAN_END}")


def escape(text: str) -> str:
    """Slack's control characters as entities (its documented escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """See the module docstring."""
    out: list[str] = []
    fence: str | None = None  # the backticks of the open code block
    for line in _MARKS.sub("", markdown).split("\n"):
        if fence is not None:
            if is_fence_close(line, fence):
                out.append("```")
                fence = None
            else:
                out.append(escape(line))
        elif match := FENCE_OPEN.match(line):
            out.append("```")
            fence = match.group(1)
        else:
            out.append(_line(line))
    if fence is not None:
        out.append("```")
    return "\n".join(out)


def _line(line: str, *, quoted: bool = False) -> str:
    if heading := _HEADING.match(line):
        title = heading.group(1).replace("**", "").replace("__", "").strip()
        return f"*{_inline(title)}*" if title else ""
    if bullet := _BULLET.match(line):
        return f"{bullet.group(1)}• {_inline(bullet.group(2))}"
    if not quoted and (quote := _QUOTE.match(line)):  # one level: Slack has no nested quotes
        return f"> {_line(quote.group(1), quoted=True)}" if quote.group(1).strip() else ">"
    return _inline(line)


def _inline(text: str) -> str:
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(_span(match))
        return f"{_SPAN_MARK}{len(spans) - 1}{_SPAN_END}"

    text = escape(_SPAN.sub(keep, text))
    text = _BOLD_ITALIC.sub(rf"{_BOLD_MARK}_\1_{_BOLD_MARK}", text)
    text = _BOLD_STARS.sub(rf"{_BOLD_MARK}\1{_BOLD_MARK}", text)
    text = _BOLD_UNDERSCORES.sub(rf"{_BOLD_MARK}\1{_BOLD_MARK}", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text).replace(_BOLD_MARK, "*")
    return _SPAN_REF.sub(lambda m: spans[int(m.group(1))], text)


def _span(match: re.Match[str]) -> str:
    if match.group("code") is not None:
        return f"`{escape(match.group('code'))}`"
    if match.group("auto") is not None:
        return _link(match.group("auto"), "")
    if match.group("bare") is not None:
        return escape(match.group("bare"))
    return _link(match.group("url"), match.group("label"))


def _link(url: str, label: str) -> str:
    """`<url|label>`, only for web and mail addresses without Slack's delimiters: any other
    target (`!everyone`, `@U123`, `#C1`, `javascript:`) is shown as text, never linked."""
    label = label.replace("**", "").replace("`", "").strip()
    if not _SAFE_URL.match(url):
        return f"{escape(label)} ({escape(url)})" if label else escape(url)
    return f"<{escape(url)}|{escape(label)}>" if label else f"<{escape(url)}>"
