"""`--name value` options at the start of a text command (Slack and the console have no typed
options). Only leading options are read, so a prompt may contain `--` freely."""

from __future__ import annotations

from collections.abc import Collection

from bot.errors import UserError


def parse_options(
    text: str, allowed: Collection[str], *, command: str, flags: Collection[str] = ()
) -> tuple[str, dict[str, str]]:
    """Split leading `--name value` / `--name=value` options (and bare `--flag`s) from `text`.

    Returns the remaining text and the options; an unknown option is a UserError naming the
    ones `command` accepts.
    """
    options: dict[str, str] = {}
    rest = text.strip()
    while rest.startswith("--"):
        head, _, tail = rest.partition(" ")
        name, has_value, value = head[2:].partition("=")
        if not name:
            break
        if name in flags:
            options[name] = "true"
            rest = tail.strip()
            continue
        if name not in allowed:
            raise UserError(_unknown(name, command, [*allowed, *flags]))
        if not has_value:
            value, _, tail = tail.strip().partition(" ")
            if not value:
                raise UserError(f"The option --{name} of /{command} needs a value.")
        options[name] = value
        rest = tail.strip()
    return rest, options


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
