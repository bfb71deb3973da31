"""What an operator watches: /healthz, /metrics (scraped and parsed), structured logs."""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.web import WebServer
from bot.core import Core
from bot.logs import configure_logging
from bot.settings import load_settings
from bot.tokmodel.fake import FakeTokModel, Fault
from tests.conftest import API_KEY
from tests.platform import RecordingReplier, message
from tests.test_console_e2e import console


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_count_commands_latency_errors_and_tokens(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    server = WebServer("127.0.0.1", 0, metrics=core.metrics)
    await server.start()
    try:
        await core.handle(message("ask", "hello"), replier)
        fake.fail(Fault(status=403))
        await core.handle(message("ask", "again"), replier)
        await core.handle(message("frob"), replier)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                scraped = samples(await response.text())
    finally:
        await server.stop()
    assert scraped[("tokbot_commands_total", (("command", "ask"), ("outcome", "ok")))] == 1
    assert scraped[("tokbot_commands_total", (("command", "unknown"), ("outcome", "refused")))] == 1
    assert scraped[("tokbot_platform_events_total", (("platform", "test"),))] == 3
    assert scraped[("tokbot_tokmodel_errors_total", (("status", "403"),))] == 1
    chat = (("endpoint", "/v1/chat/completions"),)
    assert scraped[("tokbot_tokmodel_request_seconds_count", chat)] == 2
    assert scraped[("tokbot_tokens_total", (("kind", "completion"),))] > 0


async def test_healthz_reports_each_check() -> None:
    server = WebServer("127.0.0.1", 0)
    state = {"database": True}

    async def database() -> bool:
        return state["database"]

    async def broken() -> bool:
        raise ConnectionError("down")

    server.add_health_check("database", database)
    await server.start()
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as ok:
                assert ok.status == 200
                assert await ok.json() == {"status": "ok", "checks": {"database": True}}
            state["database"] = False
            async with http.get(url) as down:
                assert down.status == 503
            server.add_health_check("slack", broken)
            async with http.get(url) as down:
                body = await down.json()
                assert down.status == 503 and body["checks"]["slack"] is False
    finally:
        await server.stop()


async def test_json_logs_carry_a_request_id_and_no_secrets(
    fake: FakeTokModel, tmp_path: Path
) -> None:
    fake.fail(Fault(status=500, times=-1, path="/v1/chat/completions"))
    run = await console("/ask hi\n", tmp_path, fake, TOKBOT_LOG_FORMAT="json")
    assert run.code == 0
    entries = [json.loads(line) for line in run.err.splitlines() if line.strip()]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    failures = [e for e in entries if "TokModel request failed" in e["message"]]
    tokmodel = [e for e in entries if e["logger"] == "tokbot.tokmodel"]
    assert failures and tokmodel
    # One request id follows the message from the core through the TokModel client.
    assert failures[0]["request_id"] != "-"
    assert {e["request_id"] for e in tokmodel} == {failures[0]["request_id"]}
    assert API_KEY not in run.err


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


DB_PASSWORD = "pg-pass-5ecret"
LOG_SECRET = "sk-log-secret-0123456789"


def _log_a_failure() -> None:
    try:
        raise ValueError(f"100% broken: key {LOG_SECRET}, url postgresql://bot:{DB_PASSWORD}@db/x")
    except ValueError:
        logging.getLogger("tokbot.test").exception("request %s failed", "r-42")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_redactor_keeps_lines_whose_traceback_has_a_percent(
    log_format: str, capsys: pytest.CaptureFixture[str], root_logging: None
) -> None:
    url = f"postgresql+asyncpg://bot:{DB_PASSWORD}@db:5432/tokbot"
    settings = load_settings({"TOKMODEL_API_KEY": LOG_SECRET, "DATABASE_URL": url})
    configure_logging("INFO", settings.secrets(), json_format=log_format == "json")
    _log_a_failure()
    logging.getLogger("tokbot.test").info("connecting to %s", url)
    err = capsys.readouterr().err
    assert "Logging error" not in err
    assert "request r-42 failed" in err and "100% broken" in err and "connecting to" in err
    assert LOG_SECRET not in err and DB_PASSWORD not in err
    if log_format == "json":
        failure, connecting = (json.loads(line) for line in err.splitlines())
        assert failure["message"] == "request r-42 failed"
        assert "100% broken" in failure["traceback"] and "[redacted]" in failure["traceback"]
        assert (
            connecting["message"]
            == "connecting to postgresql+asyncpg://bot:[redacted]@db:5432/tokbot"
        )


@pytest.mark.skipif(sys.platform != "linux", reason="read from Linux's TCP_INFO")
async def test_the_web_server_counts_connections_it_has_not_accepted_yet() -> None:
    """What Slack's acks-first intake counts besides requests in progress: connections the
    kernel made that the event loop has not accepted (nothing yields to it here)."""
    server = WebServer("127.0.0.1", 0)
    await server.start()
    clients = []
    try:
        assert server.pending_connections() == 0
        clients = [socket.create_connection(("127.0.0.1", server.port or 0)) for _ in range(3)]
        assert server.pending_connections() == 3
    finally:
        for client in clients:
            client.close()
        await server.stop()
