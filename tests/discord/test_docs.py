"""What docs/discord.md and the README tell a Discord admin agrees with what tokbot needs."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {field.alias for field in Settings.model_fields.values() if field.alias}


def _steps(guide: str) -> list[str]:
    setup = guide.split("## Set up the application (once)")[1].split("\n## ")[0]
    return re.split(r"\n(?=\d+\. )", setup.strip())


def test_the_guide_turns_off_public_bot_before_the_bot_is_invited() -> None:
    """Left public, anyone with the application id adds the bot and spends the credits."""
    steps = _steps((ROOT / "docs" / "discord.md").read_text())
    public = next(i for i, step in enumerate(steps) if "Public Bot" in step)
    invite = next(i for i, step in enumerate(steps) if "tokbot discord-invite` prints" in step)
    assert "turn it **off**" in steps[public] and public < invite


def test_the_readme_shows_how_to_type_into_the_fake_discord() -> None:
    readme = (ROOT / "README.md").read_text()
    offline = readme.split("### Try the platforms offline")[1].split("\n## ")[0]
    assert "python -m adapters.discord.fake" in offline
    block = next(b for b in offline.split("```") if "adapters.discord.fake" in b)
    named = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", block))
    assert {"DISCORD_TOKEN", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL"} <= named <= SETTINGS
    assert "/ask hello" in offline and "Empty lines are skipped" in offline
