"""The core counts each command TokModel failed in the database, for the admin page."""

from __future__ import annotations

from bot.core import Core
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.platform import KEY, RecordingReplier, message


async def test_failed_commands_are_counted_by_status(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    fake.fail(Fault(status=403, times=2))
    await core.handle(message("ask", "hello"), replier)  # the chat handler explains it
    await core.handle(message("imagine", "a cat"), replier)  # the core explains it
    await core.handle(message("ask", "again"), replier)  # answered: usage, not an error

    assert await core.store.errors_by_status() == [(403, 2)]
    summary = await core.store.usage_summary(KEY, "u-alice")
    assert (summary.user_requests, (await core.store.daily_activity(1))[0].errors) == (1, 2)
