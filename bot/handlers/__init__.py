"""The commands tokbot answers, the same on every platform."""

from __future__ import annotations

from bot.commands import CommandSpec
from bot.handlers import budget, channel, chat, media, memory, summarize


def default_commands() -> list[CommandSpec]:
    return [
        CommandSpec(
            "ask",
            "ask anything; I remember this conversation",
            "/ask <question>",
            chat.ask,
            uses_tokmodel=True,
            budget_in_handler=True,
            read_ahead=chat.read_ahead,
        ),
        CommandSpec(
            "imagine",
            "draw an image (attach a PNG to edit it, or alone for a variation)",
            "/imagine [--size 1024x1024] <prompt>",
            media.imagine,
            options=("size",),
            uses_tokmodel=True,
            takes_files=True,
            reads_history=False,
        ),
        CommandSpec(
            "tts",
            "speak text as an audio file",
            "/tts [--voice alloy] <text>",
            media.tts,
            options=("voice",),
            uses_tokmodel=True,
            reads_history=False,
        ),
        CommandSpec(
            "transcribe",
            "transcribe an audio file (`translate`: to English; `answer`: then answer it)",
            "/transcribe <audio file>",
            media.transcribe,
            flags=("translate", "answer"),
            uses_tokmodel=True,
            takes_files=True,
        ),
        CommandSpec(
            "voice",
            "transcribe a voice message",
            "(voice message)",
            media.voice,
            uses_tokmodel=True,
            wanted=media.voice_wanted,
            hidden=True,
        ),
        CommandSpec("forget", "start a fresh context here", "/forget", chat.forget),
        CommandSpec(
            "summarize",
            "a summary of this channel over a span (threads included), or of this thread",
            summarize.USAGE,
            summarize.summarize,
            uses_tokmodel=True,
        ),
        CommandSpec(
            "model",
            "show or (admins) set this channel's chat model",
            "/model [id]",
            channel.model,
            flags=("reset",),
            reads_history=False,
        ),
        CommandSpec(
            "persona",
            "show or (admins) set this channel's system prompt",
            "/persona [text]",
            channel.persona,
            flags=("reset",),
            reads_history=False,
        ),
        CommandSpec(
            "transcription",
            "show or (admins) set what happens to voice messages",
            "/transcription [off|transcribe|translate|answer|speak]",
            channel.transcription,
            reads_history=False,
        ),
        CommandSpec(
            "usage",
            "requests and tokens, yours and this channel's",
            "/usage",
            channel.usage,
            private_reply=True,
            reads_history=False,
        ),
        CommandSpec(
            "budget",
            "token budgets, yours and this channel's (admins set them)",
            "/budget [user @someone|channel|default 200k/day|off]",
            budget.budget,
            private_reply=True,
            reads_history=False,
        ),
        CommandSpec(
            "memory",
            "team memory here: show, or (admins) turn on/off or forget",
            "/memory [on|off|forget]",
            memory.memory,
            reads_history=False,
        ),
        CommandSpec(
            "recall",
            "what this channel said about something, with links",
            "/recall <words>",
            memory.recall,
            # (rerank and a query embedding: TokModel calls, rate-limited and budgeted)
            uses_tokmodel=True,
            reads_history=False,
        ),
        CommandSpec(
            "help", "this list", "/help", channel.help_, private_reply=True, reads_history=False
        ),
    ]
