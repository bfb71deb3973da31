"""Pictures in questions, through the core (a recording platform, the real TokModel stand-in,
a real database): what reaches TokModel, what follow-ups carry, what is refused and why."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.conversation import IMAGE_TOKENS, AttachedPicture, build_context
from bot.core import Core
from bot.domain import Attachment, Author, Turn, TurnKind, TurnRole, TurnStatus
from bot.runtime import TokModelEndpoint, open_core
from bot.settings import Settings
from bot.store.pictures import PictureStore
from bot.tokmodel.fake import FakeTokModel, Fault
from bot.tokmodel.fake_vision import images_in, solid_png
from bot.tokmodel.kinds import takes_images
from bot.tokmodel.types import ChatImage
from tests.conftest import API_KEY
from tests.platform import RecordingReplier, message

CHAT = "/v1/chat/completions"
RED = solid_png(32, 16, (220, 30, 30))
BLUE = solid_png(8, 8, (30, 60, 220))


def chats(fake: FakeTokModel) -> list[dict[str, object]]:
    return [r.json for r in fake.requests if r.path == CHAT and r.json]


def attach(
    replier: RecordingReplier, name: str, data: bytes, size: int | None = None
) -> Attachment:
    replier.files[name] = data
    return Attachment(name, "image/png", len(data) if size is None else size, url=name, ref=name)


@pytest.fixture
async def small_cache(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> AsyncIterator[Core]:
    settings = make_settings(TOKBOT_IMAGE_CACHE_BYTES=str(len(RED) + 10))
    async with open_core(settings, TokModelEndpoint(fake.url, API_KEY)) as opened:
        yield opened


async def test_pictures_reach_tokmodel_as_parts_and_follow_ups_still_carry_them(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    red, blue = attach(replier, "red.png", RED), attach(replier, "blue.png", BLUE)
    await core.handle(message("ask", "which is warmer?", attachments=(red, blue)), replier)
    [asked] = chats(fake)
    question = asked["messages"][-1]  # type: ignore[index]
    assert question["content"][0] == {  # text first, then one part per picture
        "type": "text",
        "text": "Alice: which is warmer? [picture: red.png] [picture: blue.png]",
    }
    assert images_in(asked) == [RED, BLUE]
    assert "I see 2 picture(s): a 32×16 PNG, mostly red; a 8×8 PNG, mostly blue" in replier.last
    # Stored by reference: the turn's text holds no bytes; the pictures are in their tables.
    turns = await core.store.history(message("ask").key)
    assert turns[0].kind == "pictures" and turns[0].content == "which is warmer?"
    refs = await PictureStore(core.store, 1).refs([turns[0].id])
    assert [(r.filename, r.mime, r.size) for r in refs[turns[0].id]] == [
        ("red.png", "image/png", len(RED)),
        ("blue.png", "image/png", len(BLUE)),
    ]
    await core.handle(message("ask", "and the colder one?"), replier)
    assert images_in(chats(fake)[-1]) == [RED, BLUE]
    assert "I see 2 picture(s)" in replier.last
    # Usage counts the pictures' tokens, as the stand-in reports them.
    summary = await core.store.usage_summary(message("ask").key, "u-alice")
    assert summary.user_tokens > 2 * 2 * 85


async def test_refused_pictures_get_one_line_each_and_the_rest_is_answered(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    huge = attach(replier, "huge.png", RED, size=40 * 1024 * 1024)  # as the platform says
    page = attach(replier, "login.png", b"<!DOCTYPE html><html><body>Sign in</body></html>")
    good = [attach(replier, f"p{i}.png", solid_png(4, 4, (0, 200, 0))) for i in range(4)]
    await core.handle(message("ask", "look", attachments=(huge, page, *good)), replier)
    # 6 pictures: the first 4 are taken (2 of them refused), the last 2 skipped.
    assert images_in(chats(fake)[-1]) == [replier.files["p0.png"], replier.files["p1.png"]]
    answer, note = replier.texts[-2:]
    assert "I see 2 picture(s)" in answer
    assert note.splitlines() == [
        "🖼️ huge.png is over the 8 MB limit for pictures, so I didn't look at it.",
        "🖼️ login.png isn't a PNG, JPEG, WebP or GIF picture (it is a web page), so I didn't "
        "look at it.",
        "🖼️ I look at 4 pictures a question at most, so I skipped p2.png, p3.png.",
    ]
    before = len(chats(fake))
    await core.handle(message("ask", "", attachments=(page,)), replier)  # nothing left to ask
    assert len(chats(fake)) == before and "login.png isn't a PNG" in replier.last
    assert replier.last in {replier.messages[i] for i in replier.private}


async def test_a_model_that_refuses_pictures_hands_them_to_the_vision_model(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    fake.text_only_models.add("mistral/mistral-large-latest")
    await core.store.update_channel_settings(
        message("ask").key, updated_by="u-admin", model="mistral/mistral-large-latest"
    )
    await core.handle(
        message("ask", "what's this?", attachments=(attach(replier, "r.png", RED),)), replier
    )
    first, second = chats(fake)
    assert first["model"] == "mistral/mistral-large-latest"
    assert second["model"] == "openai/gpt-4o-mini" and images_in(second) == [RED]
    assert "I see 1 picture(s)" in replier.last
    assert "`mistral/mistral-large-latest` can't look at pictures, so `openai/gpt-4o-mini`" in (
        replier.last
    )
    await core.handle(message("ask", "thanks, no pictures now"), replier)
    # The picture is still in context, and the refusal was remembered: asked once, on sight.
    assert [c["model"] for c in chats(fake)][2:] == ["openai/gpt-4o-mini"]
    assert "`mistral/mistral-large-latest` can't look at pictures" in replier.last
    fake.text_only_models.add("openai/gpt-4o-mini")  # the vision model refuses too: said so
    await core.handle(message("ask", "again?"), replier)
    assert "can't look at pictures" not in replier.last and "image_url" in replier.last


async def test_only_a_refusal_that_says_so_counts_as_no_sight(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    """A 400 about something else on a question with pictures is an error like any other: no
    second request, and the model is still asked with pictures next time."""
    model = "mistral/mistral-large-latest"
    await core.store.update_channel_settings(message("ask").key, updated_by="u-admin", model=model)
    fake.fail(Fault(status=400, message="Invalid 'temperature': expected at most 2.", path=CHAT))
    picture = (attach(replier, "r.png", RED),)
    await core.handle(message("ask", "what's this?", attachments=picture), replier)
    assert "temperature" in replier.last and "can't look at pictures" not in replier.last
    await core.handle(message("ask", "and now?", attachments=picture), replier)
    assert "I see" in replier.last and "can't look at pictures" not in replier.last
    assert [c["model"] for c in chats(fake)] == [model, model]  # no vision model asked


async def test_a_follow_up_says_so_when_the_picture_is_no_longer_kept(
    small_cache: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    core = small_cache
    await core.handle(
        message("ask", "one", attachments=(attach(replier, "red.png", RED),)), replier
    )
    await core.handle(message("ask", "two", attachments=(attach(replier, "b.png", BLUE),)), replier)
    await core.handle(message("ask", "what were they?"), replier)  # red.png left the cache
    asked = chats(fake)[-1]
    assert images_in(asked) == [BLUE]
    texts = [m["content"] for m in asked["messages"] if m["role"] == "user"]  # type: ignore[union-attr,index]
    assert texts[0] == "Alice: one [picture red.png: no longer kept, so not shown again]"


async def test_slash_model_says_whether_the_model_takes_pictures_when_the_list_says(
    core: Core, fake: FakeTokModel, replier: RecordingReplier
) -> None:
    admin = Author("u-admin", "Ada", is_admin=True)
    await core.handle(message("model"), replier)
    assert "pictures" not in replier.last  # TokModel's documented model list doesn't say
    fake.model_modalities = True  # a gateway that does, OpenRouter's way
    await core.handle(message("model"), replier)
    assert "(the default). It takes pictures." in replier.last
    await core.handle(message("model", "mistral/mistral-large-latest", author=admin), replier)
    await core.handle(message("model"), replier)
    assert "It can't take pictures: questions with pictures go to `openai/gpt-4o-mini`" in (
        replier.last
    )


def test_what_a_model_list_entry_says_about_pictures() -> None:
    assert takes_images({"id": "a/b"}) is None
    assert takes_images({"architecture": {"input_modalities": ["text", "image"]}}) is True
    assert takes_images({"architecture": {"input_modalities": ["text"]}}) is False
    assert takes_images({"input_modalities": ["image"]}) is True
    assert takes_images({"supports_vision": False}) is False
    assert takes_images({"model_info": {"supports_vision": True}}) is True


def test_older_pictures_that_do_not_fit_the_budget_are_named_instead() -> None:
    def turn(turn_id: int, text: str) -> Turn:
        return Turn(turn_id, TurnRole.USER, TurnKind.PICTURES, text, "u", "Al", TurnStatus.OK, 0)

    image = ChatImage("image/png", RED)
    pictures = {
        1: [AttachedPicture("old.png", image)],
        0: [AttachedPicture("a.png", image), AttachedPicture("b.png", image)],
    }
    turns = [turn(1, "earlier"), turn(0, "now")]
    roomy = build_context(None, turns, budget_tokens=5000, pictures=pictures)
    assert [len(m.images) for m in roomy] == [0, 1, 2]
    # Room for the question's two pictures, not for the older one: it is named, not sent.
    tight = build_context(None, turns, budget_tokens=IMAGE_TOKENS * 2 + 100, pictures=pictures)
    assert [len(m.images) for m in tight] == [0, 0, 2]
    assert tight[1].content == "Al: earlier [picture old.png: shown earlier, not sent again]"
    # The question keeps its pictures even alone over the budget.
    alone = build_context(None, turns[1:], budget_tokens=10, pictures=pictures)
    assert [len(m.images) for m in alone] == [0, 2]
