"""Pictures in a question: fetched from the platform, checked, kept with the question's turn,
and sent again with follow-ups (see `bot.conversation.AttachedPicture`)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from bot.commands import Invocation
from bot.conversation import AttachedPicture
from bot.domain import Attachment, Turn, TurnKind
from bot.errors import UserError
from bot.media import is_image_attachment, looks_like_html
from bot.store.pictures import Picture, PictureRef, PictureStore
from bot.tokmodel.images import image_type
from bot.tokmodel.types import ChatImage


@dataclass(frozen=True)
class QuestionPictures:
    """What came of a question's pictures: those looked at, and one line for each refused."""

    taken: list[Picture]
    refused: list[str]


def picture_store(inv: Invocation) -> PictureStore:
    return PictureStore(inv.core.store, inv.core.settings.image_cache_bytes)


def image_attachments(inv: Invocation) -> list[Attachment]:
    return [a for a in inv.incoming.attachments if is_image_attachment(a)]


def reserve(inv: Invocation, attached: Sequence[Attachment]) -> int:
    """Bytes of the download budget the question's pictures may take: each one's size where
    the platform says it (else the limit), for the pictures that will be fetched."""
    limit = inv.core.settings.max_vision_image_bytes
    wanted = attached[: inv.core.settings.max_images_per_question]
    sizes = [a.size if a.size is not None else limit for a in wanted]
    return sum(size for size in sizes if size <= limit)


async def take_pictures(inv: Invocation, attached: Sequence[Attachment]) -> QuestionPictures:
    """Download the question's pictures (at most TOKBOT_MAX_IMAGES_PER_QUESTION, side by side)
    and check each is a PNG, JPEG, WebP or GIF. The caller holds `reserve` bytes of the
    download budget meanwhile (and while the pictures are in memory)."""
    settings = inv.core.settings
    wanted = list(attached[: settings.max_images_per_question])
    refused: list[str] = []
    if len(attached) > len(wanted):
        skipped = ", ".join(a.filename for a in attached[len(wanted) :])
        refused.append(
            f"🖼️ I look at {settings.max_images_per_question} pictures a question at most, "
            f"so I skipped {skipped}."
        )
    outcomes = await asyncio.gather(*(_take(inv, a) for a in wanted))
    taken = [o for o in outcomes if isinstance(o, Picture)]
    refused = [o for o in outcomes if isinstance(o, str)] + refused
    return QuestionPictures(taken, refused)


async def _take(inv: Invocation, attachment: Attachment) -> Picture | str:
    """The picture, or the line that says why it was not looked at."""
    limit = inv.core.settings.max_vision_image_bytes
    too_big = (
        f"🖼️ {attachment.filename} is over the {limit / 1024 / 1024:g} MB limit for pictures, "
        "so I didn't look at it."
    )
    if attachment.size is not None and attachment.size > limit:
        return too_big
    try:
        data = await inv.replier.download(attachment, limit)
    except UserError as exc:
        return f"🖼️ {exc}"
    if len(data) > limit:
        return too_big
    mime = image_type(data)
    if mime is None:
        what = "a web page" if looks_like_html(data) else "something else"
        return (
            f"🖼️ {attachment.filename} isn't a PNG, JPEG, WebP or GIF picture (it is {what}), "
            "so I didn't look at it."
        )
    sha = hashlib.sha256(data).hexdigest()
    return Picture(PictureRef(_source(attachment), attachment.filename, sha, mime, len(data)), data)


def _source(attachment: Attachment) -> str:
    """Where the picture came from: the platform's file id (Slack), the local path (console),
    else its URL (Discord's names the attachment id) or name."""
    ref = attachment.ref
    if isinstance(ref, str | PurePath):
        return str(ref)
    return attachment.url or attachment.filename


async def context_pictures(
    inv: Invocation, turns: Sequence[Turn], question: Sequence[Picture]
) -> dict[int, list[AttachedPicture]]:
    """The pictures of the context's turns, by turn id (the question, not stored yet, is 0):
    those of the newest TOKBOT_VISION_HISTORY_IMAGES turns with pictures at hand (from the
    cache), older ones named only. Costs nothing for conversations without pictures."""
    found: dict[int, list[AttachedPicture]] = {}
    if question:
        found[0] = [_attached(p.ref, p.data) for p in question]
    earlier = [t.id for t in reversed(turns) if t.kind is TurnKind.PICTURES and t.id]
    if not earlier:
        return found
    store = picture_store(inv)
    refs = await store.refs(earlier)
    resend = earlier[: max(0, inv.core.settings.vision_history_images - len(found))]
    shas = [ref.sha256 for turn_id in resend for ref in refs.get(turn_id, [])]
    cached = await store.data(shas)
    for turn_id in earlier:
        kept = turn_id in resend
        found[turn_id] = [
            _attached(ref, cached.get(ref.sha256)) if kept else AttachedPicture(ref.filename)
            for ref in refs.get(turn_id, [])
        ]
    return found


def _attached(ref: PictureRef, data: bytes | None) -> AttachedPicture:
    if data is None:
        return AttachedPicture(ref.filename, gone=True)
    return AttachedPicture(ref.filename, ChatImage(ref.mime, data))
