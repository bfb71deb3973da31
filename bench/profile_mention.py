"""`python -m bench.profile_mention slack|thread|discord [--runs N] [--html FILE]`: where one
mention's CPU goes, step by step, in the bot's process alone (issue 16).

The stand-in TokModel, the fake platform and the sender each run in their own process, so
everything this process does is the bot's. Mentions go one at a time (`slack`: a fresh channel
each, both events of each mention, each POST on a new connection; `thread`: a thread of 130
stored turns each; `discord`: a MESSAGE_CREATE over the fake gateway, a fresh channel each),
and each is waited for until the bot has nothing left to do (its background work, e.g. folding
a long thread, included). Two passes over as many mentions: the first unprofiled, for the CPU
per mention (`time.process_time`); the second under pyinstrument (0.2 ms samples), whose
samples are put into steps by the innermost frame a rule (`STEPS`) recognizes. The table's
milliseconds are each step's share of the samples × the unprofiled CPU per mention."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp

#: (step, test on (file, function)). A sample belongs to the first step (in this order) one of
#: whose tests any frame of its stack passes: the kinds of work that run across steps (logging,
#: HMAC, JSON) first, then the bot's steps (most specific first), then the libraries and the
#: event loop for what no step of the bot called (callbacks: sockets read, HTTP parsed).
Rule = tuple[str, Callable[[str, str], bool]]


def _in(*parts: str) -> Callable[[str, str], bool]:
    return lambda file, _: any(p in file for p in parts)


def _fn(file_part: str, *names: str) -> Callable[[str, str], bool]:
    return lambda file, function: file_part in file and function in names


STEPS: list[Rule] = [
    ("logging", _in("/logging/", "bot/logs.py")),
    ("signature check (HMAC)", _in("slack_sdk/signature", "/hmac.py")),
    ("JSON encode/decode", _in("/json/")),
    ("inbox: accept (INSERT before the ack, dedupe)", _fn("bot/core.py", "accept")),
    ("user look-up (users.info, cached)", _in("adapters/slack/users.py")),
    ("thread read (conversations.replies)", _in("adapters/slack/thread.py")),
    (
        "recall (full text, when the history outgrows the budget)",
        _fn("bot/handlers/chat.py", "_recall"),
    ),
    (
        "context read (settings, turns, summary, budgets)",
        _fn(
            "bot/handlers/chat.py",
            "_read_context",
            "read_ahead",
            "_context_within_budget",
            "_taken_ahead",
            "_recent_turns",
        ),
    ),
    ("build the context (messages)", _fn("bot/conversation.py", "build_context")),
    ("store question + pending answer (INSERTs)", _fn("bot/store/store.py", "add_exchange")),
    ("store the answer + usage (UPDATE, INSERT)", _fn("bot/store/store.py", "finish_answer")),
    ("store the shown text (save_shown)", _fn("bot/store/store.py", "save_shown")),
    ("budgets after usage", _in("bot/budgets.py", "bot/store/budgets.py")),
    ("folding (background, long threads)", _in("bot/folding.py", "bot/summarizer.py")),
    ("TokModel: stream parse (SSE)", _in("bot/tokmodel/sse.py")),
    ("TokModel: request (build, send) + stream read", _in("bot/tokmodel/client.py")),
    ("Slack Web API calls (slack_sdk client side)", _in("slack_sdk/web/")),
    ("Discord REST calls (discord.py http)", _in("discord/http.py")),
    (
        "Slack replier (chat.* payloads)",
        _in(
            "adapters/slack/replier.py",
            "adapters/slack/streaming.py",
            "adapters/slack/blocks.py",
            "adapters/slack/mrkdwn.py",
        ),
    ),
    ("Discord replier", _in("adapters/discord/replier.py", "adapters/discord/rest.py")),
    ("renderer (placeholder, edits, final text)", _in("bot/streaming.py")),
    ("inbox: bookkeeping after the answer", _in("bot/inbox/")),
    (
        "Discord gateway: frames, parse (discord.py)",
        _in(
            "discord/gateway.py",
            "discord/state.py",
            "discord/message.py",
            "discord/client.py",
            "aiohttp/_websocket",
            "aiohttp/client_ws",
        ),
    ),
    ("core: dispatch, locks, commands", _in("bot/")),
    ("bolt: request parsing, middleware, listener matching", _in("slack_bolt/")),
    ("Discord adapter (on_message, translate)", _in("adapters/discord/")),
    ("Slack adapter (event intake, translate)", _in("adapters/slack/")),
    ("SQLAlchemy + driver (outside the steps above)", _in("sqlalchemy/", "aiosqlite/", "asyncpg/")),
    (
        "aiohttp server: HTTP parsing, responses",
        _in("aiohttp/web", "aiohttp/http_parser", "aiohttp/http_writer", "aiohttp/base_protocol"),
    ),
    ("aiohttp client: connections, response parsing", _in("aiohttp/")),
    ("event loop, sockets, tasks (asyncio)", _in("/asyncio/", "selectors.py", "socket.py")),
]


def classify(stack: list[tuple[str, str]]) -> str:
    """The step of a sample whose frames are `stack` (outermost first)."""
    for step, test in STEPS:
        if any(test(file, function) for file, function in stack):
            return step
    return "other"


def tally(root: Any, detail: str | None = None) -> dict[str, float]:
    """Seconds of samples per step in a pyinstrument frame tree; with `detail`, per function
    (its own time) within the steps whose name contains `detail`."""
    seconds: dict[str, float] = defaultdict(float)

    def walk(frame: Any, stack: list[tuple[str, str]]) -> None:
        here = [*stack, (frame.file_path or "", frame.function or "")]
        own = frame.total_self_time
        if own > 0:
            step = classify(here)
            if detail is None:
                seconds[step] += own
            elif detail in step:
                file, function = next(f for f in reversed(here) if not f[1].startswith("["))
                seconds[f"{function} ({file.rsplit('site-packages/', 1)[-1][-40:]})"] += own
        for child in frame.children:
            walk(child, here)

    walk(root, [])
    return seconds


# -- the Slack sender (its own process) ------------------------------------------------------


async def _send(url: str, secret: str, team: str) -> None:
    """Reads `CHANNEL [THREAD_TS]` lines; for each, sends a mention's two events at once (each
    on a new connection) and prints `ok` once both were acknowledged."""
    from adapters.slack.fake import FakeSlack
    from bench.mention_load import mention_pair, post_signed

    slack = FakeSlack(signing_secret=secret, team_id=team)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        while line := (await reader.readline()).decode().split():
            channel, thread_ts = line[0], (line[1] if len(line) > 1 else None)
            events = mention_pair(
                slack, "How do we deploy?", user="U0ALICE", channel=channel, thread_ts=thread_ts
            )
            acks = await asyncio.gather(*(post_signed(http, slack, url, e) for e in events))
            print("ok" if all(acks) else "refused", flush=True)


async def _line(process: asyncio.subprocess.Process, line: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line.encode() + b"\n")
    await process.stdin.drain()
    return (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()


async def _idle(*groups: Callable[[], Any]) -> None:
    """Until the bot has nothing left to do: each of `groups` gives a collection of its tasks
    (the adapter's, the folds'); awaited, not polled, so the wait costs no CPU."""
    while tasks := [t for group in groups for t in list(group())]:
        await asyncio.wait(tasks)
    await asyncio.sleep(0.01)  # (an inbox mark may be written right after the answer)
    while tasks := [t for group in groups for t in list(group())]:
        await asyncio.wait(tasks)


async def profile(kind: str, runs: int, html: str | None) -> None:
    from bench.adapter_figures import SLACK_DEFAULTS, slack_bot, slack_process
    from bench.harness import child_process, stand_in
    from bench.mention_figures import _seed_thread

    profiler_cls = _profiler()
    async with stand_in() as tokmodel:
        await tokmodel.set_latency(0.2)
        if kind == "discord":
            cpu, seconds, total = await _discord(tokmodel.url, runs, profiler_cls, html)
        else:
            async with (
                slack_process() as slack_url,
                slack_bot(tokmodel.url, slack_url) as (core, adapter, url),
                child_process(
                    "-m",
                    "bench.profile_mention",
                    "--send",
                    url,
                    "--secret",
                    SLACK_DEFAULTS.signing_secret,
                    "--team",
                    SLACK_DEFAULTS.team_id,
                ) as sender,
            ):
                threads = [f"1700000000.{n:06d}" for n in range(2 * runs + 3)]
                if kind == "thread":
                    for thread_ts in threads:
                        await _seed_thread(core.store, "C0THREAD", thread_ts, 130)

                names = iter(range(10**6))

                async def one() -> None:
                    n = next(names)
                    target = f"C0THREAD {threads[n]}" if kind == "thread" else f"C0F{n:05d}"
                    assert await _line(sender, target) == "ok"
                    await _idle(lambda: adapter.bot._tasks, lambda: core.folding._tasks.values())

                cpu, seconds, total = await _passes(one, runs, profiler_cls, html)
    _print(kind, runs, cpu, seconds, total)


async def _discord(
    tokmodel_url: str, runs: int, profiler_cls: Any, html: str | None
) -> tuple[float, dict[str, float], float]:
    from bench.discord_mention_figures import _reply, discord_bot, fake_process

    async with (
        fake_process(2 * runs + 3) as (fake, urls),
        discord_bot(tokmodel_url, urls["api_base"], urls["gateway_url"]) as (core, client),
    ):
        names = iter(range(10**6))

        async def one() -> None:
            n = next(names)
            assert fake.stdin is not None
            fake.stdin.write(f"one {n} p{n}\n".encode())
            await fake.stdin.drain()
            await _reply(fake)
            while True:
                await _idle(lambda: client._tasks, lambda: core.folding._tasks.values())
                fake.stdin.write(b"answered\n")
                await fake.stdin.drain()
                if int((await _reply(fake))["answered"]) >= 1:
                    return
                await asyncio.sleep(0.002)

        return await _passes(one, runs, profiler_cls, html)


async def _passes(
    one: Callable[[], Any], runs: int, profiler_cls: Any, html: str | None
) -> tuple[float, dict[str, float], float]:
    """CPU per mention (unprofiled pass) and the profiled pass's seconds per step."""
    for _ in range(3):
        await one()  # warm-up
    cpu, main = time.process_time(), time.thread_time()
    for _ in range(runs):
        await one()
    cpu, main = (time.process_time() - cpu) / runs, (time.thread_time() - main) / runs
    if CPU_ONLY:
        return cpu, {}, cpu
    from pyinstrument.stack_sampler import get_stack_sampler

    # Sampled by the main thread's CPU time, not the wall clock: waiting (and, on a busy
    # machine, being preempted) is no step's cost.
    get_stack_sampler().timer_func = time.thread_time
    profiler = profiler_cls(interval=0.0002, async_mode="disabled")
    profiler.start()
    for _ in range(runs):
        await one()
    profiler.stop()
    if html:
        with open(html, "w") as out:
            out.write(profiler.output_html())
    seconds = tally(profiler.last_session.root_frame())
    total = sum(seconds.values())
    if DETAIL:
        found = tally(profiler.last_session.root_frame(), DETAIL)
        print(f"\nwithin '{DETAIL}', by function (own time, ms per mention):")
        for name, spent in sorted(found.items(), key=lambda item: -item[1])[:25]:
            print(f"  {spent / total * main * 1000:6.3f}  {name}")
    # The other threads' CPU (aiosqlite's, running SQLite): not sampled, measured.
    seconds = {step: spent / total * main for step, spent in seconds.items()}
    seconds["SQLite's thread (aiosqlite), not sampled"] = cpu - main
    return cpu, seconds, cpu


def _profiler() -> Any:
    from pyinstrument import Profiler

    return Profiler


def _print(kind: str, runs: int, cpu: float, seconds: dict[str, float], total: float) -> None:
    print(f"\n{kind}: {runs} mentions; bot CPU per mention (unprofiled) {cpu * 1000:.2f} ms")
    print(f"{'step':<62} {'share':>6} {'ms/mention':>10}")
    for step, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"{step:<62} {spent / total * 100:5.1f}% {spent * 1000:10.2f}")


#: `--detail`: the step (part of its name) whose functions are listed too.
DETAIL: str | None = None
#: `--cpu-only`: the unprofiled pass alone (to compare two trees' CPU per mention).
CPU_ONLY = False


def main() -> None:
    global DETAIL, CPU_ONLY
    parser = argparse.ArgumentParser(prog="python -m bench.profile_mention")
    parser.add_argument("kind", nargs="?", choices=["slack", "thread", "discord"])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--html", help="also write pyinstrument's HTML profile here")
    parser.add_argument("--send", help=argparse.SUPPRESS)  # (the sender's own process)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    parser.add_argument("--team", help=argparse.SUPPRESS)
    parser.add_argument("--detail", help="list the functions within the steps named so")
    parser.add_argument("--cpu-only", action="store_true", help="no profiled pass")
    args = parser.parse_args()
    DETAIL, CPU_ONLY = args.detail, args.cpu_only
    if args.send:
        asyncio.run(_send(args.send, args.secret, args.team))
    elif args.kind:
        asyncio.run(profile(args.kind, args.runs, args.html))
    else:
        parser.error("which mention: slack, thread or discord")


if __name__ == "__main__":
    main()
