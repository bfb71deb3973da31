"""The conversation core: checks each incoming command, runs its handler, and turns every
failure into a reply a person can act on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bot.alerts import Alerts
from bot.budgets import Budgets, media_tokens, request_estimate
from bot.commands import CommandRegistry, CommandSpec, Invocation
from bot.domain import Author, FeedbackValue, Incoming, Replier, TurnStatus
from bot.embedder import Embedder, EmbeddingConfig
from bot.errors import UserError
from bot.folding import Folding
from bot.inbox import Inbox, Ticket
from bot.locks import ByteBudget, FairSlots
from bot.logs import SecretRedactor, make_request_id, request_id
from bot.memory import Memory
from bot.metrics import Metrics
from bot.options import check_options, parse_options
from bot.settings import Settings
from bot.sight import Sight
from bot.stopping import RunningAnswers
from bot.store import Store
from bot.summarizer import Summarizer
from bot.text import clean_text
from bot.tokmodel.client import TokModelClient
from bot.tokmodel.errors import TokModelError, Unauthorized
from bot.tokmodel.types import Usage
from bot.vector_recall import VectorRecall
from bot.wording import describe_tokmodel_error

log = logging.getLogger(__name__)

#: Posted at once when a TokModel command must wait for a free slot; the answer replaces it.
WAITING_NOTICE = "⏳ Busy right now{ahead}: I'll answer here as soon as I can."
NOT_ANSWERED = "✖️ Not answered: I've told you why privately."
#: Posted at once when a question waits for the answer before it in the same conversation.
QUEUED_NOTICE = "⏳ After the answer above: I'll answer here once it's done."
#: Private acknowledgements of the buttons under an answer.
FEEDBACK_THANKS = {
    FeedbackValue.POSITIVE: "👍 Thanks for the feedback!",
    FeedbackValue.NEGATIVE: "👎 Thanks: noted that this answer wasn't good enough.",
}
FEEDBACK_CHANGED = " (It replaces your earlier feedback on this answer.)"
ANSWER_GONE = "I can't find that answer any more."
STOPPED = "⏹️ Stopped."
STOPPING = "⏹️ Stopping…"
NOT_YOUR_ANSWER = "Only the person who asked can stop this answer."
ALREADY_FINISHED = "That answer has already finished."


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
        self.inbox = Inbox(
            store,
            lease_seconds=settings.process_lease_seconds,
            prune_every=settings.prune_interval_seconds,
        )
        # Backpressure: TokModel commands in flight, and attachment bytes held, per process.
        self._answer_slots = FairSlots(settings.max_answers_in_flight)
        self.downloads = ByteBudget(settings.max_download_bytes_in_flight)
        self.redactor = SecretRedactor(settings.secrets())
        #: Answers streaming in this process, so their asker can stop them.
        self.answers = RunningAnswers()
        self.sight = Sight(settings.vision_model)  # models that refused pictures
        self._unauthorized_logged = False
        self.alerts = Alerts(store)  # adapters register how they reach admins
        self.budgets = Budgets(store, self.alerts)
        #: Summaries from TokModel (folding, /summarize); folds long conversations after answers.
        self.summarizer = Summarizer(tokmodel, budget_tokens=settings.context_budget_tokens)
        self.folding = Folding(store, self.summarizer, budget_tokens=settings.context_budget_tokens)
        #: Embeds kept messages and people's turns in the background (None: embeddings off).
        self.embedder = _embedder(settings, store, tokmodel, busy=lambda: self._answer_slots.busy)
        self.memory = Memory(
            store.memory,
            tokmodel,
            rerank_model=settings.rerank_model,
            candidates=settings.memory_candidates,
            scrub=self.scrub,
            vectors=(
                VectorRecall(store.vectors, self.embedder, store.memory) if self.embedder else None
            ),
            record_usage=store.record_usage,
        )

    # -- helpers for handlers -------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return self.redactor.redact(text)

    def is_admin(self, author: Author) -> bool:
        return author.is_admin or author.id in self.settings.admin_ids

    def note_tokmodel_failure(self, exc: TokModelError) -> None:
        self.alerts.tokmodel_failed(exc)
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
        """One TokModel request done for this invocation (stored for /usage, and counted;
        without TokModel's usage, by the budgets' estimate for media)."""
        if usage is None:
            inc = invocation.incoming
            tokens = media_tokens(
                inc.command, invocation.text, invocation.options, inc.attachments,
                self.settings.image_size,
            )  # fmt: skip
            usage = Usage(0, tokens, tokens)
        self.count_usage(usage)
        await self.store.record_usage(
            invocation.key,
            user_id=invocation.author.id,
            command=invocation.incoming.command,
            model=model,
            usage=usage,
        )
        await self.budgets.after_usage(
            invocation.key, invocation.author.id, budgeted=invocation.budgeted
        )

    # -- buttons under answers -------------------------------------------------------------

    async def record_feedback(
        self, platform: str, turn_id: int, user: Author, value: FeedbackValue
    ) -> str:
        """A 👍/👎 click on the answer stored as `turn_id`: stored (the same person's second
        click replaces the first) and counted; returns the private acknowledgement."""
        before = await self.store.record_feedback(turn_id, user.id, value)
        if before is ...:
            return ANSWER_GONE
        if before is not value:
            self.metrics.feedback.labels(platform, value.value).inc()
        log.info("%s feedback on turn %d: %s", platform, turn_id, value.value)
        return FEEDBACK_THANKS[value] + (FEEDBACK_CHANGED if before not in (None, value) else "")

    async def stop_answer(self, turn_id: int, user: Author) -> str:
        """A Stop click on the answer streaming as `turn_id`: only its asker may stop it. One
        streaming here stops at once (stored as STOPPED with what was shown, its message
        marked). One streaming in another replica is marked in the database, which that
        replica reads each time it saves what it has shown (about once a second), and stops.
        Returns the private acknowledgement."""
        running = self.answers.get(turn_id)
        if running is not None:
            if running.asker_id != user.id:
                return NOT_YOUR_ANSWER
            self.answers.stop(turn_id)
            return STOPPED
        info = await self.store.answer_info(turn_id)
        if info is None:
            return ANSWER_GONE
        if info.asker_id != user.id:
            return NOT_YOUR_ANSWER
        if info.status is TurnStatus.STOPPED:
            return STOPPED
        if info.status is not TurnStatus.PENDING or not await self.store.request_stop(turn_id):
            return ALREADY_FINISHED
        return STOPPING

    # -- dispatch -------------------------------------------------------------------------

    async def accept(self, incoming: Incoming, route: Mapping[str, str]) -> Ticket | None:
        """Before the platform is acknowledged: claim and store the event with its reply
        `route` (ids only, no credentials), taking its place in its conversation's line. None:
        it was handled before (a redelivery), do nothing more. Adapters call it with what they
        know without a network call (the author's full record may come later, in `handle`)."""
        started = time.perf_counter()
        self.metrics.events.labels(incoming.key.platform).inc()
        routed = self.route_mention(incoming)
        spec = self.registry.get(routed.command)
        # Commands that neither read nor write the history (and refusals) never wait in line.
        ordered = spec is not None and spec.reads_history
        read_ahead = None
        if spec is not None and spec.read_ahead is not None and not routed.author.is_bot:
            read_ahead = functools.partial(spec.read_ahead, self, routed)
        ticket = await self.inbox.accept(routed, route, ordered=ordered, read_ahead=read_ahead)
        if ticket is None:
            self._count(incoming, "duplicate", started)
        return ticket

    def release(self, ticket: Ticket, *, failed: bool = False) -> None:
        """An accepted event the adapter will not hand over after all: stopping (its row is
        kept, for the restart or a replica), or `failed` (closed, so it holds up nobody)."""
        self.inbox.release(ticket, close=failed)

    @contextlib.contextmanager
    def handing_over(self, ticket: Ticket) -> Iterator[None]:
        """Around an adapter's work between `accept` and `handle` (author look-ups, building
        the replier): cancelled, the event is kept; failed, it is closed (see `release`)."""
        try:
            yield
        except asyncio.CancelledError:
            self.release(ticket)
            raise
        except Exception:
            self.release(ticket, failed=True)
            raise

    async def handle(
        self, incoming: Incoming, replier: Replier, ticket: Ticket | None = None
    ) -> None:
        """Run one incoming command, in its conversation's order; every outcome ends in a reply
        (or a deliberate silence for bots and already-answered events). Without a `ticket`
        (from `accept`), the event is accepted here."""
        incoming = self.route_mention(incoming)
        # The adapter may have started this message's id already (its log lines carry it too).
        started = request_id.set(make_request_id()) if request_id.get() == "-" else None
        reference = request_id.get()
        try:
            if ticket is None:
                if incoming.author.is_bot:
                    self.metrics.events.labels(incoming.key.platform).inc()
                    self._count(incoming, "ignored", time.perf_counter())
                    return
                ticket = await self.accept(incoming, {})
                if ticket is None:
                    return
            await self._handle(incoming, replier, ticket, reference)
        finally:
            if started is not None:
                request_id.reset(started)

    def _known(self, incoming: Incoming) -> str:
        return incoming.command if self.registry.get(incoming.command) is not None else "unknown"

    async def _handle(
        self, incoming: Incoming, replier: Replier, ticket: Ticket, reference: str
    ) -> None:
        started = time.perf_counter()
        queued: list[tuple[str, str]] = []

        async def announce() -> bool:
            # A question behind an answer in progress is told at once that it keeps its turn;
            # its answer replaces this notice (the backpressure notice's mechanism).
            spec = self.registry.get(incoming.command)
            if spec is None or not spec.uses_tokmodel or incoming.author.is_bot:
                return False
            try:
                queued.append((await replier.post(self.scrub(QUEUED_NOTICE)), QUEUED_NOTICE))
            except Exception:  # the answer still comes; it just was not announced
                log.warning("could not post the queued notice", exc_info=True)
                return False
            return True

        # The place in line was taken when the event was accepted, before any network call,
        # so a conversation's commands run (and are answered) in the order they arrived.
        async with self.inbox.turn(ticket, replier, announce) as watched:
            early = ticket.read_ahead.take() if ticket.read_ahead is not None else None
            outcome = await self._dispatch(incoming, watched, reference, queued, early)
        self._count(incoming, outcome, started)

    def _count(self, incoming: Incoming, outcome: str, started: float) -> None:
        command = self._known(incoming)
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

    async def _dispatch(
        self,
        incoming: Incoming,
        replier: Replier,
        reference: str,
        queued: list[tuple[str, str]] | None = None,
        early: asyncio.Future[Any] | None = None,
    ) -> str:
        """Run the command; return its outcome for the metrics. `queued`: the notice posted
        while it waited its turn, if any (the first thing it shows replaces it); `early`: the
        handler's first read, started when the event was accepted (`CommandSpec.read_ahead`)."""
        if incoming.author.is_bot:
            return "ignored"
        invocation: Invocation | None = None
        try:
            invocation = await self._prepare(incoming, replier)
            if invocation is not None:
                invocation.read_ahead = early
            if invocation is None:
                if queued:
                    await replier.edit(queued.pop()[0], "✔️ Done.")
                return "ignored"
            if queued:
                invocation.notice = queued.pop()
            await self._run(invocation)
            if invocation.failure is not None:
                await self._record_failure(incoming, invocation.failure)
            return invocation.outcome
        except UserError as exc:  # a refusal concerns only the asker
            invocation = invocation or self._holding(incoming, replier, queued)
            await self._safe_post(replier, invocation, str(exc), private=True)
            return "refused"
        except TokModelError as exc:
            self.note_tokmodel_failure(exc)
            text = describe_tokmodel_error(exc)
            invocation = invocation or self._holding(incoming, replier, queued)
            await self._safe_post(replier, invocation, text, private=incoming.slash)
            await self._record_failure(incoming, exc)
            return "tokmodel_error"
        except Exception:
            log.exception("command /%s failed (reference %s)", incoming.command, reference)
            invocation = invocation or self._holding(incoming, replier, queued)
            await self._safe_post(
                replier,
                invocation,
                f"😵 Sorry, something went wrong on my side (reference {reference}). "
                "Your message is saved; please try again.",
                private=incoming.slash,
            )
            return "bug"

    async def _record_failure(self, incoming: Incoming, exc: TokModelError) -> None:
        """Count the failure in the database (the admin page's errors); after the reply, and
        never in its way."""
        try:
            await self.store.record_tokmodel_error(
                incoming.key,
                user_id=incoming.author.id,
                command=incoming.command,
                status=exc.status,
            )
        except Exception:
            log.warning("could not count a TokModel failure", exc_info=True)

    def _holding(
        self, incoming: Incoming, replier: Replier, queued: list[tuple[str, str]] | None
    ) -> Invocation | None:
        """For a failure before the invocation existed: one that holds the queued notice."""
        if not queued:
            return None
        return Invocation(self, incoming, replier, "", {}, notice=queued.pop())

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
                if invocation.notice is None:  # (else it was told it waits its turn already)
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
        if invocation.outcome == "ok":
            self.alerts.tokmodel_ok()
        if (notice := invocation.take_notice()) is not None:
            # Nothing was shown in its place (e.g. transcription turned off meanwhile).
            await invocation.replier.edit(notice[0], "✔️ Done.")

    async def _prepare(self, incoming: Incoming, replier: Replier) -> Invocation | None:
        """The invocation, once checked and counted against the rate limit (None: the message
        asks for nothing)."""
        spec = self.registry.get(incoming.command)
        if incoming.author.is_admin:  # who alerts may reach (see bot.alerts)
            self.alerts.saw_admin(incoming.key.platform, incoming.key.workspace, incoming.author.id)
        if spec is None:
            raise UserError(f"Unknown command /{incoming.command}. Try /help.")
        if spec.wanted is not None and not await spec.wanted(self, incoming):
            return None
        text, options = self._options(spec, incoming)
        budgeted, due = True, None
        if spec.uses_tokmodel:  # nothing goes to TokModel past a budget (one read when none)
            estimate = request_estimate(spec.name, text, options, self.settings.image_size)
            if spec.budget_in_handler and not incoming.attachments:
                due = estimate  # (read with the handler's context: `Invocation.budget_due`)
            else:
                budgeted = await self.budgets.check(
                    incoming.key, incoming.author.id, estimate=estimate
                )
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
        return Invocation(
            self, incoming, replier, clean_text(text), options, budgeted=budgeted, budget_due=due
        )

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


def _embedder(
    settings: Settings, store: Store, tokmodel: TokModelClient, *, busy: Callable[[], bool]
) -> Embedder | None:
    if settings.embeddings == "off":
        return None
    config = EmbeddingConfig(
        settings.embedding_model, settings.embedding_dimensions or None, settings.embedding_batch
    )
    return Embedder(store, tokmodel, config, busy=busy)
