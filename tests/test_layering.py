"""The core never imports an adapter or a platform library (a fresh interpreter proves it)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys, pkgutil, importlib
import bot
for mod in pkgutil.walk_packages(bot.__path__, "bot."):
    importlib.import_module(mod.name)
roots = ("adapters", "discord", "slack_bolt", "slack_sdk")
bad = [m for m in sys.modules if m.split(".")[0] in roots]
print(",".join(bad))
"""


def test_bot_imports_without_adapters_or_platform_libraries() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
