"""`python -m bench.slack_load`: signed `/ask` slash commands at a steady rate (open loop: a slow
answer never slows the sending), printing one JSON line with every ack's latency in ms.

Run by `bench.adapter_figures.slack_ack_latency` in its own process."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier


def payload(n: int, team: str, response_base: str) -> str:
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": team,
            "team_domain": "bench",
            "channel_id": f"C{n % 1000:05d}",
            "channel_name": "bench",
            "user_id": f"U{n % 50:05d}",
            "user_name": "bench",
            "command": "/ask",
            "text": "How do we deploy?",
            "api_app_id": "A0TOKBOT",
            "response_url": f"{response_base}/commands/{team}/{n}",
            "trigger_id": f"{n}.{team}.load",
        }
    )


async def load(args: argparse.Namespace) -> dict[str, object]:
    verifier = SignatureVerifier(args.secret)
    total = int(args.rate * args.seconds)
    latencies: list[float] = []
    failed = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(n: int) -> None:
            nonlocal failed
            body = payload(n, args.team, args.response_base)
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": verifier.generate_signature(timestamp=stamp, body=body) or "",
            }
            started = time.perf_counter()
            try:
                async with http.post(args.url, data=body.encode(), headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            failed += not ok

        tasks = []
        began = time.perf_counter()
        for n in range(total):
            delay = began + n / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        sending = time.perf_counter() - began
        await asyncio.gather(*tasks)
    return {
        "latencies_ms": latencies,
        "failed": failed,
        "achieved_rate": total / sending if sending > 0 else float(total),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slack_load")
    parser.add_argument("--url", required=True, help="the bot's /slack/events URL")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--secret", required=True, help="the Slack signing secret")
    parser.add_argument("--team", default="T0FAKE")
    parser.add_argument("--response-base", required=True, help="the fake Slack's URL")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(load(args))), flush=True)


if __name__ == "__main__":
    main()
