"""How the core speaks in one Slack conversation: messages with chat.postMessage / chat.update in
the right channel and thread, private replies through a command's response_url or
chat.postEphemeral, files with files_upload_v2, and downloads of shared files."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.budget import EditBudget
from adapters.slack.thread import SlackThread
from adapters.slack.translate import to_slack
from bot.domain import AnswerControls, Attachment, EarlierMessage, OutgoingFile, PlatformHelp
from bot.errors import UserError

log = logging.getLogger(__name__)

#: Slack truncates message text past 40,000 characters and advises staying under 4,000.
MAX_MESSAGE_LENGTH = 3900
PLACEHOLDER = "_thinking…_"
#: The slash commands manifest.yml declares (a test keeps the two the same). /transcribe is not
#: one: slash commands carry no files on Slack, so it is a mention with the file.
SLASH_COMMANDS = frozenset(
    {
        "ask",
        "imagine",
        "tts",
        "forget",
        "model",
        "persona",
        "transcription",
        "usage",
        "budget",
        "help",
    }
)
HELP = PlatformHelp(
    slash_commands=SLASH_COMMANDS,
    addressing=(
        "Mention me or DM me to ask; I answer in a thread. Start a mention with a command to run "
        "it, e.g. `@tokbot imagine make it blue` with a picture attached (slash commands can't "
        "carry files)."
    ),
)
_CHUNK = 64 * 1024
_NOT_IN_CHANNEL = frozenset({"not_in_channel", "channel_not_found"})
INVITE_ME = (
    "I can't post in this conversation. Invite me first (`/invite @tokbot`), then try again."
)


class NotInChannel(UserError):
    """The bot can't post in the channel (private, or a DM it isn't part of). The core tells the
    person privately (a refusal), through the command's response_url."""

    def __init__(self) -> None:
        super().__init__(INVITE_ME)


class SlackReplier:
    """Answers in `channel` (and in `thread_ts` when set). Every text is escaped, so model output
    can never ping `<!channel>`, `<!here>`, a user group or a person."""

    max_message_length = MAX_MESSAGE_LENGTH
    stream_placeholder: str | None = PLACEHOLDER
    platform_help = HELP

    def __init__(
        self,
        client: AsyncWebClient,
        session: aiohttp.ClientSession,
        *,
        token: str,
        channel: str,
        thread_ts: str | None = None,
        file_hosts: Iterable[str] = (),
        edit_interval: float = 1.0,
        response_url: str | None = None,
        thread: SlackThread | None = None,
        user_id: str | None = None,
        budget: EditBudget | None = None,
    ) -> None:
        self._client = client
        self._session = session
        self._token = token
        self.channel = channel
        self.thread_ts = thread_ts or None
        self._file_hosts = frozenset(file_hosts)
        self.edit_interval = edit_interval
        self.response_url = response_url
        #: The asker: who sees a private reply (chat.postEphemeral).
        self.user_id = user_id or None
        #: The workspace's chat.update budget, shared with every answer streaming there.
        self._budget = budget
        self._thread = thread
        #: `bot.domain.ThreadReader`: the mention replies in a thread people started before.
        self.in_existing_thread = thread is not None

    async def earlier_messages(self, limit: int) -> list[EarlierMessage]:
        return await self._thread.earlier_messages(limit) if self._thread is not None else []

    async def post(
        self, text: str, *, private: bool = False, controls: AnswerControls | None = None
    ) -> str:
        """A message in the conversation; with `private`, one only the asker sees (an
        ephemeral message: it can't be edited, so its id is "")."""
        if private and self.response_url is not None and await self._respond(text):
            return ""
        send = self._post_ephemeral if private and self.user_id else self._post
        try:
            return await send(text)
        except SlackApiError as exc:
            if exc.response.get("error") not in _NOT_IN_CHANNEL:
                raise
            if await self._join():
                return await send(text)
            log.info("Slack: not in channel %s and can't join it", self.channel)
            raise NotInChannel() from None

    async def _respond(self, text: str) -> bool:
        """Answer a slash command privately through its response_url (Slack: an ephemeral
        response, up to 5 within 30 minutes of the command; api.slack.com/interactivity/handling
        #message_responses). False when Slack refused it: the caller falls back."""
        body = {"response_type": "ephemeral", "text": to_slack(text)}
        try:
            async with self._session.post(str(self.response_url), json=body) as response:
                if response.status == 200:
                    return True
                log.info("response_url refused a reply (HTTP %s)", response.status)
        except aiohttp.ClientError as exc:
            log.warning("response_url failed: %s", type(exc).__name__)
        return False

    async def _post_ephemeral(self, text: str) -> str:
        await self._client.chat_postEphemeral(
            channel=self.channel,
            user=str(self.user_id),
            thread_ts=self.thread_ts,
            text=to_slack(text),
        )
        return ""

    async def _post(self, text: str) -> str:
        response = await self._client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=to_slack(text),
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    async def _join(self) -> bool:
        """Join a public channel the bot isn't in yet (a slash command can come from anywhere)."""
        if not self.channel.startswith("C"):
            return False
        try:
            await self._client.conversations_join(channel=self.channel)
        except SlackApiError as exc:
            log.info("could not join %s: %s", self.channel, exc.response.get("error"))
            return False
        return True

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        if self._budget is not None:
            await self._budget.take()  # busy workspace: wait, so this edit is never refused
        await self._client.chat_update(channel=self.channel, ts=message_id, text=to_slack(text))

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        try:
            await self._upload(file, comment)
        except SlackApiError as exc:
            # chat:write.public lets the bot talk in a public channel it isn't in; files don't.
            if exc.response.get("error") not in _NOT_IN_CHANNEL or not await self._join():
                raise
            await self._upload(file, comment)

    async def _upload(self, file: OutgoingFile, comment: str | None) -> None:
        await self._client.files_upload_v2(
            channel=self.channel,
            thread_ts=self.thread_ts,
            file=file.data,
            filename=file.filename,
            title=file.title or file.filename,
            initial_comment=to_slack(comment) if comment else None,
        )

    async def download(self, attachment: Attachment, max_bytes: int) -> bytes:
        """Fetch a shared file with the bot token. Slack answers a request it won't authorise with
        a 200 HTML login page, so HTML is refused like any other failure; the size cap is
        enforced while reading, whatever the headers claim."""
        url = attachment.url
        if not url or not self._may_send_token_to(url):
            raise UserError(f"I can't fetch {attachment.filename} from Slack.")
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.get(url, headers=headers) as response:
                ctype = response.headers.get("Content-Type", "").lower()
                if response.status != 200 or ctype.startswith("text/html"):
                    log.warning(
                        "download of %s refused (status %s, %s): is the files:read scope granted?",
                        attachment.filename,
                        response.status,
                        ctype or "no content type",
                    )
                    raise UserError(
                        f"Slack wouldn't let me download {attachment.filename}. "
                        "An admin may need to reinstall the app with the files:read scope."
                    )
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise UserError(_too_large(attachment, max_bytes))
                data = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise UserError(_too_large(attachment, max_bytes))
                return bytes(data)
        except aiohttp.ClientError as exc:
            log.warning("download of %s failed: %s", attachment.filename, type(exc).__name__)
            raise UserError(
                f"I couldn't download {attachment.filename}; please try again."
            ) from None

    def _may_send_token_to(self, url: str) -> bool:
        """The bot token goes only to Slack (or to the configured Web API host, in tests)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host == "slack.com" or host.endswith(".slack.com"):
            return parts.scheme == "https"
        return host in self._file_hosts


def _too_large(attachment: Attachment, limit: int) -> str:
    return f"{attachment.filename} is too large: the limit is {limit / 1024 / 1024:.0f} MB."
