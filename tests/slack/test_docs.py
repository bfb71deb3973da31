"""What docs/slack.md and the README promise a Slack admin (issue 11, item 27)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _offline_demo_runs(text: str) -> list[str]:
    """Each `tokbot run` command (joined across `\\` continuations) of a shell block that also
    starts the fake Slack."""
    runs = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        if "adapters.slack.fake" not in block:
            continue
        command = block.replace("\\\n", " ")
        runs += [line for line in command.splitlines() if "tokbot run" in line]
    return runs


def test_the_offline_slack_demos_listen_on_loopback_only() -> None:
    """The demo's signing secret is public: its web server must not listen on every interface
    (TOKBOT_HTTP_HOST defaults to 0.0.0.0)."""
    for doc in ("README.md", "docs/slack.md"):
        runs = _offline_demo_runs((ROOT / doc).read_text())
        assert runs, f"no offline Slack demo in {doc}"
        for run in runs:
            assert "TOKBOT_HTTP_HOST=127.0.0.1" in run, f"{doc}: {run}"


def test_slack_docs_warn_that_every_voice_clip_is_transcribed() -> None:
    text = " ".join((ROOT / "docs/slack.md").read_text().split())
    assert "every** channel the bot is a member of" in text
    assert "spends TokModel credits" in text and "`/transcription off`" in text


def test_slack_docs_verify_the_events_url_after_tokbot_runs() -> None:
    text = (ROOT / "docs/slack.md").read_text()
    verify = text.index("### Verify the events URL")
    assert text.index("tokbot run\n```") < verify  # the step comes after starting tokbot
    assert "only then verify the URL" in text
