"""The Slack app manifest offers every command tokbot answers and the events it listens to."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.slack.fake import SCOPES
from bot.handlers import default_commands

yaml = pytest.importorskip("yaml")

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"


def test_manifest_lists_the_commands_events_and_scopes() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    visible = {f"/{s.name}" for s in default_commands() if not s.hidden}
    assert visible - {"/transcribe"} <= commands  # /transcribe needs a file: the console's
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.im", "message.channels"} <= events
    assert {"assistant_thread_started", "assistant_thread_context_changed"} <= events
    assert manifest["features"]["assistant_view"]["assistant_description"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "files:read", "files:write", "users:read"} <= scopes
    assert "assistant:write" in scopes
    assert scopes == set(SCOPES)  # what the fake Slack's auth.test reports
