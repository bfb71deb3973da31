"""`--name value` options in a text command (Slack and the console have no typed options).

Options may lead the text or follow it (`/imagine a lighthouse --size 256x256`); a known
option with a value is also read from the middle. Only the command's own option names are read
outside the lead, so a prompt may otherwise contain `--` freely; flags (`--reset`) count only
at either end, since a prompt may mention one in passing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from bot.errors import UserError

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class _Word:
    start: int
    end: int
    text: str


def parse_options(
    text: str, allowed: Collection[str], *, command: str, flags: Collection[str] = ()
) -> tuple[str, dict[str, str]]:
    """Split `--name value` / `--name=value` options (and bare `--flag`s) from `text`.

    Returns the remaining text and the options. An unknown option among the leading ones is a
    UserError naming the ones `command` accepts; so is an option given twice.
    """
    options: dict[str, str] = {}
    rest = _leading(text.strip(), allowed, flags, command, options)
    if not (allowed or flags):
        return rest, options
    words = [_Word(m.start(), m.end(), m.group()) for m in _WORD.finditer(rest)]
    taken = _trailing(words, allowed, flags, command, options)
    taken |= _inner(words[: len(words) - len(taken)], allowed, command, options)
    return _without(rest, words, taken), options


def _leading(
    text: str,
    allowed: Collection[str],
    flags: Collection[str],
    command: str,
    options: dict[str, str],
) -> str:
    rest = text
    while rest.startswith("--"):
        head, _, tail = rest.partition(" ")
        name, has_value, value = head[2:].partition("=")
        if not name:
            break
        if name in flags:
            _put(options, name, "true")
            rest = tail.strip()
            continue
        if name not in allowed:
            raise UserError(_unknown(name, command, [*allowed, *flags]))
        if not has_value:
            value, _, tail = tail.strip().partition(" ")
            if not value:
                raise UserError(_needs_value(name, command))
        _put(options, name, value)
        rest = tail.strip()
    return rest


def _trailing(
    words: list[_Word],
    allowed: Collection[str],
    flags: Collection[str],
    command: str,
    options: dict[str, str],
) -> set[int]:
    """Indexes of the options ending the text, read from the end backwards."""
    taken: set[int] = set()
    end = len(words)
    while end > 0:
        last = _option(words[end - 1].text)
        before = _option(words[end - 2].text) if end >= 2 else None
        if last is not None and last[0] in flags and last[1] is None:
            _put(options, last[0], "true")
            used = 1
        elif last is not None and last[0] in allowed:
            if last[1] is None:
                raise UserError(_needs_value(last[0], command))
            _put(options, last[0], last[1])
            used = 1
        elif last is None and before is not None and before[0] in allowed and before[1] is None:
            _put(options, before[0], words[end - 1].text)
            used = 2
        else:
            break
        taken |= set(range(end - used, end))
        end -= used
    return taken


def _inner(
    words: list[_Word], allowed: Collection[str], command: str, options: dict[str, str]
) -> set[int]:
    """Indexes of known value options (and their values) in the middle of the text."""
    taken: set[int] = set()
    i = 0
    while i < len(words):
        option = _option(words[i].text)
        if option is None or option[0] not in allowed:
            i += 1
            continue
        name, value = option
        if value is None:
            if i + 1 >= len(words):
                raise UserError(_needs_value(name, command))
            value = words[i + 1].text
            taken.add(i + 1)
        _put(options, name, value)
        taken.add(i)
        i = max(taken) + 1
    return taken


def _option(word: str) -> tuple[str, str | None] | None:
    """`--name` -> (name, None), `--name=value` -> (name, value); anything else None."""
    if not word.startswith("--") or len(word) == 2:
        return None
    name, has_value, value = word[2:].partition("=")
    return name, (value if has_value else None)


def _without(text: str, words: list[_Word], taken: set[int]) -> str:
    """`text` without the taken words; each kept word keeps the whitespace that followed it."""
    kept = [i for i in range(len(words)) if i not in taken]
    pieces: list[str] = []
    for i in kept:
        following = words[i + 1].start if i + 1 < len(words) else words[i].end
        pieces.append(text[words[i].start : following])
    return "".join(pieces).strip()


def _put(options: dict[str, str], name: str, value: str) -> None:
    if name in options:
        raise UserError(f"The option --{name} is given twice: give it once.")
    options[name] = value


def _needs_value(name: str, command: str) -> str:
    return f"The option --{name} of /{command} needs a value."


def check_options(options: dict[str, str], allowed: Collection[str], *, command: str) -> None:
    """Reject typed options a command doesn't take (platforms with typed options)."""
    for name in options:
        if name not in allowed:
            raise UserError(_unknown(name, command, allowed))


def _unknown(name: str, command: str, allowed: Collection[str]) -> str:
    if not allowed:
        return f"Unknown option --{name}: /{command} takes no options."
    accepted = ", ".join(f"--{a}" for a in sorted(allowed))
    return f"Unknown option --{name} for /{command}. It accepts: {accepted}."
