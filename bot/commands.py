"""The command registry: what each command is called, takes, and which handler runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.domain import Author, ConversationKey, Incoming, Replier
from bot.errors import UserError
from bot.tokmodel.errors import TokModelError

if TYPE_CHECKING:
    from bot.budgets import BudgetStatus
    from bot.core import Core


@dataclass
class Invocation:
    """One command being run: the message, where to answer, and the parsed text and options."""

    core: Core
    incoming: Incoming
    replier: Replier
    text: str
    options: dict[str, str]
    #: How the command ended, for metrics; handlers that report a failure themselves set it.
    outcome: str = "ok"
    #: A message already posted while this waited its turn ("⏳ …"): the first thing the
    #: command shows replaces it (`show`, or a stream via `take_notice`).
    notice: tuple[str, str] | None = None
    #: The TokModel failure the handler explained itself (counted for the admin page).
    failure: TokModelError | None = None
    #: Whether a budget applied when the request was checked (`Budgets.check`).
    budgeted: bool = True
    #: The budget check still to make, with the request's estimate (`CommandSpec
    #: .budget_in_handler`): None once made.
    budget_due: int | None = None
    #: Where the budgets stood when the handler checked them (None: not known here), so the
    #: alert check after the answer needs no second read.
    budget_seen: Sequence[BudgetStatus] | None = None
    #: The handler's first read, begun when the event was accepted (`CommandSpec.read_ahead`);
    #: the handler takes it (and may find it unusable) or reads afresh.
    read_ahead: asyncio.Future[Any] | None = None

    @property
    def key(self) -> ConversationKey:
        return self.incoming.key

    @property
    def author(self) -> Author:
        return self.incoming.author

    async def reply(self, text: str, *, private: bool = False) -> str:
        """Post a message, with secrets scrubbed (never a key in a reply); `private`: only the
        asker sees it, where the platform can do that."""
        return await self.replier.post(self.core.scrub(text), private=private)

    async def show(self, text: str) -> str:
        """Post a public message, or turn the waiting notice into it; return its id."""
        notice = self.take_notice()
        if notice is None:
            return await self.reply(text)
        await self.replier.edit(notice[0], self.core.scrub(text))
        return notice[0]

    def take_notice(self) -> tuple[str, str] | None:
        notice, self.notice = self.notice, None
        return notice

    def tokmodel_failed(self, exc: TokModelError) -> None:
        """A TokModel failure this handler has already explained to the user."""
        self.outcome = "tokmodel_error"
        self.failure = exc
        self.core.note_tokmodel_failure(exc)

    def require_admin(self, what: str) -> None:
        if not self.core.is_admin(self.author):
            raise UserError(f"Only admins can {what}.")


Handler = Callable[[Invocation], Awaitable[None]]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    summary: str
    usage: str
    handler: Handler
    options: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    #: Counts against the per-user rate limit (it spends TokModel credits).
    uses_tokmodel: bool = False
    #: Not listed in /help (e.g. the automatic voice-message transcription).
    hidden: bool = False
    #: Whether this message asks for anything, checked before the rate limit is spent (a voice
    #: clip in a channel with transcription off asks for nothing).
    wanted: Callable[[Core, Incoming], Awaitable[bool]] | None = None
    #: Reads or writes the conversation's history, so it runs in the conversation's arrival
    #: order (after an answer in progress). False: it never waits behind a stream.
    reads_history: bool = True
    #: Works on attached files: a message with files may name it without the slash (see
    #: `Core.route_mention`).
    takes_files: bool = False
    #: Answered privately to the asker (its reply concerns only them), so an adapter that must
    #: choose in advance (Discord's deferral) can.
    private_reply: bool = False
    #: Its handler checks the budgets in its first database read (`Invocation.budget_due`),
    #: one trip instead of two before TokModel is asked, when the message has no files (their
    #: download comes first, and is not done for a request past its budget).
    budget_in_handler: bool = False
    #: The handler's first database read, which the core may start beside the event's INSERT
    #: when it is accepted (`bot.inbox.ReadAhead` says when); the handler finds its result in
    #: `Invocation.read_ahead`.
    read_ahead: Callable[[Core, Incoming], Awaitable[Any]] | None = None
    aliases: tuple[str, ...] = field(default=())


class CommandRegistry:
    def __init__(self, specs: Iterable[CommandSpec] = ()) -> None:
        self._by_name: dict[str, CommandSpec] = {}
        self._order: list[CommandSpec] = []
        for spec in specs:
            self.add(spec)

    def add(self, spec: CommandSpec) -> None:
        for name in (spec.name, *spec.aliases):
            if name in self._by_name:
                raise ValueError(f"command /{name} registered twice")
            self._by_name[name] = spec
        self._order.append(spec)

    def get(self, name: str) -> CommandSpec | None:
        return self._by_name.get(name.lower().lstrip("/"))

    def visible(self) -> list[CommandSpec]:
        return [spec for spec in self._order if not spec.hidden]
