"""What the admin page shows when TokModel fails: the errors by status on the overview, and the
running bot's view of TokModel on the health page."""

from __future__ import annotations

from bot.tokmodel.fake import FakeTokModel, Fault
from tests.admin.conftest import AdminSite, browser, log_in
from tests.platform import RecordingReplier, message


async def test_out_of_credits_shows_on_overview_and_health(
    admin_site: AdminSite, fake: FakeTokModel
) -> None:
    fake.fail(Fault(status=403, times=1, path="/v1/chat/completions"))
    await admin_site.core.handle(message("ask", "hello"), RecordingReplier())
    async with browser() as http:
        assert (await log_in(http, admin_site.url)).status == 303
        async with http.get(f"{admin_site.url}/") as overview:
            html = await overview.text()
        async with http.get(f"{admin_site.url}/health") as health:
            checks = await health.text()
    assert 'id="total-errors">1<' in html
    assert "<td>403</td>" in html and "out of credits: top up the account" in html
    assert "The running bot: the TokModel account is out of credits (403)." in checks
    assert "key accepted" in checks  # the doctor's own check, run now
