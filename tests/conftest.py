"""Shared fixtures: a real TokModel stand-in on loopback, a real database, a Core over both."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bot.core import Core
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings, load_settings
from bot.tokmodel.fake import FakeTokModel
from tests.db import database_url, store  # noqa: F401  (fixtures used by name)
from tests.platform import RecordingReplier


@pytest.fixture(autouse=True)
def _root_logging_kept() -> Iterator[None]:
    """A test that runs the CLI in-process gets its log handler on pytest's captured stderr,
    which is closed after the test: put the root logger back, or a later test's DEBUG record
    (e.g. from aiosqlite's thread) prints "--- Logging error ---" into the run's output."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


API_KEY = "sk-test-0123456789abcdef"
#: Longest a test waits for a process it started (`tokbot run`, a fake) to say it is up: a
#: deadline for a line that must come, not a pause. Importing everything takes ~1 s alone,
#: but 10-18 s on this 2-CPU machine at a load average of 10 (measured, several suites at once).
STARTUP_SECONDS = 90.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeTokModel]:
    server = FakeTokModel(api_key=API_KEY)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def make_settings(
    database_url: str,  # noqa: F811
    fake: FakeTokModel,
    tmp_path: Path,
) -> Callable[..., Settings]:
    def build(**overrides: str) -> Settings:
        env = {
            "TOKMODEL_API_KEY": API_KEY,
            "TOKMODEL_BASE_URL": fake.url,
            "DATABASE_URL": database_url,
            "TOKBOT_OUTPUT_DIR": str(tmp_path / "out"),
            "TOKBOT_STREAM_EDIT_INTERVAL": "0",
            "TOKBOT_TOKMODEL_TIMEOUT": "2",
            "TOKBOT_TOKMODEL_RETRY_BUDGET": "3",
            # The background embedder's requests would take faults injected for a command's
            # own (those without a path); the tests of team memory turn it on.
            "TOKBOT_EMBEDDINGS": "off",
        }
        env.update(overrides)
        return load_settings(env)

    return build


@pytest.fixture
async def core(make_settings: Callable[..., Settings], fake: FakeTokModel) -> AsyncIterator[Core]:
    settings = make_settings()
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as opened:
        yield opened


@pytest.fixture
def replier() -> RecordingReplier:
    return RecordingReplier()
