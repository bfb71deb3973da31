"""Channel settings and information: /model, /persona, /transcription, /usage, /help."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.commands import Invocation
from bot.conversation import DEFAULT_PERSONA
from bot.errors import UserError
from bot.handlers.media import TRANSCRIPTION_MODES
from bot.tokmodel.errors import TokModelError
from bot.tokmodel.kinds import KIND_NAMES
from bot.wording import describe_tokmodel_error

if TYPE_CHECKING:
    from bot.core import Core

MAX_PERSONA_CHARS = 4000
#: What each transcription mode does, as /transcription says it.
MODE_MEANINGS = {
    "off": "left alone",
    "transcribe": "transcribed",
    "translate": "translated to English",
    "answer": "transcribed, then answered as a question",
    "speak": "transcribed and answered, the answer also spoken",
}
_MODELS_SHOWN = 25


async def model(inv: Invocation) -> None:
    core = inv.core
    wanted = inv.text.strip()
    current = (await core.store.channel_settings(inv.key)).model
    if "reset" in inv.options:
        inv.require_admin("change this channel's model")
        await core.store.update_channel_settings(inv.key, updated_by=inv.author.id, model=None)
        await inv.reply(f"🤖 Model reset to the default, `{core.settings.chat_model}`.")
        return
    if not wanted:
        shown = current or core.settings.chat_model
        origin = "set for this channel" if current else "the default"
        lines = [f"🤖 This channel uses `{shown}` ({origin})."]
        try:
            chat_models = [m for m in await core.tokmodel.list_models() if m.is_chat]
        except TokModelError as exc:
            inv.tokmodel_failed(exc)
            lines.append("I couldn't list TokModel's models: " + describe_tokmodel_error(exc))
        else:
            ids = [m.id for m in chat_models]
            sight = next((m.takes_images for m in chat_models if m.id == shown), None)
            if sight is not None:
                lines[0] += (
                    " It takes pictures."
                    if sight
                    else " It can't take pictures: questions with pictures go to "
                    f"`{core.settings.vision_model}`."
                )
            more = f" … and {len(ids) - _MODELS_SHOWN} more" if len(ids) > _MODELS_SHOWN else ""
            shown_ids = ", ".join(f"`{i}`" for i in ids[:_MODELS_SHOWN])
            lines.append("Chat models: " + shown_ids + more)
        lines.append("Admins can change it with `/model <id>` (or `/model --reset`).")
        await inv.reply("\n".join(lines))
        return
    inv.require_admin("change this channel's model")
    await check_chat_model(core, wanted)
    await core.store.update_channel_settings(inv.key, updated_by=inv.author.id, model=wanted)
    await inv.reply(f"🤖 This channel now uses `{wanted}`.")


async def check_chat_model(core: Core, wanted: str) -> None:
    """Raise UserError unless `wanted` is one of TokModel's chat models (`/model <id>` and the
    admin page ask the same)."""
    if " " in wanted or len(wanted) > 200:
        raise UserError("A model id is one word like `openai/gpt-4o`. See `/model` for the list.")
    known = {m.id: m for m in await core.tokmodel.list_models()}
    if wanted not in known:
        chat = [i for i, m in known.items() if m.is_chat]
        close = sorted(i for i in chat if wanted.split("/")[-1] in i)[:5]
        hint = " Did you mean " + ", ".join(f"`{i}`" for i in close) + "?" if close else ""
        raise UserError(f"TokModel has no model `{wanted}`.{hint} See `/model` for the list.")
    if not known[wanted].is_chat:
        kind = KIND_NAMES.get(known[wanted].kind, "not a chat")
        raise UserError(
            f"`{wanted}` is {kind} model; `/model` sets the chat model that answers here. "
            "See `/model` for the chat models."
        )


async def persona(inv: Invocation) -> None:
    core = inv.core
    text = inv.text.strip()
    if "reset" in inv.options:
        inv.require_admin("change this channel's persona")
        await core.store.update_channel_settings(inv.key, updated_by=inv.author.id, persona=None)
        await inv.reply("🎭 Persona reset to the default.")
        return
    if not text:
        current = (await core.store.channel_settings(inv.key)).persona
        shown = current or DEFAULT_PERSONA
        origin = "set for this channel" if current else "the default"
        await inv.reply(
            f"🎭 Persona ({origin}):\n> {shown}\n"
            "Admins can change it with `/persona <text>` (or `/persona --reset`)."
        )
        return
    inv.require_admin("change this channel's persona")
    if len(text) > MAX_PERSONA_CHARS:
        raise UserError(
            f"That persona is {len(text):,} characters; the limit is {MAX_PERSONA_CHARS:,}."
        )
    await core.store.update_channel_settings(inv.key, updated_by=inv.author.id, persona=text)
    await inv.reply("🎭 Persona updated for this channel and its threads.")


async def transcription(inv: Invocation) -> None:
    core = inv.core
    wanted = inv.text.strip().lower()
    if not wanted:
        mode = (await core.store.channel_settings(inv.key)).transcription_mode
        await inv.reply(
            f"🎙️ Voice messages here: {mode} ({MODE_MEANINGS[mode]}). Admins can choose "
            "`/transcription off|transcribe|translate|answer|speak`."
        )
        return
    if wanted not in TRANSCRIPTION_MODES:
        raise UserError(
            "Choose one of: "
            + "; ".join(f"`{name}` ({meaning})" for name, meaning in MODE_MEANINGS.items())
            + "."
        )
    inv.require_admin("change how voice messages are handled")
    await core.store.update_channel_settings(
        inv.key, updated_by=inv.author.id, transcription_mode=wanted
    )
    await inv.reply(f"🎙️ Voice messages here: {wanted} ({MODE_MEANINGS[wanted]}).")


#: How many channels an admin's /usage lists (the busiest).
USAGE_CHANNELS = 10


async def usage(inv: Invocation) -> None:
    summary = await inv.core.store.usage_summary(inv.key, inv.author.id)
    lines = [
        "📊 Usage",
        f"• you: {summary.user_requests:,} requests, {summary.user_tokens:,} tokens",
        f"• this channel: {summary.channel_requests:,} requests, {summary.channel_tokens:,} tokens",
    ]
    memory_requests, memory_tokens = await inv.core.store.vectors.memory_usage(inv.key)
    if memory_requests:
        lines.append(
            f"  of which team memory (embeddings, rerank): {memory_requests:,} requests, "
            f"{memory_tokens:,} tokens"
        )
    if inv.core.is_admin(inv.author):
        lines += await _feedback_lines(inv)
    await inv.reply("\n".join(lines), private=True)


async def _feedback_lines(inv: Invocation) -> list[str]:
    """For admins: answers and feedback per channel of this workspace, busiest first."""
    channels = await inv.core.store.feedback_by_channel(
        platform=inv.key.platform, workspace=inv.key.workspace, limit=USAGE_CHANNELS
    )
    if not channels:
        return []
    lines = ["Answers and feedback by channel (admins see this):"]
    for channel in channels:
        here = " (here)" if channel.channel == inv.key.channel else ""
        lines.append(
            f"• `{channel.channel}`{here}: {channel.answers:,} answers, "
            f"👍 {channel.positive:,}, 👎 {channel.negative:,}"
        )
    return lines


async def help_(inv: Invocation) -> None:
    """The commands this platform offers (a file command that is no slash command there is
    named the way to send it: a mention with the file)."""
    offered = inv.replier.platform_help
    lines = ["**tokbot** — TokModel in your channel. Commands:"]
    for spec in inv.core.registry.visible():
        if offered.slash_commands is None or spec.name in offered.slash_commands:
            lines.append(f"• `{spec.usage}` — {spec.summary}")
        elif spec.takes_files:
            lines.append(
                f"• `{spec.usage.lstrip('/')}` in a mention, with the file — {spec.summary}"
            )
    if offered.addressing:
        lines.append(offered.addressing)
    if offered.voice_messages:
        lines.append(
            "Voice messages and audio uploads are transcribed, or answered as questions "
            "(see `/transcription`)."
        )
    await inv.reply("\n".join(lines), private=True)
