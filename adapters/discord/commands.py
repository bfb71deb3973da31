"""The slash commands: each defers at once (Discord's 3-second deadline), then hands the core an
Incoming with typed options and lets the answer stream into the original response."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.handlers.media import IMAGE_SIZES, TRANSCRIPTION_MODES
from bot.tokmodel.errors import TokModelError

if TYPE_CHECKING:
    from adapters.discord.client import TokbotClient

Choice = app_commands.Choice
BUDGET_SCOPES = ("user", "channel", "default", "list")
SUMMARY_SPANS = ("24h", "7d", "thread")
VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")
_MODEL_CACHE_SECONDS = 60.0


class _ModelIds:
    """TokModel's model ids for autocomplete, cached briefly (autocomplete has 3 seconds)."""

    def __init__(self, client: TokbotClient) -> None:
        self._client = client
        self._ids: list[str] = []
        self._at = 0.0

    async def matching(self, current: str) -> list[Choice[str]]:
        if not self._ids or time.monotonic() - self._at > _MODEL_CACHE_SECONDS:
            try:
                models = await self._client.core.tokmodel.list_models()
            except TokModelError:
                models = []
            if models:
                self._ids, self._at = [m.id for m in models if m.is_chat], time.monotonic()
        wanted = current.lower()
        return [Choice(name=i, value=i) for i in self._ids if wanted in i.lower()][:25]


def build_tree(client: TokbotClient) -> app_commands.CommandTree[TokbotClient]:
    """Every command, as Discord shows it; the core decides what each does."""
    tree: app_commands.CommandTree[TokbotClient] = app_commands.CommandTree(client)
    run = client.run_command
    model_ids = _ModelIds(client)

    @tree.command(name="ask", description="Ask anything; I remember this conversation")
    @app_commands.describe(question="What do you want to know?", image="A picture to look at")
    async def ask(
        interaction: discord.Interaction, question: str, image: discord.Attachment | None = None
    ) -> None:
        await run(interaction, "ask", question, {}, [image] if image else [])

    @tree.command(name="imagine", description="Draw an image (attach a PNG to edit or vary it)")
    @app_commands.describe(prompt="What to draw", image="A PNG to edit", size="Image size")
    @app_commands.choices(size=[Choice(name=s, value=s) for s in IMAGE_SIZES])
    async def imagine(
        interaction: discord.Interaction,
        prompt: str | None = None,
        image: discord.Attachment | None = None,
        size: Choice[str] | None = None,
    ) -> None:
        options = {"size": size.value} if size else {}
        await run(interaction, "imagine", prompt or "", options, [image] if image else [])

    @tree.command(name="tts", description="Speak text as an audio file")
    @app_commands.describe(text="What to say", voice="Which voice")
    @app_commands.choices(voice=[Choice(name=v, value=v) for v in VOICES])
    async def tts(
        interaction: discord.Interaction, text: str, voice: Choice[str] | None = None
    ) -> None:
        await run(interaction, "tts", text, {"voice": voice.value} if voice else {})

    @tree.command(name="transcribe", description="Transcribe an audio file")
    @app_commands.describe(
        audio="The recording",
        translate="Translate it to English",
        answer="Then answer it as a question",
    )
    async def transcribe(
        interaction: discord.Interaction,
        audio: discord.Attachment,
        translate: bool = False,
        answer: bool = False,
    ) -> None:
        flags = {name: "true" for name, on in (("translate", translate), ("answer", answer)) if on}
        await run(interaction, "transcribe", "", flags, [audio])

    @tree.command(name="forget", description="Start a fresh context here")
    async def forget(interaction: discord.Interaction) -> None:
        await run(interaction, "forget")

    @tree.command(name="summarize", description="Summarize this channel over a span, or a thread")
    @app_commands.describe(span="The last 24 hours (default), 7 days, or this thread")
    @app_commands.choices(span=[Choice(name=s, value=s) for s in SUMMARY_SPANS])
    async def summarize(interaction: discord.Interaction, span: Choice[str] | None = None) -> None:
        await run(interaction, "summarize", span.value if span else "")

    @tree.command(name="model", description="Show or (admins) set this channel's chat model")
    @app_commands.rename(model_id="id")
    @app_commands.describe(model_id="A TokModel model id", reset="Back to the default")
    async def model(
        interaction: discord.Interaction, model_id: str | None = None, reset: bool = False
    ) -> None:
        await run(interaction, "model", model_id or "", {"reset": "true"} if reset else {})

    @model.autocomplete("model_id")
    async def model_complete(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        return await model_ids.matching(current)

    @tree.command(name="persona", description="Show or (admins) set this channel's system prompt")
    @app_commands.describe(text="The new system prompt", reset="Back to the default")
    async def persona(
        interaction: discord.Interaction, text: str | None = None, reset: bool = False
    ) -> None:
        await run(interaction, "persona", text or "", {"reset": "true"} if reset else {})

    @tree.command(name="transcription", description="Show or (admins) set voice message handling")
    @app_commands.describe(mode="What happens to voice messages here")
    @app_commands.choices(mode=[Choice(name=m, value=m) for m in TRANSCRIPTION_MODES])
    async def transcription(
        interaction: discord.Interaction, mode: Choice[str] | None = None
    ) -> None:
        await run(interaction, "transcription", mode.value if mode else "")

    @tree.command(name="usage", description="Requests and tokens, yours and this channel's")
    async def usage(interaction: discord.Interaction) -> None:
        await run(interaction, "usage")

    @tree.command(name="budget", description="Token budgets, yours and this channel's")
    @app_commands.describe(
        scope="Whose budget to set (admins); leave out to see yours and this channel's",
        user="The person, for scope user",
        limit="e.g. 200k/day, 5M/month, or off (leave out to see a person's)",
    )
    @app_commands.choices(scope=[Choice(name=s, value=s) for s in BUDGET_SCOPES])
    async def budget(
        interaction: discord.Interaction,
        scope: Choice[str] | None = None,
        user: discord.User | None = None,
        limit: str | None = None,
    ) -> None:
        # The same words the core reads from a message: "user <@id> 200k/day".
        words = [scope.value if scope else "", f"<@{user.id}>" if user else "", limit or ""]
        await run(interaction, "budget", " ".join(w for w in words if w))

    @tree.command(name="memory", description="Team memory here: show, or (admins) change it")
    @app_commands.describe(action="on, off, or forget what was kept (admins)")
    @app_commands.choices(action=[Choice(name=a, value=a) for a in ("on", "off", "forget")])
    async def memory(interaction: discord.Interaction, action: Choice[str] | None = None) -> None:
        await run(interaction, "memory", action.value if action else "")

    @tree.command(name="recall", description="What this channel said about something")
    @app_commands.describe(words="What to look for")
    async def recall(interaction: discord.Interaction, words: str) -> None:
        await run(interaction, "recall", words)

    @tree.command(name="help", description="What I can do")
    async def help_(interaction: discord.Interaction) -> None:
        await run(interaction, "help")

    return tree
