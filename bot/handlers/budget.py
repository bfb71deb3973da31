"""/budget: where your budget and this channel's stand; admins set and remove budgets.

    /budget                            yours and this channel's
    /budget user @someone 200k/day     a person's (`off` removes it; no limit: show it)
    /budget channel 5M/month           this channel's
    /budget default 100k/day           everyone's without one of their own
    /budget list                       every budget of this workspace (admins)

People are named by a mention (`<@U…>` from Slack with escaping on, `<@123>` / `<@!123>` from
Discord) or by their id."""

from __future__ import annotations

import re
import time

from bot.budgets import BudgetStatus, Limit, describe_limit, parse_limit
from bot.commands import Invocation
from bot.errors import UserError

USAGE = (
    "`/budget` shows yours and this channel's. Admins: `/budget user @someone 200k/day`, "
    "`/budget channel 5M/month`, `/budget default 100k/day` (`off` removes one), `/budget list`."
)
#: A person as platforms put them in text: Slack `<@U123>` / `<@U123|name>`, Discord `<@123>` /
#: `<@!123>`; or a bare id.
_PERSON = re.compile(r"^(?:<@!?([A-Za-z0-9]+)(?:\|[^>]*)?>|([A-Za-z0-9][\w.-]*))$")


async def budget(inv: Invocation) -> None:
    words = inv.text.split()
    if not words:
        await _show_mine(inv)
        return
    scope, rest = words[0].lower(), words[1:]
    if scope == "list":
        inv.require_admin("list every budget")
        await _show_all(inv)
    elif scope == "user":
        if not rest:
            raise UserError("Name the person: `/budget user @someone 200k/day`.")
        person = _person(rest[0])
        inv.require_admin("see or set someone's budget")
        if len(rest) == 1:
            await _show_person(inv, person)
        else:
            await _change(inv, "user", person, " ".join(rest[1:]))
    elif scope == "channel":
        inv.require_admin("set this channel's budget")
        await _change(inv, "channel", inv.key.channel, _limit_text(rest, "channel"))
    elif scope == "default":
        inv.require_admin("set the default budget")
        await _change(inv, "default", "", _limit_text(rest, "default"))
    else:
        raise UserError(f"I don't know `/budget {scope[:30]}`. {USAGE}")


def _person(word: str) -> str:
    match = _PERSON.match(word)
    if match is None:
        hint = ""
        if word.startswith("@"):
            hint = (
                " I got a name, not an id: pick the person from the @ list so the mention is a "
                "real one, or give their member id."
            )
        raise UserError(f"I can't tell who `{word[:40]}` is.{hint}")
    return match.group(1) or match.group(2)


def _limit_text(rest: list[str], scope: str) -> str:
    if not rest:
        raise UserError(f"Give a limit: `/budget {scope} 200k/day` (or `off`).")
    return " ".join(rest)


async def _change(inv: Invocation, scope: str, subject: str, text: str) -> None:
    limit = parse_limit(text)
    platform, workspace = inv.key.platform, inv.key.workspace
    whose = _whose(scope, subject)
    if limit is None:
        removed = await inv.core.budgets.remove(platform, workspace, scope, subject)
        said = f"🪙 Removed {whose} budget." if removed else f"🪙 {_cap(whose)} had no budget."
        await inv.reply(said, private=True)
        return
    await inv.core.budgets.set(platform, workspace, scope, subject, limit, by=inv.author.id)
    await inv.reply(f"🪙 {_cap(whose)} budget is now {_describe(limit)}.", private=True)


async def _show_mine(inv: Invocation) -> None:
    now = time.time()
    statuses = await inv.core.budgets.statuses(inv.key, inv.author.id, now=now)
    lines = ["🪙 Budgets (tokens; days and months in UTC)"]
    lines.append(_line("you", statuses.person, now))
    lines.append(_line("this channel", statuses.channel, now))
    if inv.core.is_admin(inv.author):
        lines.append(USAGE)
    await inv.reply("\n".join(lines), private=True)


async def _show_person(inv: Invocation, person: str) -> None:
    now = time.time()
    statuses = await inv.core.budgets.statuses(inv.key, person, now=now)
    await inv.reply("🪙 " + _line(f"user {person}", statuses.person, now), private=True)


async def _show_all(inv: Invocation) -> None:
    budgets = await inv.core.budgets.list(inv.key.platform, inv.key.workspace)
    if not budgets:
        await inv.reply("🪙 No budgets in this workspace. " + USAGE, private=True)
        return
    now = time.time()
    lines = ["🪙 Budgets in this workspace"]
    for stored in budgets:
        status = await inv.core.budgets.status(stored, now=now)
        who = _whose(stored.scope, stored.subject)
        if stored.scope == "default":
            lines.append(f"• {who}: {describe_limit(stored.tokens, stored.period)} per person")
        else:
            lines.append(f"• {who}: {status.line(now)}")
    await inv.reply("\n".join(lines), private=True)


def _line(who: str, status: BudgetStatus | None, now: float) -> str:
    if status is None:
        return f"• {who}: no budget"
    default = " (the default)" if status.budget.scope == "default" else ""
    return f"• {who}{default}: {status.line(now)}"


def _whose(scope: str, subject: str) -> str:
    if scope == "user":
        return f"user {subject}'s"
    if scope == "channel":
        return "this channel's"
    return "the default"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _describe(limit: Limit) -> str:
    return describe_limit(limit.tokens, limit.period)
