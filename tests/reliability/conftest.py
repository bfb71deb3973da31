"""Reliability fixtures: the Slack fakes, and `reliability`, which records a test's figures for
RELIABILITY.md (to the JSON-lines file named by TOKBOT_RELIABILITY_REPORT, when set)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Fixtures used by name.
from tests.discord.conftest import (  # noqa: F401
    adapter,
    discord_fake,
    discord_settings,
    start_adapter,
)
from tests.reliability.harness import reap
from tests.slack.conftest import bot, slack, slack_settings  # noqa: F401

REPORT_VARIABLE = "TOKBOT_RELIABILITY_REPORT"


class Figures:
    """What one test tried and what happened, as rows of RELIABILITY.md."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._node = request.node
        callspec = getattr(request.node, "callspec", None)
        params: dict[str, Any] = callspec.params if callspec is not None else {}
        self.database = str(params.get("database_url", "-")).replace("postgres", "PostgreSQL")
        self.database = self.database.replace("sqlite", "SQLite")
        self.rows: list[dict[str, Any]] = []

    def record(self, area: str, tried: str, result: str, **figures: Any) -> None:
        """One row: the fault/load/input tried and what happened (figures are kept as data)."""
        self.rows.append({"area": area, "tried": tried, "result": result, "figures": figures})

    def write(self, passed: bool) -> None:
        path = os.environ.get(REPORT_VARIABLE)
        if not path:
            return
        with Path(path).open("a", encoding="utf-8") as out:
            for row in self.rows:
                line = {
                    "test": self._node.nodeid,
                    "database": self.database,
                    "passed": passed,
                    **row,
                }
                out.write(json.dumps(line) + "\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    return report


_PASSED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    yield
    reap()


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Any:
    figures = Figures(request)
    yield figures
    figures.write(request.node.stash.get(_PASSED, False))
