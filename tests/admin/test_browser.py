"""The admin page in a real browser: Debian's headless Chromium driven by Playwright, against
tokbot's web server on loopback, after a scripted conversation through the Core. Screenshots of
each page go to tokbot-output/admin-screenshots/ (the README names it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bot.domain import Author, ConversationKey, FeedbackValue
from bot.tokmodel.fake import FakeTokModel
from tests.admin.conftest import PASSWORD, AdminSite
from tests.platform import ALICE, KEY, RecordingReplier, message

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `.ci/run` installs it
SCREENSHOTS = Path(__file__).resolve().parents[2] / "tokbot-output" / "admin-screenshots"
BOB = Author("u-bob", "Bob")
OTHER = ConversationKey("test", "w1", "c2")

# Once is enough for the browser, on SQLite; the page's queries and forms run on PostgreSQL too,
# in test_activity_store, test_forms and test_security.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    async with async_playwright() as playwright:
        # Nothing is downloaded: Debian's browser, and every request stays on loopback.
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def test_admin_sees_usage_changes_a_channel_and_sets_budgets(
    browser: Browser, admin_site: AdminSite, fake: FakeTokModel
) -> None:
    core, replier = admin_site.core, RecordingReplier()
    await core.handle(message("ask", "What is our deploy day?"), replier)
    await core.handle(message("ask", "And the one after?", author=BOB), replier)
    await core.handle(message("ask", "Hello from c2", key=OTHER), replier)
    answer = (await core.store.history(KEY))[-1]
    await core.record_feedback("test", answer.id, ALICE, FeedbackValue.POSITIVE)
    await core.handle(message("usage"), replier)
    told_by_usage = replier.last  # "/usage": Alice's and c1's numbers
    summary = await core.store.usage_summary(KEY, ALICE.id)

    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(admin_site.url + "/")
    await expect(page).to_have_url(admin_site.url + "/login")
    await shot(page, "login")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")

    # Overview: the conversation's requests and tokens, the chart, the top tables.
    await expect(page.locator("#total-requests")).to_have_text("3")
    days = await core.store.daily_activity(1)
    await expect(page.locator("#total-tokens")).to_have_text(f"{days[0].tokens:,}")
    assert await page.locator("svg.chart rect").count() == 90  # 3 charts × 30 days
    c1_row = page.locator("#top-channels tr", has_text="c1")
    await expect(c1_row).to_contain_text(f"{summary.channel_requests:,}")
    await expect(c1_row).to_contain_text(f"{summary.channel_tokens:,}")
    await expect(page.locator("#top-users")).to_contain_text("u-bob")
    feedback = page.locator("#feedback tr", has_text="c1").locator("td")
    await expect(feedback).to_have_text(["test", "w1", "c1", "2", "1", "0"])  # answers, 👍, 👎
    assert f"{summary.user_tokens:,} tokens" in told_by_usage
    await shot(page, "overview")

    # Users: the same numbers /usage gives Alice. A budget set here refuses her next request
    # before TokModel is asked.
    await page.click("nav >> text=Users")
    alice = page.locator("tr[data-user='test:w1:u-alice']")
    await expect(alice).to_contain_text(f"{summary.user_tokens:,}")
    await alice.locator("input[name=budget]").fill("100/day")
    await alice.locator("button[type=submit]").click()
    await expect(page.locator(".notice")).to_contain_text("u-alice")
    await expect(alice.locator(".budget-status")).to_contain_text(
        f"100 tokens a day: {summary.user_tokens:,} spent, 0 left"
    )
    defaults = page.locator("tr[data-workspace='test:w1']")
    await defaults.locator("input[name=budget]").fill("2M/month")
    await defaults.locator("button[type=submit]").click()
    bob = page.locator("tr[data-user='test:w1:u-bob']")
    await expect(bob.locator(".budget-status")).to_contain_text("default: 2M tokens a month")
    await shot(page, "users")
    sent = len(fake.requests)
    await core.handle(message("ask", "One more?"), replier)
    assert "Not sent: this would go past your daily budget" in replier.last
    assert len(fake.requests) == sent  # nothing went to TokModel
    await core.handle(message("ask", "Bob may", author=BOB), replier)
    assert "You said" in replier.last

    # Channels: set c1's model; /model in the channel then reports it.
    await page.click("nav >> text=Channels")
    row = page.locator("tr[data-channel='test:w1:c1']")
    await row.locator("input[name=model]").fill("anthropic/claude-sonnet-4-5")
    await row.locator("button[type=submit]").click()
    await expect(page.locator(".notice")).to_contain_text("test:c1")
    await expect(row.locator("input[name=model]")).to_have_value("anthropic/claude-sonnet-4-5")
    c2 = page.locator("tr[data-channel='test:w1:c2']")
    await c2.locator("input[name=budget]").fill("5M/month")
    await c2.locator("button[type=submit]").click()
    await expect(c2.locator(".budget-status")).to_contain_text("5M tokens a month")
    await core.handle(message("model"), replier)
    assert "This channel uses `anthropic/claude-sonnet-4-5` (set for this channel)" in (
        replier.last
    )
    # A model TokModel does not have is refused with /model's words, and nothing changes.
    await row.locator("input[name=model]").fill("openai/gpt-5-imaginary")
    await row.locator("button[type=submit]").click()
    await expect(page.locator(".error")).to_contain_text("TokModel has no model")
    settings = await core.store.channel_settings(KEY)
    assert settings.model == "anthropic/claude-sonnet-4-5"
    await shot(page, "channels")

    # The overview lists the budgets, the most spent first.
    await page.click("nav >> text=Overview")
    first = page.locator("#budgets tr").nth(1)
    await expect(first).to_contain_text("user u-alice")
    await expect(first).to_contain_text("100/day")
    await expect(page.locator("#budgets")).to_contain_text("channel c2")
    await shot(page, "overview")

    # Health: the doctor's checks, live.
    await page.click("nav >> text=Health")
    await expect(page.locator("#findings")).to_contain_text("key accepted")
    await shot(page, "health")

    # Logging out ends the session in this browser.
    await page.click("text=Log out")
    await expect(page).to_have_url(admin_site.url + "/login")
    await page.goto(admin_site.url + "/users")
    await expect(page).to_have_url(admin_site.url + "/login")
