"""The deployment files agree with the code: every setting documented, the image runs real
commands, compose passes real settings. (No Docker engine runs here; these read the files.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from adapters.cli import build_parser
from bot.settings import Settings
from bot.store.urls import async_database_url

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {field.alias for field in Settings.model_fields.values() if field.alias}


def test_every_setting_is_in_env_example_and_the_readme() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in SETTINGS:
        assert re.search(rf"^#? ?{name}=", example, re.M), f"{name} missing from .env.example"
        assert f"`{name}`" in readme, f"{name} missing from the README's settings table"


def test_env_example_names_only_real_settings() -> None:
    names = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    assert set(names) <= SETTINGS


def _subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    return set(actions[0].choices or ())  # type: ignore[arg-type]


def test_the_image_runs_a_real_command_and_checks_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    command = json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert entrypoint == ["tokbot"] and command[0] in _subcommands()
    assert "/healthz" in dockerfile and re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    for env in re.findall(r"\b([A-Z][A-Z_]+)=", dockerfile.split("HEALTHCHECK")[0]):
        assert env in SETTINGS | {"PATH", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK",
                                  "PIP_NO_CACHE_DIR"}  # fmt: skip
    assert dockerfile.count("FROM ") >= 2  # multi-stage


def test_compose_wires_the_bot_to_postgres() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    bot, db = compose["services"]["bot"], compose["services"]["db"]
    assert bot["command"][0] in _subcommands()
    assert set(bot["environment"]) <= SETTINGS
    database_url = _interpolated(bot["environment"]["DATABASE_URL"], "DATABASE_URL")
    assert async_database_url(database_url).startswith("postgresql+asyncpg://")
    assert make_url(database_url).host == "db"
    assert bot["depends_on"]["db"]["condition"] == "service_healthy" and "healthcheck" in db
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume keeps the data


def _interpolated(value: str, name: str) -> str:
    """The default of compose's `${NAME:-default}` (so .env's NAME wins); fails otherwise."""
    found = re.fullmatch(rf"\$\{{{name}:-(.+)\}}", value)
    assert found, f"compose sets {name}={value!r}, silently overriding the one in .env"
    return found.group(1)


def test_compose_publishes_the_port_on_loopback_only() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            # "HOST:PORT:CONTAINER_PORT"; without a host address Docker binds every interface.
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the network"


def test_slack_help_names_the_slash_commands_the_manifest_declares() -> None:
    from adapters.slack.replier import SLASH_COMMANDS

    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    declared = {c["command"].lstrip("/") for c in manifest["features"]["slash_commands"]}
    assert declared == SLASH_COMMANDS
