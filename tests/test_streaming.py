"""The stream renderer: throttled edits, continuation past the limit, the final text."""

from __future__ import annotations

import asyncio

from bot.domain import AnswerControls
from bot.inbox.repliers import Watched
from bot.logs import SecretRedactor
from bot.streaming import StreamRenderer
from tests.platform import RecordingReplier


async def test_edits_are_throttled_and_the_final_text_is_complete() -> None:
    replier = RecordingReplier(edit_interval=0.2)
    renderer = StreamRenderer(replier, placeholder="…", interval=0.2)
    await renderer.start()
    for index in range(20):
        renderer.feed(f"{index} ")
        await asyncio.sleep(0.02)  # 0.4 s of streaming
    await renderer.finish()
    assert replier.texts == ["".join(f"{i} " for i in range(20))]
    assert 1 <= replier.edits <= 4  # at most one edit per 0.2 s, plus the final one


async def test_first_text_shows_within_one_interval_even_if_nothing_follows() -> None:
    replier = RecordingReplier()
    renderer = StreamRenderer(replier, placeholder="…", interval=0.1)
    await renderer.start()
    renderer.feed("hello")
    await asyncio.sleep(0.25)
    assert replier.texts == ["hello"]
    await renderer.finish()


async def test_text_past_the_limit_continues_in_new_messages() -> None:
    replier = RecordingReplier(max_message_length=10)
    renderer = StreamRenderer(replier, placeholder=None, interval=0)
    await renderer.start()
    for word in "the quick brown fox jumps over the lazy dog".split():
        renderer.feed(word + " ")
        await asyncio.sleep(0)
    await renderer.finish(" END")
    assert "".join(replier.texts) == "the quick brown fox jumps over the lazy dog  END"
    assert all(len(t) <= 10 for t in replier.texts)
    assert renderer.message_ids == replier.order


async def test_an_empty_stream_still_shows_something() -> None:
    replier = RecordingReplier()
    renderer = StreamRenderer(replier, placeholder=None, interval=0)
    await renderer.start()
    await renderer.finish()
    assert replier.texts == ["…"]


async def test_finishing_during_a_slow_first_post_does_not_post_twice() -> None:
    class SlowReplier(RecordingReplier):
        async def post(
            self, text: str, *, private: bool = False, controls: AnswerControls | None = None
        ) -> str:
            message_id = await super().post(
                text, private=private, controls=controls
            )  # the platform has it...
            await asyncio.sleep(0.1)  # ...but its answer is still on the way
            return message_id

    replier = SlowReplier()
    renderer = StreamRenderer(replier, placeholder=None, interval=0)
    await renderer.start()
    renderer.feed("first words")
    await asyncio.sleep(0.02)  # the first post is in flight
    renderer.feed(", and the rest")
    await renderer.finish()
    assert replier.texts == ["first words, and the rest"]


SECRET = "sk-live-abcdefghijklmnop"


class EveryTextReplier(RecordingReplier):
    """Keeps every text ever shown (posts and edits), not only the latest."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        self.seen.append(text)
        return await super().post(text, private=private, controls=controls)

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        self.seen.append(text)
        await super().edit(message_id, text, controls=controls)


async def test_no_piece_of_a_secret_streamed_in_small_chunks_is_ever_shown() -> None:
    replier = EveryTextReplier()
    renderer = StreamRenderer(
        replier, placeholder=None, interval=0, redactor=SecretRedactor([SECRET])
    )
    await renderer.start()
    answer = f"the key is {SECRET}, keep it"
    for start in range(0, len(answer), 3):
        renderer.feed(answer[start : start + 3])
        await asyncio.sleep(0.01)  # let the flusher show each stage
    await renderer.finish()
    assert replier.last == "the key is [redacted], keep it"
    assert len(replier.seen) > 5
    assert not any(SECRET[:3] in text for text in replier.seen)


async def test_an_answer_cut_off_inside_a_secret_shows_no_part_of_it() -> None:
    replier = EveryTextReplier()
    renderer = StreamRenderer(
        replier, placeholder=None, interval=0, redactor=SecretRedactor([SECRET])
    )
    await renderer.start()
    renderer.feed("the key is " + SECRET[:10])
    await renderer.finish(" (cut off)", complete=False)
    assert replier.last == "the key is  (cut off)"
    assert renderer.text == "the key is  (cut off)"


def test_redact_unfinished_holds_back_only_what_could_start_a_secret() -> None:
    redactor = SecretRedactor([SECRET])
    assert redactor.redact_unfinished("so sk-li") == "so "
    assert redactor.redact_unfinished("so sk-x") == "so sk-x"
    assert redactor.redact_unfinished(f"a {SECRET} b s") == "a [redacted] b "
    assert redactor.redact_unfinished("plain") == "plain"


class StreamingReplier(RecordingReplier):
    """A RecordingReplier that streams natively (`bot.domain.NativeStreamer`): every message's
    appends are kept, so a test can check nothing given was ever taken back."""

    def __init__(self, *, available: bool = True, whole: bool = False, **fields: object) -> None:
        super().__init__(**fields)  # type: ignore[arg-type]
        self.available = available
        self.whole = whole  # offers post_whole
        self.appends: dict[str, list[str]] = {}
        self.stopped: set[str] = set()
        self.posted_whole: list[str] = []

    async def start_stream(
        self, markdown: str, *, controls: AnswerControls | None = None
    ) -> Stream | None:
        if not self.available:
            return None
        message_id = await self.post(markdown, controls=controls)
        self.appends[message_id] = [markdown]
        return Stream(self, message_id)

    async def post_whole(
        self, markdown: str, *, controls: AnswerControls | None = None
    ) -> str | None:
        if not self.whole:
            return None  # (then the renderer posts)
        message_id = await self.post(markdown, controls=controls)
        self.posted_whole.append(message_id)
        return message_id


class Stream:
    def __init__(self, replier: StreamingReplier, message_id: str) -> None:
        self.replier, self.message_id = replier, message_id

    async def append(self, markdown: str) -> None:
        assert self.message_id not in self.replier.stopped, "appended to a stopped stream"
        self.replier.appends[self.message_id].append(markdown)
        self.replier.messages[self.message_id] += markdown

    async def stop(self, markdown: str = "", *, controls: AnswerControls | None = None) -> None:
        await self.append(markdown)
        self.replier.controls[self.message_id] = controls
        self.replier.stopped.add(self.message_id)


async def test_a_native_stream_only_appends_and_is_stopped_once() -> None:
    replier = StreamingReplier(max_message_length=12)
    renderer = StreamRenderer(replier, placeholder=None, interval=0)
    await renderer.start()
    for word in "the quick brown fox jumps over the lazy dog".split():
        renderer.feed(word + " ")
        await asyncio.sleep(0)
    await renderer.finish(" END")
    assert "".join(replier.texts) == "the quick brown fox jumps over the lazy dog  END"
    assert replier.edits == 0  # appends only
    assert replier.stopped == set(replier.order)  # each message's stream was stopped
    for message_id, parts in replier.appends.items():
        assert "".join(parts) == replier.messages[message_id]


async def test_a_native_stream_never_shows_a_piece_of_a_secret() -> None:
    secret = "sk-0123456789abcdef"
    replier = StreamingReplier()
    renderer = StreamRenderer(
        replier, placeholder=None, interval=0, redactor=SecretRedactor([secret])
    )
    await renderer.start()
    for piece in ("key: sk-01", "2345", "6789abcdef done"):
        renderer.feed(piece)
        await asyncio.sleep(0.01)
    await renderer.finish()
    assert replier.texts == ["key: [redacted] done"]
    assert not any("sk-" in part for parts in replier.appends.values() for part in parts)


async def test_a_stream_that_scrubbing_changed_is_replaced_at_the_end() -> None:
    # "AAAA-1" is a secret, and so is the longer "sk-AAAA-1-BBBB": the shorter one is redacted
    # first, then the longer one completes and takes back text already appended.
    replier = StreamingReplier()
    renderer = StreamRenderer(
        replier,
        placeholder=None,
        interval=0,
        redactor=SecretRedactor(["AAAA-1", "sk-AAAA-1-BBBB"]),
    )
    await renderer.start()
    renderer.feed("x sk-AAAA-1")
    await asyncio.sleep(0.01)
    assert replier.texts == ["x sk-[redacted]"]
    renderer.feed("-BBBB y")
    await asyncio.sleep(0.01)
    assert replier.texts == ["x sk-[redacted]"]  # nothing appended once it diverged
    await renderer.finish()
    assert replier.texts == ["x [redacted] y"]
    assert replier.stopped and replier.edits == 1  # stopped, then replaced


async def test_without_native_streaming_the_answer_is_posted_and_edited() -> None:
    replier = StreamingReplier(available=False)
    renderer = StreamRenderer(replier, placeholder=None, interval=0)
    await renderer.start()
    renderer.feed("hello ")
    await asyncio.sleep(0.01)
    renderer.feed("world")
    await renderer.finish()
    assert replier.texts == ["hello world"] and replier.appends == {}


async def test_controls_stop_while_streaming_feedback_on_the_last_message_only() -> None:
    replier = RecordingReplier(max_message_length=10)
    streaming = AnswerControls(7, "u1", streaming=True)
    renderer = StreamRenderer(replier, placeholder="…", interval=0, controls=streaming)
    await renderer.start()
    assert replier.controls == {"m1": streaming}  # Stop from the first moment
    renderer.feed("aaaa bbbb cccc dddd")  # outgrows one message
    await renderer.finish()
    first, *_, last = replier.order
    assert len(replier.order) >= 2
    assert replier.controls[last] == AnswerControls(7, "u1", streaming=False)
    assert all(replier.controls[i] is None for i in replier.order[:-1]), replier.controls
    assert replier.controls[first] is None  # its Stop button was taken away


async def test_a_failed_answer_ends_without_buttons() -> None:
    replier = RecordingReplier()
    renderer = StreamRenderer(
        replier, placeholder="…", interval=0, controls=AnswerControls(7, "u1", streaming=True)
    )
    await renderer.start()
    renderer.feed("half an answer")
    await renderer.finish(" (broken)", complete=False, feedback=False)
    assert replier.controls == {"m1": None}


async def test_an_answer_that_ends_at_once_is_posted_once_finished() -> None:
    # No placeholder (Discord): the first post waits FIRST_POST_GRACE for the end, so an answer
    # that arrives whole is posted with its final buttons, not posted and then edited.
    replier = RecordingReplier()
    controls = AnswerControls(3, "u1", streaming=True)
    renderer = StreamRenderer(replier, placeholder=None, interval=0, controls=controls)
    await renderer.start()
    renderer.feed("the whole answer")
    await asyncio.sleep(0)  # the flusher wakes, and waits
    await renderer.finish()
    assert replier.texts == ["the whole answer"] and replier.edits == 0
    assert replier.controls == {"m1": AnswerControls(3, "u1", streaming=False)}


async def test_the_grace_never_delays_a_native_stream_behind_the_inbox_s_wrapper() -> None:
    replier = StreamingReplier()
    watched = Watched(replier, lambda: None, _nothing)
    assert watched.streams_natively
    assert not Watched(RecordingReplier(), lambda: None, _nothing).streams_natively
    renderer = StreamRenderer(watched, placeholder=None, interval=0)
    await renderer.start()
    renderer.feed("hello")
    for _ in range(5):  # a few turns of the loop, no timer's worth: started without the grace
        await asyncio.sleep(0)
    assert replier.texts == ["hello"] and not replier.stopped
    await renderer.finish()


async def _nothing() -> None:
    pass


async def test_an_answer_complete_before_its_first_message_is_posted_whole() -> None:
    """No stream (a start and a stop) for an answer that arrived at once: one post_whole."""
    controls = AnswerControls(turn_id=7, asker_id="U1", streaming=True)
    for whole in (True, False):
        replier = StreamingReplier(whole=whole)
        renderer = StreamRenderer(replier, placeholder=None, interval=0, controls=controls)
        await renderer.start()
        renderer.feed("all of it ")
        renderer.feed("at once")
        await renderer.finish()
        assert replier.texts == ["all of it at once"]
        assert replier.appends == {} and replier.stopped == set()  # no stream was started
        assert replier.posted_whole == (replier.order if whole else [])
        [message_id] = replier.order
        final = replier.controls[message_id]
        assert final is not None and final.turn_id == 7 and not final.streaming
