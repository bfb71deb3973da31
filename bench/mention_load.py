"""`python -m bench.mention_load`: a burst of Slack mentions sent at once, each as Slack sends it
(an `app_mention` and its companion `message` event, two signed POSTs, each on a new connection),
in its own channel by its own person; prints one JSON line: when the burst began (the system's
monotonic clock, shared by every process) and every ack's latency in ms.

Run by `bench.mention_figures.mention_burst` in its own process, so the sending never shares the
bot's event loop or CPU."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp

from adapters.slack.fake import FakeSlack, person_id


def mention_pair(
    slack: FakeSlack, text: str, *, user: str, channel: str, thread_ts: str | None = None
) -> list[dict[str, Any]]:
    """The two event bodies Slack sends for one mention in a channel: `app_mention`, and the
    `message` event (channel_type "channel", same ts and text) every channel member app gets
    (docs.slack.dev/reference/events/app_mention, .../message.channels)."""
    mention = slack.message_event(
        text, user=user, channel=channel, thread_ts=thread_ts, mention=True
    )
    message = {**mention, "type": "message", "channel_type": "channel"}
    return [slack.event_body(mention), slack.event_body(message)]


async def post_signed(
    http: aiohttp.ClientSession, slack: FakeSlack, url: str, event: dict[str, Any]
) -> bool:
    body = json.dumps(event)
    headers = {"Content-Type": "application/json", **slack.sign(body)}
    async with http.post(url, data=body.encode(), headers=headers) as response:
        await response.read()
        return response.status == 200


async def burst(args: argparse.Namespace) -> dict[str, object]:
    slack = FakeSlack(signing_secret=args.secret, team_id=args.team)
    events = [
        body
        for n in range(args.count)
        for body in mention_pair(
            slack, args.text, user=person_id(n), channel=f"{args.prefix}{n:05d}"
        )
    ]
    latencies: list[float] = []
    failed = 0
    # A new connection per POST, as Slack opens them.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(event: dict[str, Any]) -> None:
            nonlocal failed
            started = time.monotonic()
            try:
                ok = await post_signed(http, slack, args.url, event)
            except aiohttp.ClientError:
                ok = False
            latencies.append((time.monotonic() - started) * 1000)
            failed += not ok

        began, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(one(event) for event in events))
    # (its own CPU: the bench counts the other processes' itself, bench.harness.ProcessCpu)
    cpu = time.process_time() - cpu
    return {"began": began, "latencies_ms": latencies, "failed": failed, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mention_load")
    parser.add_argument("--url", required=True, help="the bot's /slack/events URL")
    parser.add_argument("--count", type=int, default=200, help="mentions (channels, people)")
    parser.add_argument("--secret", required=True, help="the Slack signing secret")
    parser.add_argument("--team", default="T0FAKE")
    parser.add_argument("--text", default="How do we deploy?")
    parser.add_argument("--prefix", default="C0B", help="channel ids: this, then the number")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(burst(args))), flush=True)


if __name__ == "__main__":
    main()
