"""The admin page's forms refuse bad input with a clear line and change nothing (over real
HTTP; the browser test covers the happy paths)."""

from __future__ import annotations

from bot.domain import ConversationKey
from bot.handlers.channel import MAX_PERSONA_CHARS
from tests.admin.conftest import AdminSite, browser, csrf_of, log_in

C1 = {"platform": "test", "workspace": "w1", "channel": "c1"}


async def test_bad_channel_and_budget_input_is_refused_and_changes_nothing(
    admin_site: AdminSite,
) -> None:
    url, store = admin_site.url, admin_site.core.store
    async with browser() as http:
        assert (await log_in(http, url)).status == 303
        async with http.get(f"{url}/channels") as page:
            token = csrf_of(await page.text())
        cases = [
            ({**C1, "model": "openai/tts-1"}, "is a text-to-speech model"),
            ({**C1, "model": "two words"}, "A model id is one word"),
            ({**C1, "persona": "x" * (MAX_PERSONA_CHARS + 1)}, "the limit is 4,000"),
            ({**C1, "transcription": "loud"}, "Choose one of: off, transcribe, translate"),
            ({**C1, "budget": "lots"}, "can&#39;t read lots as a budget"),
            ({"platform": "test", "channel": "c1"}, "The form is missing workspace"),
        ]
        for form, said in cases:
            async with http.post(f"{url}/channels", data={**form, "csrf": token}) as answer:
                text = await answer.text()
                assert answer.status == 400, (form, text)
                assert said in text, (said, text)
                assert "Traceback" not in text
        async with http.post(
            f"{url}/users", data={**C1, "user": "U1", "budget": "-5/day", "csrf": token}
        ) as answer:
            assert answer.status == 400 and "as a budget" in await answer.text()
        # A valid change of the persona alone works without asking TokModel anything.
        async with http.post(
            f"{url}/channels", data={**C1, "persona": "Be brief.", "csrf": token}
        ) as answer:
            assert answer.status == 200 and "Saved: test:c1" in await answer.text()
    settings = await store.channel_settings(ConversationKey("test", "w1", "c1"))
    assert (settings.model, settings.persona, settings.transcription_mode) == (
        None,
        "Be brief.",
        "transcribe",
    )
    assert await admin_site.core.budgets.list() == []
