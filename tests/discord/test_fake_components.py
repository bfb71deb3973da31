"""The fake Discord's buttons, checked over HTTP as discord.py would call it: the component
rules Discord enforces, clicks only on buttons a message carries, and the callback types that
only component interactions may use."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from adapters.discord.fake import FakeDiscord
from tests.discord.conftest import TOKEN


def button(custom_id: str | None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"type": 2, "style": 2, "label": "ok", **extra}
    if custom_id is not None:
        found["custom_id"] = custom_id
    return found


async def post(fake: FakeDiscord, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(fake.api_base + path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)


@pytest.mark.parametrize(
    ("buttons", "where"),
    [
        ([button("a"), button("a")], ["components", "0", "components", "1", "custom_id"]),
        ([button(None)], ["components", "0", "components", "0", "custom_id"]),
        ([button("a", label="x" * 81)], ["components", "0", "components", "0", "label"]),
        ([button("a", style=9)], ["components", "0", "components", "0", "style"]),
        ([button(str(n)) for n in range(6)], ["components", "0"]),
    ],
)
async def test_buttons_discord_refuses_are_refused(
    discord_fake: FakeDiscord, buttons: list[dict[str, Any]], where: list[str]
) -> None:
    body = {"content": "hi", "components": [{"type": 1, "components": buttons}]}
    status, error = await post(discord_fake, f"/channels/{discord_fake.channel_id}/messages", body)
    assert (status, error["code"]) == (400, 50035)
    for key in where:
        error = error["errors"] if "errors" in error else error
        error = error[key]
    assert error["_errors"][0]["code"]


async def test_a_click_updates_the_message_and_only_components_may_use_update_types(
    discord_fake: FakeDiscord,
) -> None:
    row = {"type": 1, "components": [button("tokbot:stop:1")]}
    status, sent = await post(
        discord_fake,
        f"/channels/{discord_fake.channel_id}/messages",
        {"content": "answer…", "components": [row]},
    )
    assert status == 200 and sent["components"] == [row]
    with pytest.raises(ValueError, match="no button"):
        await discord_fake.click(sent["id"], "tokbot:feedback:positive:1")

    command = await discord_fake.interaction("ask", {"question": "q"})
    status, error = await post(
        discord_fake,
        f"/interactions/{command['id']}/{command['token']}/callback",
        {"type": 7, "data": {"content": "no"}},
    )
    assert (status, error["code"]) == (400, 50035)

    click = await discord_fake.click(sent["id"], "tokbot:stop:1")
    assert click["type"] == 3 and click["message"]["id"] == sent["id"]
    assert click["data"] == {"custom_id": "tokbot:stop:1", "component_type": 2}
    status, _ = await post(
        discord_fake,
        f"/interactions/{click['id']}/{click['token']}/callback",
        {"type": 7, "data": {"content": "answer (stopped)", "components": []}},
    )
    assert status == 200
    updated = discord_fake.messages[sent["id"]]
    assert (updated.content, updated.components) == ("answer (stopped)", [])
