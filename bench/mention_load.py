"""`python -m bench.mention_load`: a burst of Slack mentions sent at once, each as Slack sends it
(an `app_mention` and its companion `message` event, two signed POSTs, each on a new connection),
in its own channel by its own person; prints one JSON line: when the burst began (the system's
monotonic clock, shared by every process) and every ack's latency in ms.

Run by `bench.mention_figures.mention_burst` in its own process, so the sending never shares the
bot's event loop. It still shares the machine's two CPUs with the bot, so it sends as cheaply as
it can: every request is built and signed before the burst begins, and all are driven by one
selector over bare non-blocking sockets. The aiohttp client it used before measured mostly
itself: against a server that answers at once (an aiohttp handler returning 200), its ack p50
was 110-170 ms for 400 POSTs and 0.9-2.6 s for 2,000; this sender's is 40-45 ms and 0.26-0.45 s
(docs/perf/acks.md)."""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import time
from typing import Any, cast
from urllib.parse import urlsplit

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


def signed_request(slack: FakeSlack, url: str, event: dict[str, Any]) -> bytes:
    """The whole HTTP/1.1 request for one event, signed, asking the server to close after."""
    parts = urlsplit(url)
    body = json.dumps(event).encode()
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **slack.sign(body.decode()),
    }
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST {parts.path or '/'} HTTP/1.1\r\n{head}\r\n".encode() + body


def send_all(
    host: str, port: int, requests: list[bytes], timeout: float = 120
) -> tuple[list[float], int]:
    """Send every request at once, each on its own non-blocking socket, driven by one selector
    (no event loop: this process's CPU per POST is what a socket costs, about 30-50 us, so
    its own queue stays out of the bot's figure). Returns each answered request's latency in
    ms (from its connect to its whole response) and how many failed (not 200, or no answer)."""
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    failed = 0
    for request in requests:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        started = time.monotonic()
        sock.connect_ex((host, port))
        selector.register(sock, selectors.EVENT_WRITE, [started, request, b""])
    deadline = time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < deadline:
        for key, mask in selector.select(timeout=1.0):
            sock, state = cast(socket.socket, key.fileobj), key.data
            try:
                if mask & selectors.EVENT_WRITE:
                    sent = sock.send(state[1])
                    state[1] = state[1][sent:]
                    if not state[1]:
                        selector.modify(sock, selectors.EVENT_READ, state)
                    continue
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            state[2] += chunk
            complete = _complete(state[2])
            if complete is None and chunk:
                continue
            latencies.append((time.monotonic() - state[0]) * 1000)
            failed += not complete
            selector.unregister(sock)
            sock.close()
    for key in list(selector.get_map().values()):  # never answered
        failed += 1
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    return latencies, failed


def _complete(response: bytes) -> bool | None:
    """None while a response is incomplete; then whether it was a 200."""
    head, found, body = response.partition(b"\r\n\r\n")
    if not found:
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if len(body) < length:
        return None
    return head.split(b" ", 2)[1:2] == [b"200"]


def burst(args: argparse.Namespace) -> dict[str, object]:
    slack = FakeSlack(signing_secret=args.secret, team_id=args.team)
    requests = [
        signed_request(slack, args.url, body)
        for n in range(args.count)
        for body in mention_pair(
            slack, args.text, user=person_id(n), channel=f"{args.prefix}{n:05d}"
        )
    ]
    parts = urlsplit(args.url)
    began, cpu = time.monotonic(), time.process_time()
    latencies, failed = send_all(parts.hostname or "127.0.0.1", parts.port or 80, requests)
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
    print(json.dumps(burst(args)), flush=True)


if __name__ == "__main__":
    main()
