"""The conversation core: checks each incoming command, runs its handler, and turns every
failure into a reply a person can act on."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from bot.commands import CommandRegistry, CommandSpec, Invocation
from bot.domain import Author, Incoming, Replier
from bot.errors import UserError
from bot.locks import ByteBudget, FairSlots, KeyedLocks
from bot.logs import SecretRedactor, make_request_id, request_id
from bot.metrics import Metrics
from bot.options import check_options, parse_options
from bot.settings import Settings
from bot.store import Store
from bot.text import clean_text
from bot.tokmodel.client import TokModelClient
from bot.tokmodel.errors import TokModelError, Unauthorized
from bot.tokmodel.types import Usage
from bot.wording import describe_tokmodel_error

log = logging.getLogger(__name__)

#: Posted at once when a TokModel command must wait for a free slot; the answer replaces it.
WAITING_NOTICE = "⏳ Busy right now{ahead}: I'll answer here as soon as I can."
NOT_ANSWERED = "✖️ Not answered: I've told you why privately."


class Core:
    """Platform-neutral bot. Adapters call `handle` with a domain message and a Replier."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        tokmodel: TokModelClient,
        registry: CommandRegistry | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        from bot.handlers import default_commands  # handlers import Core's types

        self.settings = settings
        self.store = store
        self.tokmodel = tokmodel
        self.registry = registry or CommandRegistry(default_commands())
        self.metrics = metrics or Metrics()
        self._arrival_order = KeyedLocks()
        # Backpressure: TokModel commands in flight, and attachment bytes held, per process.
        self._answer_slots = FairSlots(settings.max_answers_in_flight)
        self.downloads = ByteBudget(settings.max_download_bytes_in_flight)
        self.redactor = SecretRedactor(settings.secrets())
        self._unauthorized_logged = False

    # -- helpers for handlers -------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return self.redactor.redact(text)

    def is_admin(self, author: Author) -> bool:
        return author.is_admin or author.id in self.settings.admin_ids

    def note_tokmodel_failure(self, exc: TokModelError) -> None:
        if isinstance(exc, Unauthorized):
            if not self._unauthorized_logged:
                self._unauthorized_logged = True
                log.critical(
                    "TokModel rejected the API key (401): set a valid TOKMODEL_API_KEY "
                    "and restart tokbot"
                )
        else:
            log.warning("TokModel request failed: %s (status %s)", type(exc).__name__, exc.status)

    def count_usage(self, usage: Usage | None) -> None:
        """Add a TokModel request's tokens to the metrics."""
        if usage is not None:
            self.metrics.tokens.labels("prompt").inc(usage.prompt_tokens)
            self.metrics.tokens.labels("completion").inc(usage.completion_tokens)

    async def record_usage(
        self, invocation: Invocation, *, model: str | None, usage: Usage | None
    ) -> None:
        """One TokModel request done for this invocation (stored for /usage, and counted)."""
        self.count_usage(usage)
        await self.store.record_usage(
            invocation.key,
            user_id=invocation.author.id,
            command=invocation.incoming.command,
            model=model,
            usage=usage,
        )

    # -- dispatch -------------------------------------------------------------------------

    async def handle(self, incoming: Incoming, replier: Replier) -> None:
        """Run one incoming command; every outcome ends in a reply (or a deliberate silence for
        bots and already-answered events)."""
        self.metrics.events.labels(incoming.key.platform).inc()
        incoming = self.route_mention(incoming)
        # The adapter may have started this message's id already (its log lines carry it too).
        started = request_id.set(make_request_id()) if request_id.get() == "-" else None
        reference = request_id.get()
        try:
            await self._handle(incoming, replier, reference)
        finally:
            if started is not None:
                request_id.reset(started)

    async def _handle(self, incoming: Incoming, replier: Replier, reference: str) -> None:
        started = time.perf_counter()
        # Taken before any await, so a conversation's commands run (and are answered) in the
        # order they arrived, whatever their database round trips take.
        async with self._arrival_order.hold(incoming.key):
            outcome = await self._dispatch(incoming, replier, reference)
        known = self.registry.get(incoming.command) is not None
        command = incoming.command if known else "unknown"
        self.metrics.commands.labels(command, outcome).inc()
        # One line per event (the request id comes with the format); never what was said.
        log.log(
            logging.DEBUG if outcome == "ignored" else logging.INFO,
            "%s /%s: %s in %.0f ms",
            incoming.key.platform,
            command,
            outcome,
            (time.perf_counter() - started) * 1000,
        )

    async def _dispatch(self, incoming: Incoming, replier: Replier, reference: str) -> str:
        """Run the command; return its outcome for the metrics."""
        if incoming.author.is_bot:
            return "ignored"
        if incoming.event_id is not None and not await self.store.claim_event(
            incoming.key.platform, incoming.event_id
        ):
            log.debug("event %s already handled; ignoring the redelivery", incoming.event_id)
            return "duplicate"
        invocation: Invocation | None = None
        try:
            invocation = await self._prepare(incoming, replier)
            if invocation is None:
                return "ignored"
            await self._run(invocation)
            return invocation.outcome
        except UserError as exc:  # a refusal concerns only the asker
            await self._safe_post(replier, invocation, str(exc), private=True)
            return "refused"
        except TokModelError as exc:
            self.note_tokmodel_failure(exc)
            text = describe_tokmodel_error(exc)
            await self._safe_post(replier, invocation, text, private=incoming.slash)
            return "tokmodel_error"
        except Exception:
            log.exception("command /%s failed (reference %s)", incoming.command, reference)
            await self._safe_post(
                replier,
                invocation,
                f"😵 Sorry, something went wrong on my side (reference {reference}). "
                "Your message is saved; please try again.",
                private=incoming.slash,
            )
            return "bug"

    async def _run(self, invocation: Invocation) -> None:
        """Run the handler; a TokModel command waits for a free slot first (in arrival order),
        and the person is told at once that it waits."""
        spec = self.registry.get(invocation.incoming.command)
        assert spec is not None  # _prepare checked it
        if not spec.uses_tokmodel:
            await spec.handler(invocation)
            return
        waiter = self._answer_slots.join()
        if waiter is not None:
            ahead = self._answer_slots.waiting - 1
            text = WAITING_NOTICE.format(ahead=f" ({ahead} ahead of you)" if ahead else "")
            try:
                invocation.notice = (await invocation.reply(text), text)
            except asyncio.CancelledError:
                self._answer_slots.leave(waiter)
                raise
            except Exception:  # the answer still comes; it just was not announced
                log.warning("could not post the waiting notice", exc_info=True)
            await self._answer_slots.wait(waiter)
        try:
            await spec.handler(invocation)
        finally:
            self._answer_slots.release()
        if (notice := invocation.take_notice()) is not None:
            # Nothing was shown in its place (e.g. transcription turned off meanwhile).
            await invocation.replier.edit(notice[0], "✔️ Done.")

    async def _prepare(self, incoming: Incoming, replier: Replier) -> Invocation | None:
        """The invocation, once checked and counted against the rate limit (None: the message
        asks for nothing)."""
        spec = self.registry.get(incoming.command)
        if spec is None:
            raise UserError(f"Unknown command /{incoming.command}. Try /help.")
        if spec.wanted is not None and not await spec.wanted(self, incoming):
            return None
        text, options = self._options(spec, incoming)
        limit = self.settings.rate_limit_per_minute
        if spec.uses_tokmodel and limit > 0:
            # Counted in the database, so the limit holds across replicas.
            wait = await self.store.acquire_rate(
                f"{incoming.key.platform}:{incoming.author.id}", limit=limit, window=60.0
            )
            if wait is not None:
                raise UserError(
                    f"🐢 You're sending requests quickly: please wait {max(1, round(wait))} "
                    "seconds and try again."
                )
        options = {name: clean_text(value) for name, value in options.items()}
        return Invocation(self, incoming, replier, clean_text(text), options)

    def route_mention(self, incoming: Incoming) -> Incoming:
        """A mention or DM that starts with a command runs that command: `@tokbot /tts hello`.
        With files attached, a command that takes files needs no slash (`@tokbot imagine make it
        blue` with an image): slash commands cannot carry files, and Slack's composer runs a
        message that starts with a slash as a slash command."""
        if incoming.command != "ask":
            return incoming
        first, rest = [*incoming.text.split(maxsplit=1), "", ""][:2]
        spec = self.registry.get(first) if first.startswith("/") or incoming.attachments else None
        if spec is None or spec.hidden or not (first.startswith("/") or spec.takes_files):
            return incoming  # a question like any other (or "/shrug", or a path)
        return dataclasses.replace(incoming, command=spec.name, text=rest.strip())

    @staticmethod
    def _options(spec: CommandSpec, incoming: Incoming) -> tuple[str, dict[str, str]]:
        accepted = (*spec.options, *spec.flags)
        if incoming.options:
            check_options(incoming.options, accepted, command=spec.name)
            return incoming.text.strip(), dict(incoming.options)
        return parse_options(incoming.text, spec.options, command=spec.name, flags=spec.flags)

    async def _safe_post(
        self, replier: Replier, invocation: Invocation | None, text: str, *, private: bool
    ) -> None:
        """Say what went wrong; a waiting notice becomes the reply (or points to it)."""
        notice = invocation.take_notice() if invocation is not None else None
        try:
            if notice is not None:
                await replier.edit(notice[0], self.scrub(NOT_ANSWERED if private else text))
                if not private:
                    return
            await replier.post(self.scrub(text), private=private)
        except Exception:
            log.exception("could not deliver a reply")
