"""/imagine, /tts and voice transcription: TokModel's media endpoints, files in and out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.commands import Invocation
from bot.domain import (
    BOT_AUTHOR,
    Attachment,
    Incoming,
    OutgoingFile,
    TurnKind,
    TurnRole,
    TurnStatus,
)
from bot.errors import UserError
from bot.handlers.chat import answer
from bot.media import (
    is_audio_attachment,
    is_image_attachment,
    is_png,
    looks_like_audio,
    looks_like_html,
)
from bot.tokmodel.errors import TokModelError
from bot.wording import describe_tokmodel_error

if TYPE_CHECKING:
    from bot.core import Core

IMAGE_SIZES = ("256x256", "512x512", "1024x1024", "1792x1024", "1024x1792")
TRANSCRIPTION_MODES = ("off", "transcribe", "translate", "answer", "speak")


async def imagine(inv: Invocation) -> None:
    settings = inv.core.settings
    prompt = inv.text.strip()
    size = inv.options.get("size", settings.image_size)
    if size not in IMAGE_SIZES:
        raise UserError(f"Unknown size {size!r}. Sizes: {', '.join(IMAGE_SIZES)}.")
    images = [a for a in inv.incoming.attachments if is_image_attachment(a)]
    if inv.incoming.attachments and not images:
        raise UserError("That attachment isn't an image. Attach a PNG to edit or vary it.")
    if not prompt and not images:
        raise UserError(
            "Tell me what to draw, e.g. `/imagine a lighthouse at dawn, watercolour` "
            "(or attach a PNG to get a variation of it)."
        )
    if len(prompt) > settings.max_prompt_chars:
        raise UserError(
            f"That prompt is {len(prompt):,} characters; the limit is "
            f"{settings.max_prompt_chars:,}. Please shorten it."
        )
    if images:
        async with inv.core.downloads.hold(_reserve(images[0], settings.max_image_bytes)):
            await _draw(inv, prompt, size, await _download_png(inv, images[0]))
    else:
        await _draw(inv, prompt, size, None)


async def _draw(inv: Invocation, prompt: str, size: str, source: bytes | None) -> None:
    core, settings = inv.core, inv.core.settings
    action = "/imagine " + (prompt or "(a variation of the attached image)")
    if source is not None and prompt:
        action += " (editing the attached image)"
    user_turn = await _store_user_turn(inv, action)
    status_id = await inv.show("🎨 Drawing…")
    try:
        if source is None:
            results = await core.tokmodel.generate_image(
                prompt, model=settings.image_model, size=size
            )
        elif prompt:
            results = await core.tokmodel.edit_image(
                source, prompt, model=settings.image_model, size=size
            )
        else:
            results = await core.tokmodel.vary_image(source, model=settings.image_model, size=size)
    except TokModelError as exc:
        await _report_failure(inv, exc, user_turn, status_id, model=settings.image_model)
        return
    if not results:
        await _edit(inv, status_id, "⚠️ TokModel returned no image. Please try again.")
        return
    image = results[0]
    await inv.replier.upload(
        OutgoingFile(
            image.png,
            f"tokbot-image.{image.extension}",
            image.content_type,
            title=prompt[:100] or None,
        ),
        comment=None,
    )
    await _edit(inv, status_id, f"🎨 {prompt or 'A variation of your image'}")
    await _store_media_note(inv, f"[generated an image for: {prompt or 'a variation'}]")
    await core.record_usage(inv, model=settings.image_model, usage=None)


async def tts(inv: Invocation) -> None:
    core, settings = inv.core, inv.core.settings
    text = inv.text.strip()
    voice = inv.options.get("voice", settings.tts_voice).strip().lower()
    if not text:
        raise UserError("Give me something to say, e.g. `/tts Stand-up starts in five minutes`.")
    if len(text) > settings.max_tts_chars:
        raise UserError(
            f"That text is {len(text):,} characters; speech is limited to "
            f"{settings.max_tts_chars:,}. Please shorten it."
        )
    if not voice.isalnum():
        raise UserError(f"Unknown voice {voice!r}. Try alloy, echo, fable, onyx, nova or shimmer.")
    user_turn = await _store_user_turn(inv, f"/tts {text}")
    status_id = await inv.show("🔊 Recording…")
    try:
        audio = await core.tokmodel.speech(
            text, model=settings.tts_model, voice=voice, response_format="mp3"
        )
    except TokModelError as exc:
        await _report_failure(inv, exc, user_turn, status_id, model=settings.tts_model)
        return
    await inv.replier.upload(
        OutgoingFile(audio, "tokbot-speech.mp3", "audio/mpeg", title=text[:100]), comment=None
    )
    await _edit(inv, status_id, f"🔊 Voice: {voice}")
    await _store_media_note(inv, f"[spoke aloud: {text[:200]}]")
    await core.record_usage(inv, model=settings.tts_model, usage=None)


async def transcribe(inv: Invocation) -> None:
    """Explicit transcription (the console's /transcribe): runs even when the channel's
    automatic transcription is off."""
    await _transcribe(inv, automatic=False)


async def voice(inv: Invocation) -> None:
    """A voice message or audio upload seen by an adapter: handled per the channel's mode."""
    await _transcribe(inv, automatic=True)


async def voice_wanted(core: Core, incoming: Incoming) -> bool:
    """Whether this channel transcribes voice clips at all (checked before the rate limit)."""
    return (await core.store.channel_settings(incoming.key)).transcription_mode != "off"


async def _transcribe(inv: Invocation, *, automatic: bool) -> None:
    core, settings = inv.core, inv.core.settings
    mode = (await core.store.channel_settings(inv.key)).transcription_mode
    if automatic and mode == "off":
        return  # turned off while this waited its turn
    translate = mode == "translate" or "translate" in inv.options
    # answer/speak: the transcript is a question (console: /transcribe --answer).
    answering = mode in ("answer", "speak") or "answer" in inv.options
    audio = [a for a in inv.incoming.attachments if is_audio_attachment(a)]
    if not audio:
        if inv.incoming.attachments:
            names = ", ".join(a.filename for a in inv.incoming.attachments)
            raise UserError(f"{names} isn't audio I can transcribe (mp3, m4a, ogg, wav, webm…).")
        raise UserError("Attach a voice message or an audio file to transcribe.")
    attachment = audio[0]
    if attachment.size is not None and attachment.size > settings.max_audio_bytes:
        raise UserError(_too_big(attachment, settings.max_audio_bytes))
    async with core.downloads.hold(_reserve(attachment, settings.max_audio_bytes)):
        text = await _transcript(inv, attachment, translate=translate)
    label = "🎙️ (translated) " if translate else "🎙️ "
    shown = f"{label}{inv.author.name}: {text or '(no speech heard)'}"
    if not (answering and text):
        await _store_user_turn(inv, text, kind=TurnKind.TRANSCRIPT)
        await inv.show(shown)
        return
    await inv.show(shown)
    # Stored with its answer, as a question; the answer follows in the same thread/reply chain.
    answered = await answer(inv, text, kind=TurnKind.TRANSCRIPT)
    if answered and mode == "speak":
        await _speak_answer(inv, answered)


async def _speak_answer(inv: Invocation, text: str) -> None:
    """The answer as audio too (`speak` mode), in the default voice; the text stays the answer
    of record, so a failure here is one line and nothing more."""
    core, settings = inv.core, inv.core.settings
    spoken = text[: settings.max_tts_chars]
    try:
        audio = await core.tokmodel.speech(
            spoken, model=settings.tts_model, voice=settings.tts_voice, response_format="mp3"
        )
    except TokModelError as exc:
        inv.tokmodel_failed(exc)
        await inv.reply(
            "🔊 No audio this time: " + describe_tokmodel_error(exc, model=settings.tts_model)
        )
        return
    cut = " (the first part)" if len(spoken) < len(text) else ""
    await inv.replier.upload(
        OutgoingFile(audio, "tokbot-answer.mp3", "audio/mpeg", title=f"🔊 The answer{cut}"),
        comment=None,
    )
    await core.record_usage(inv, model=settings.tts_model, usage=None)


def _reserve(attachment: Attachment, limit: int) -> int:
    """Bytes to set aside for downloading `attachment` (its size where the platform says)."""
    return min(attachment.size, limit) if attachment.size else limit


async def _transcript(inv: Invocation, attachment: Attachment, *, translate: bool) -> str:
    """Download and transcribe one audio attachment; return the text (stored by the caller; a
    failure is stored here)."""
    core, settings = inv.core, inv.core.settings
    data = await inv.replier.download(attachment, settings.max_audio_bytes)
    if len(data) > settings.max_audio_bytes:
        raise UserError(_too_big(attachment, settings.max_audio_bytes))
    if looks_like_html(data) or not looks_like_audio(data):
        raise UserError(
            f"{attachment.filename} doesn't contain audio I can read "
            "(mp3, m4a, ogg, wav, webm, flac)."
        )
    try:
        text = await core.tokmodel.transcribe(
            data,
            attachment.filename,
            model=settings.transcribe_model,
            translate=translate,
            content_type=attachment.content_type,
        )
    except TokModelError as exc:
        error = f"{type(exc).__name__} ({exc.status})"
        await core.store.add_turn(
            inv.key,
            role=TurnRole.USER,
            kind=TurnKind.TRANSCRIPT,
            content=f"[voice message {attachment.filename}, not transcribed]",
            author=inv.author,
            status=TurnStatus.FAILED,
            error=error,
            platform_message_id=inv.incoming.message_id,
        )
        raise
    await core.record_usage(inv, model=settings.transcribe_model, usage=None)
    return text.strip()


def _too_big(attachment: Attachment, limit: int) -> str:
    return (
        f"{attachment.filename} is too large to transcribe: the limit is "
        f"{limit / 1024 / 1024:.0f} MB."
    )


async def _download_png(inv: Invocation, attachment: Attachment) -> bytes:
    limit = inv.core.settings.max_image_bytes
    if attachment.size is not None and attachment.size > limit:
        raise UserError(f"{attachment.filename} is over {limit / 1024 / 1024:.0f} MB.")
    data = await inv.replier.download(attachment, limit)
    if not is_png(data):
        raise UserError(f"{attachment.filename} isn't a PNG: TokModel edits PNG images only.")
    return data


async def _store_user_turn(inv: Invocation, content: str, *, kind: TurnKind = TurnKind.TEXT) -> int:
    return await inv.core.store.add_turn(
        inv.key,
        role=TurnRole.USER,
        kind=kind,
        content=content,
        author=inv.author,
        platform_message_id=inv.incoming.message_id,
    )


async def _store_media_note(inv: Invocation, note: str) -> None:
    await inv.core.store.add_turn(
        inv.key, role=TurnRole.ASSISTANT, kind=TurnKind.MEDIA, content=note, author=BOT_AUTHOR
    )


async def _report_failure(
    inv: Invocation, exc: TokModelError, user_turn: int, status_id: str, *, model: str
) -> None:
    inv.tokmodel_failed(exc)
    await inv.core.store.update_turn(user_turn, error=f"{type(exc).__name__} ({exc.status})")
    await _edit(inv, status_id, describe_tokmodel_error(exc, model=model))


async def _edit(inv: Invocation, message_id: str, text: str) -> None:
    await inv.replier.edit(message_id, inv.core.scrub(text))
