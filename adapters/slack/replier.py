"""How the core speaks in one Slack conversation: messages with chat.postMessage / chat.update in
the right channel and thread (or streamed natively: `adapters.slack.streaming`), private replies
through a command's response_url or chat.postEphemeral, files with files_upload_v2, and
downloads of shared files."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import control_blocks, message_blocks, stop_blocks
from adapters.slack.budget import EditBudget
from adapters.slack.errors import describe, error_code
from adapters.slack.streaming import SlackStream, StreamingPolicy, harmless
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
        "summarize",
        "model",
        "persona",
        "transcription",
        "usage",
        "budget",
        "memory",
        "recall",
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
STOP_OFFER = "_Writing the answer… stop it here if it's not what you need._"
#: A native stream still going this many seconds after its first words gets the asker's Stop
#: offer; one finished sooner never needed it (issue 16: one Web API call fewer per short answer).
STOP_OFFER_AFTER = 1.0
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
        append_budget: EditBudget | None = None,
        workspace: str = "",
        streaming: StreamingPolicy | None = None,
        status_shown: bool = False,
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
        #: The workspace's chat.appendStream budget, shared by every answer streaming natively.
        self._append_budget = append_budget
        self._thread = thread
        #: `bot.domain.ThreadReader`: the mention replies in a thread people started before.
        self.in_existing_thread = thread is not None
        self.workspace = workspace
        self._streaming = streaming
        # Native streams are replies in a thread (chat.startStream requires thread_ts).
        self._native = (
            streaming is not None and self.thread_ts is not None and streaming.native(workspace)
        )
        #: Whether a message everyone sees was posted (it clears the thinking status).
        self.posted = False
        self._with_blocks: set[str] = set()  # messages showing blocks (buttons) rather than text
        self._stop_offered: set[int] = set()  # answers whose asker was offered a Stop button
        # No placeholder when the answer streams natively (it starts with its first words) or
        # Slack shows the thinking status until then.
        if self._native or status_shown:
            self.stream_placeholder = None

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
            return await send(text, controls)
        except SlackApiError as exc:
            if error_code(exc) not in _NOT_IN_CHANNEL:
                raise
            if await self._join():
                return await send(text, controls)
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

    async def _post_ephemeral(self, text: str, controls: AnswerControls | None = None) -> str:
        await self._client.chat_postEphemeral(
            channel=self.channel,
            user=str(self.user_id),
            thread_ts=self.thread_ts,
            text=to_slack(text),
        )
        return ""

    async def start_stream(
        self, markdown: str, *, controls: AnswerControls | None = None
    ) -> SlackStream | None:
        """`bot.domain.NativeStreamer`: chat.startStream, or None (then the renderer posts) when
        this workspace doesn't stream natively or Slack refuses it (`StreamingPolicy.refused`).
        chat.startStream takes no blocks, so a streaming answer's Stop button is shown to the
        asker alone, as an ephemeral message in the thread."""
        policy = self._streaming
        if not self._native or policy is None or not policy.native(self.workspace):
            return None
        recipient = None
        if not self.channel.startswith("D") and self.user_id:  # required outside DMs
            recipient = (self.user_id, self.workspace)
        try:
            stream = await SlackStream.start(
                self._client,
                channel=self.channel,
                thread_ts=str(self.thread_ts),
                markdown=markdown,
                recipient=recipient,
                budget=self._append_budget,
            )
        except SlackApiError as exc:
            policy.refused(self.workspace, exc)
            return None
        if stream is not None:
            self.posted = True
            if controls is not None and controls.streaming and self.user_id:
                turn = controls.turn_id
                stream.alongside(lambda: self._offer_stop(turn), after=STOP_OFFER_AFTER)
        return stream

    async def post_whole(
        self, markdown: str, *, controls: AnswerControls | None = None
    ) -> str | None:
        """`bot.domain.NativeStreamer.post_whole`: where answers stream natively, one
        chat.postMessage with the text in a `markdown` block (Slack renders standard Markdown
        there as in a stream; docs.slack.dev/reference/block-kit/blocks/markdown-block) and the
        buttons under it, the mrkdwn text as the notification's fallback. None when answers here
        don't stream natively or Slack refused it (the caller then posts as usual)."""
        policy = self._streaming
        if not self._native or policy is None or not policy.native(self.workspace):
            return None
        blocks = [{"type": "markdown", "text": harmless(markdown, finished=True)}]
        blocks += control_blocks(controls) if controls is not None else []
        try:
            response = await self._client.chat_postMessage(
                channel=self.channel,
                thread_ts=self.thread_ts,
                text=to_slack(markdown),
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            log.info("Slack: a whole answer in a markdown block was refused (%s); posting it",
                     exc.response.get("error"))  # fmt: skip
            return None
        self.posted = True
        return str(response["ts"])

    async def _offer_stop(self, turn_id: int) -> None:
        if turn_id in self._stop_offered:
            return  # once per answer, not again for each message a long answer continues in
        self._stop_offered.add(turn_id)
        try:
            await self._client.chat_postEphemeral(
                channel=self.channel,
                user=str(self.user_id),
                thread_ts=self.thread_ts,
                text=STOP_OFFER,
                blocks=[_section(STOP_OFFER), *stop_blocks(turn_id)],
            )
        except SlackApiError as exc:
            log.info("Slack: could not offer a Stop button (%s)", describe(exc))

    async def _post(self, text: str, controls: AnswerControls | None = None) -> str:
        mrkdwn = to_slack(text)
        response = await self._client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=mrkdwn,
            blocks=message_blocks(mrkdwn, controls) if controls is not None else None,
            unfurl_links=False,
            unfurl_media=False,
        )
        self.posted = True
        if controls is not None:
            self._with_blocks.add(str(response["ts"]))
        return str(response["ts"])

    async def _join(self) -> bool:
        """Join a public channel the bot isn't in yet (a slash command can come from anywhere)."""
        if not self.channel.startswith("C"):
            return False
        try:
            await self._client.conversations_join(channel=self.channel)
        except SlackApiError as exc:
            log.info("could not join %s: %s", self.channel, describe(exc))
            return False
        return True

    async def edit(
        self, message_id: str, text: str, *, controls: AnswerControls | None = None
    ) -> None:
        if self._budget is not None:
            await self._budget.take()  # busy workspace: wait, so this edit is never refused
        mrkdwn, blocks = to_slack(text), None
        if controls is not None or message_id in self._with_blocks:
            # Blocks, once there, are what Slack shows: the text goes in them too (and an edit
            # without controls takes the buttons away, keeping the text).
            blocks = message_blocks(mrkdwn, controls)
            self._with_blocks.add(message_id)
        await self._client.chat_update(
            channel=self.channel, ts=message_id, text=mrkdwn, blocks=blocks
        )

    async def upload(self, file: OutgoingFile, comment: str | None = None) -> None:
        try:
            await self._upload(file, comment)
        except SlackApiError as exc:
            # chat:write.public lets the bot talk in a public channel it isn't in; files don't.
            if error_code(exc) not in _NOT_IN_CHANNEL or not await self._join():
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
        a 200 HTML sign-in page (`_sign_in_page` tells it from a shared HTML file); the size cap
        is enforced while reading, whatever the headers claim."""
        url = attachment.url
        if not url or not self._may_send_token_to(url):
            raise UserError(f"I can't fetch {attachment.filename} from Slack.")
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.get(url, headers=headers) as response:
                if response.status != 200 or _sign_in_page(response, attachment):
                    raise _refused(attachment, response)
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise UserError(_too_large(attachment, max_bytes))
                data = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise UserError(_too_large(attachment, max_bytes))
                if _html(attachment.content_type) and _not_the_file(data, attachment):
                    raise _refused(attachment, response)
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


def _sign_in_page(response: aiohttp.ClientResponse, attachment: Attachment) -> bool:
    """Slack's sign-in page instead of the file: HTML for a file that isn't HTML (the file
    object's `mimetype` says what the file is), or HTML reached by a redirect away from the
    file's path (to the workspace's `/?redir=…`)."""
    if not _html(response.headers.get("Content-Type")):
        return False
    if not _html(attachment.content_type):
        return True
    return bool(response.history) and response.url.path != response.history[0].url.path


def _html(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind in ("text/html", "application/xhtml+xml")


def _not_the_file(data: bytearray, attachment: Attachment) -> bool:
    """A shared HTML file and the sign-in page are both HTML; the file object's `size` (bytes)
    tells them apart when the page comes without a redirect."""
    return attachment.size is not None and len(data) != attachment.size


def _refused(attachment: Attachment, response: aiohttp.ClientResponse) -> UserError:
    log.warning(
        "download of %s refused (status %s, %s%s): is the files:read scope granted?",
        attachment.filename,
        response.status,
        response.headers.get("Content-Type", "no content type"),
        ", redirected" if response.history else "",
    )
    return UserError(
        f"Slack wouldn't let me download {attachment.filename}. "
        "An admin may need to reinstall the app with the files:read scope."
    )


def _section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _too_large(attachment: Attachment, limit: int) -> str:
    return f"{attachment.filename} is too large: the limit is {limit / 1024 / 1024:.0f} MB."
