"""`python -m bench.discord_load`: the fake Discord (gateway + REST) in its own process, for
bursts of mentions. It prints one JSON line with its URLs, then reads commands on stdin:

- `burst COUNT PREFIX`: COUNT people each mention the bot in their own text channel, all at once
  (COUNT MESSAGE_CREATEs on the gateway); prints `{"began": ...}` (the system's monotonic
  clock, shared by every process).
- `one N PREFIX`: one person mentions the bot in the Nth text channel; prints `{"began": ...}`.
- `answered`: prints `{"answered": N}`, how many of those mentions have the bot's reply.

Run by `bench.discord_mention_figures.mention_burst`, so the fake's CPU (JSON, websocket frames,
the REST answers) never counts as the bot's."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from adapters.discord.fake import FakeDiscord

#: People in the burst: ids from here up.
FIRST_PERSON = 5000


def channel_ids(fake: FakeDiscord, count: int) -> list[int]:
    """The guild's text channels for a burst of `count` (the fake's own first)."""
    return [fake.channel_id, *(fake.channel_id + 1000 + n for n in range(count - 1))]


async def burst(fake: FakeDiscord, count: int, prefix: str) -> list[str]:
    """Dispatch the mentions; return their message ids."""
    channels = channel_ids(fake, count)
    mention = f"<@{fake.application_id}>"
    sent = await asyncio.gather(
        *(
            fake.message(
                f"{mention} How do we deploy? ({prefix}{n})",
                user_id=FIRST_PERSON + n,
                user_name=f"person{n}",
                channel_id=channels[n],
                mention_bot=True,
            )
            for n in range(count)
        )
    )
    return [str(payload["id"]) for payload in sent]


async def serve(token: str, channels: int) -> None:
    fake = FakeDiscord(token)
    fake.more_channels = channel_ids(fake, channels)[1:]
    await fake.start()
    print(json.dumps({"api_base": fake.api_base, "gateway_url": fake.gateway_url}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    mentions: list[str] = []
    try:
        while line := (await reader.readline()).decode().split():
            if line[0] == "burst":
                began = time.monotonic()
                mentions = await burst(fake, int(line[1]), line[2])
                print(json.dumps({"began": began}), flush=True)
            elif line[0] == "one":  # one mention, in the Nth channel (bench.profile_mention)
                began = time.monotonic()
                channel = channel_ids(fake, channels)[int(line[1])]
                mention = f"<@{fake.application_id}> How do we deploy? ({line[2]})"
                payload = await fake.message(mention, channel_id=channel, mention_bot=True)
                mentions = [str(payload["id"])]
                print(json.dumps({"began": began}), flush=True)
            elif line[0] == "answered":
                replied = {m.reply_to for m in fake.messages.values() if m.reply_to}
                print(json.dumps({"answered": len(replied & set(mentions))}), flush=True)
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.discord_load")
    parser.add_argument("--token", required=True)
    parser.add_argument("--channels", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(serve(args.token, args.channels))


if __name__ == "__main__":
    main()
