"""Forged and replayed Slack requests never reach TokModel; model output and TokModel's error text
cannot ping anyone on either platform; settings need an admin; the TokModel key and platform
tokens appear in no log line and no reply."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.fake import FakeDiscord
from bot.domain import ConversationKey
from bot.logs import SecretRedactor
from bot.store.store import ChannelSettings
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.conftest import API_KEY
from tests.discord.conftest import TOKEN
from tests.discord.helpers import answer
from tests.reliability.conftest import Figures
from tests.slack.conftest import ALICE, CHANNEL, Bot

PINGS = "<!channel> <!here> <!everyone> <!subteam^S0DEVS|@devs> <@U0BOSS> <#C0SECRET> @everyone @here <@&123> <@111>"  # noqa: E501
CHAT = "/v1/chat/completions"


async def post(url: str, body: str, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status


async def test_forged_and_replayed_slack_requests_are_refused(
    bot: Bot, fake: FakeTokModel, reliability: Figures
) -> None:
    slack = bot.slack
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    command = urlencode(slack.command_payload("/ask", "forged"))
    mention = slack.message_event("forged", mention=True)
    event = json.dumps(slack.event_body(mention))
    # The `message` event beside every mention is acknowledged before bolt: checked there too.
    companion = json.dumps(
        slack.event_body({**mention, "type": "message", "channel_type": "channel"})
    )
    as_json = {"Content-Type": "application/json"}
    stale = int(time.time()) - 6 * 60
    attempts: dict[str, tuple[str, dict[str, str]]] = {
        "wrong secret": (command, form | slack.sign(command, secret="guess")),
        "no signature": (command, form),
        "signature of another body": (command, form | slack.sign(command + "&x=1")),
        "tampered after signing": (
            command.replace("forged", "tampered"),
            form | slack.sign(command),
        ),
        "signature without version": (
            command,
            form
            | {
                **slack.sign(command),
                "X-Slack-Signature": slack.sign(command)["X-Slack-Signature"][3:],
            },
        ),
        "timestamp not a number": (
            command,
            form | {**slack.sign(command), "X-Slack-Request-Timestamp": "soon"},
        ),
        "replayed 6 minutes later": (command, form | slack.sign(command, timestamp=stale)),
        "timestamp from the future": (
            command,
            form | slack.sign(command, timestamp=int(time.time()) + 600),
        ),
        "event with wrong secret": (event, as_json | slack.sign(event, secret="guess")),
        "event replayed 6 minutes later": (event, as_json | slack.sign(event, timestamp=stale)),
        "mention's message event with wrong secret": (
            companion,
            as_json | slack.sign(companion, secret="guess"),
        ),
        "mention's message event replayed 6 minutes later": (
            companion,
            as_json | slack.sign(companion, timestamp=stale),
        ),
    }
    statuses = {
        name: await post(bot.url, body, headers) for name, (body, headers) in attempts.items()
    }
    # A captured valid event, replayed at once: Slack's event_id makes it a duplicate.
    valid = slack.event_body(slack.message_event("once", mention=True))
    first, _ = await slack.post_event(bot.url, valid)
    again, _ = await slack.post_event(bot.url, valid)
    await bot.replies(1, thread_ts=valid["event"]["ts"])
    chats = [r for r in fake.requests if r.path == CHAT]
    refused = sum(status == 401 for status in statuses.values())
    reliability.record(
        "security",
        f"{len(attempts)} forged or replayed Slack requests; a valid event replayed at once",
        f"{refused}/{len(attempts)} refused with 401, {len(chats) - 1} TokModel calls from them; "
        f"the replayed event answered once",
        forged=len(attempts),
        refused=refused,
        tokmodel_calls=len(chats) - 1,
    )
    assert statuses == dict.fromkeys(attempts, 401)
    assert (first, again, len(chats)) == (200, 200, 1)
    await bot.replies(1)
    assert len(slack.texts()) == 1


async def test_slack_output_cannot_ping_and_secrets_never_show(
    bot: Bot, fake: FakeTokModel, caplog: pytest.LogCaptureFixture, reliability: Figures
) -> None:
    # Every record, through the redaction `tokbot` installs on its log handler.
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(SecretRedactor(bot.core.settings.secrets()))
    slack = bot.slack
    fake.set_reply(f"Hi {PINGS} & bye")
    await bot.command("/ask", "ping everyone")
    await bot.replies(1)
    fake.set_reply(None)
    await bot.command("/ask", f"my key is {API_KEY} and the token {slack.bot_token}")
    await bot.replies(2)
    fake.fail(Fault(status=400, path=CHAT, message=f"bad request {PINGS} key={API_KEY}"))
    await bot.command("/ask", "fail loudly")
    await bot.replies(3)
    fake.fail(Fault(status=401, path=CHAT))
    await bot.command("/ask", "with a bad key")
    await bot.replies(4)
    for who, what in ((ALICE, "/model"), (ALICE, "/persona"), (ALICE, "/transcription")):
        await bot.command(what, "off" if what == "/transcription" else "evil", user_id=who)
    private = await bot.private_replies(3)  # refusals: only the asker sees them
    texts = slack.texts()
    sent = [
        c.args.get("text", "")
        for method in ("chat.postMessage", "chat.update", "chat.postEphemeral")
        for c in slack.calls_to(method)
    ] + [str(r.get("text", "")) for r in slack.responses]
    pinging = [t for t in sent if "<!" in t or "<@" in t or "<#" in t]
    secrets = (API_KEY, slack.bot_token, slack.signing_secret)
    in_replies = sum(s in t for s in secrets for t in sent)
    in_logs = sum(s in caplog.text for s in secrets)
    refused = sum("only admins" in t.lower() for t in private)
    key = ConversationKey("slack", slack.team_id, CHANNEL)
    settings = await bot.core.store.channel_settings(key)
    reliability.record(
        "security",
        "Slack: model output and TokModel error text with @channel/@here/@everyone, user-group, "
        "user and channel mentions; the key and tokens typed, echoed and in errors; "
        "3 admin-only changes by a non-admin",
        f"{len(pinging)} messages could ping; secrets in {in_replies} replies and {in_logs} log "
        f"captures; {refused}/3 admin-only changes refused",
        pinging=len(pinging),
        secrets_in_replies=in_replies,
        secrets_in_logs=in_logs,
        admin_refused=refused,
    )
    assert pinging == [] and in_replies == 0 and in_logs == 0
    assert any(t.startswith("Hi &lt;!channel&gt;") for t in texts)
    assert any("bad request &lt;!channel&gt;" in t and "key=***" in t for t in texts)
    assert refused == 3 and settings == ChannelSettings()


async def test_discord_output_cannot_ping_and_secrets_never_show(
    adapter: DiscordAdapter,
    discord_fake: FakeDiscord,
    fake: FakeTokModel,
    caplog: pytest.LogCaptureFixture,
    reliability: Figures,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert adapter.client is not None
    caplog.handler.addFilter(SecretRedactor(adapter.client.core.settings.secrets()))
    fake.set_reply(f"Hi {PINGS}")
    first = await discord_fake.interaction("ask", {"question": "ping them"})
    await answer(discord_fake, first, "Hi")
    fake.fail(Fault(status=400, path=CHAT, message=f"bad {PINGS} key={API_KEY}"))
    failed = await discord_fake.interaction("ask", {"question": "fail"})
    await answer(discord_fake, failed, "bad")
    refused = await discord_fake.interaction("persona", {"text": "evil"})
    await answer(discord_fake, refused, "admin")
    sends: list[dict[str, Any]] = [
        c.json
        for c in discord_fake.calls
        if c.method in ("POST", "PATCH") and c.json is not None and "content" in c.json
    ]
    open_pings = [s for s in sends if s.get("allowed_mentions", {}).get("parse") != []]
    contents = [str(s.get("content")) for s in sends]
    in_replies = sum(API_KEY in c or TOKEN in c for c in contents)
    in_logs = sum(secret in caplog.text for secret in (API_KEY, TOKEN))
    reliability.record(
        "security",
        "Discord: model output and TokModel error text with @everyone/@here, role and user "
        "mentions; an admin-only change by a non-admin",
        f"{len(open_pings)}/{len(sends)} messages allowed mentions; secrets in {in_replies} "
        f"replies and {in_logs} log captures",
        messages=len(sends),
        allowing_mentions=len(open_pings),
        secrets_in_replies=in_replies,
        secrets_in_logs=in_logs,
    )
    assert sends and open_pings == [] and in_replies == 0 and in_logs == 0
