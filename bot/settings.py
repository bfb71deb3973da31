"""Settings, read once at start-up into a frozen object (environment variables or `.env`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from bot.store.urls import async_database_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tokbot.db"


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the variable."""


class Settings(BaseSettings):
    """Every setting tokbot reads. Field names map to the variables documented in the README."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # TokModel
    tokmodel_api_key: SecretStr | None = Field(default=None, alias="TOKMODEL_API_KEY")
    tokmodel_base_url: str = Field(default="https://tokmodel.com", alias="TOKMODEL_BASE_URL")
    tokmodel_timeout: float = Field(default=60.0, alias="TOKBOT_TOKMODEL_TIMEOUT", gt=0)
    tokmodel_max_retries: int = Field(default=3, alias="TOKBOT_TOKMODEL_MAX_RETRIES", ge=0)
    tokmodel_retry_budget: float = Field(default=20.0, alias="TOKBOT_TOKMODEL_RETRY_BUDGET", ge=0)

    # storage
    database_url: str = Field(default=DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    #: `tokbot run` retries a database that refuses connections (still starting) this long.
    database_wait_seconds: float = Field(default=30.0, alias="TOKBOT_DATABASE_WAIT_SECONDS", ge=0)

    # models
    chat_model: str = Field(default="openai/gpt-4o-mini", alias="TOKBOT_CHAT_MODEL")
    image_model: str = Field(default="openai/dall-e-3", alias="TOKBOT_IMAGE_MODEL")
    image_size: str = Field(default="1024x1024", alias="TOKBOT_IMAGE_SIZE")
    tts_model: str = Field(default="openai/tts-1", alias="TOKBOT_TTS_MODEL")
    tts_voice: str = Field(default="alloy", alias="TOKBOT_TTS_VOICE")
    transcribe_model: str = Field(default="openai/whisper-1", alias="TOKBOT_TRANSCRIBE_MODEL")
    #: Asked once more when the channel's model refuses pictures in a question.
    vision_model: str = Field(default="openai/gpt-4o-mini", alias="TOKBOT_VISION_MODEL")

    # conversation policy and limits
    context_budget_tokens: int = Field(default=6000, alias="TOKBOT_CONTEXT_BUDGET_TOKENS", gt=0)
    max_prompt_chars: int = Field(default=8000, alias="TOKBOT_MAX_PROMPT_CHARS", gt=0)
    max_tts_chars: int = Field(default=4096, alias="TOKBOT_MAX_TTS_CHARS", gt=0)
    max_audio_bytes: int = Field(default=25 * 1024 * 1024, alias="TOKBOT_MAX_AUDIO_BYTES", gt=0)
    max_image_bytes: int = Field(default=4 * 1024 * 1024, alias="TOKBOT_MAX_IMAGE_BYTES", gt=0)
    #: Characters of attached files (text, PDF pages) put into one question, all files together.
    max_file_chars: int = Field(default=60_000, alias="TOKBOT_MAX_FILE_CHARS", gt=0)
    #: Largest attached file downloaded to be read (a bigger one gets a line saying so).
    max_file_bytes: int = Field(default=20 * 1024 * 1024, alias="TOKBOT_MAX_FILE_BYTES", gt=0)
    # pictures in questions
    max_vision_image_bytes: int = Field(
        default=8 * 1024 * 1024, alias="TOKBOT_MAX_VISION_IMAGE_BYTES", gt=0
    )
    max_images_per_question: int = Field(default=4, alias="TOKBOT_MAX_IMAGES_PER_QUESTION", gt=0)
    #: The pictures of this many of the newest turns with pictures are sent again (0: none).
    vision_history_images: int = Field(default=3, alias="TOKBOT_VISION_HISTORY_IMAGES", ge=0)
    #: Bytes of question pictures kept in the database for follow-ups (oldest dropped first).
    image_cache_bytes: int = Field(
        default=256 * 1024 * 1024, alias="TOKBOT_IMAGE_CACHE_BYTES", ge=0
    )
    rate_limit_per_minute: int = Field(default=20, alias="TOKBOT_RATE_LIMIT_PER_MINUTE", ge=0)
    stream_edit_interval: float = Field(default=1.0, alias="TOKBOT_STREAM_EDIT_INTERVAL", ge=0)
    #: TokModel commands one process runs at once; the rest wait in arrival order, told so.
    max_answers_in_flight: int = Field(default=1000, alias="TOKBOT_MAX_ANSWERS_IN_FLIGHT", gt=0)
    #: Bytes of downloaded attachments (audio, images) held in memory at once, all commands.
    max_download_bytes_in_flight: int = Field(
        default=128 * 1024 * 1024, alias="TOKBOT_MAX_DOWNLOAD_BYTES_IN_FLIGHT", gt=0
    )
    #: A PENDING answer older than this is taken as cut off by a crash and marked interrupted
    #: (at start-up, then every half of it). 0: all of them at start-up, right for one process;
    #: with replicas set it above the longest answer, so live answers of others are left alone.
    stale_answer_seconds: float = Field(default=0.0, alias="TOKBOT_STALE_ANSWER_SECONDS", ge=0)
    admin_user_ids: str = Field(default="", alias="TOKBOT_ADMIN_USER_IDS")
    #: Where admin alerts go instead of DMs: channel ids, comma-separated (see alert_channels).
    alert_channel: str = Field(default="", alias="TOKBOT_ALERT_CHANNEL")
    #: A process silent this long is taken as dead: another (or its restart) answers the events
    #: it acknowledged but never answered. It says it is alive every fifth of this.
    process_lease_seconds: float = Field(default=15.0, alias="TOKBOT_PROCESS_LEASE_SECONDS", gt=0)
    #: How often answered event ids older than a week are forgotten, while running.
    prune_interval_seconds: float = Field(
        default=600.0, alias="TOKBOT_PRUNE_INTERVAL_SECONDS", gt=0
    )
    #: At shutdown, answers in flight get this long (one deadline for the whole process), then
    #: are cut off. Docker kills 10 s after SIGTERM; the cut-off marks take up to 2 s more.
    drain_seconds: float = Field(default=7.0, alias="TOKBOT_DRAIN_SECONDS", ge=0)
    #: `tokbot run`'s worker processes (`--workers` overrides it); None: the default for the
    #: database (see `default_workers`).
    workers: int | None = Field(default=None, alias="TOKBOT_WORKERS", gt=0)

    # team memory
    #: TokModel's rerank model, which orders what `/recall` and answers find.
    rerank_model: str = Field(default="cohere/rerank-english-v3.0", alias="TOKBOT_RERANK_MODEL")
    #: Candidates the full-text index gives a recall (of observed messages, and of turns).
    memory_candidates: int = Field(default=30, alias="TOKBOT_MEMORY_CANDIDATES", gt=0, le=500)
    #: Recalled messages `/recall` shows and an answer is given.
    memory_recalled: int = Field(default=5, alias="TOKBOT_MEMORY_RECALLED", gt=0, le=50)
    #: Whether kept messages and people's turns are embedded (in the background) and recall
    #: orders its candidates by their vectors too; "off": full-text candidates only.
    embeddings: Literal["on", "off"] = Field(default="on", alias="TOKBOT_EMBEDDINGS")
    embedding_model: str = Field(
        default="openai/text-embedding-3-small", alias="TOKBOT_EMBEDDING_MODEL"
    )
    #: Floats per vector asked of the model (text-embedding-3 shortens its own); 0: the
    #: model's own length, not asked.
    embedding_dimensions: int = Field(
        default=256, alias="TOKBOT_EMBEDDING_DIMENSIONS", ge=0, le=8192
    )
    #: SQLite's vector index (sqlite-vec) searches each channel's newest this many vectors (its
    #: cost grows with it: bench/memory_figures.py); older messages are found by full text.
    vector_window: int = Field(default=8_192, alias="TOKBOT_VECTOR_WINDOW", ge=1024, le=1_000_000)
    #: Texts per background `/v1/embeddings` request.
    embedding_batch: int = Field(default=64, alias="TOKBOT_EMBEDDING_BATCH", gt=0, le=2048)

    # Slack
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    #: chat.update calls a workspace allows a minute (Slack's Tier 3: 50); 0: no budget.
    slack_edits_per_minute: int = Field(default=50, alias="TOKBOT_SLACK_EDITS_PER_MINUTE", ge=0)
    #: How answers stream on Slack: `native` (chat.startStream/appendStream/stopStream), `update`
    #: (post, then chat.update), `auto` (native; a workspace that refuses it falls back to update).
    slack_streaming: Literal["native", "update", "auto"] = Field(
        default="auto", alias="TOKBOT_SLACK_STREAMING"
    )

    # Discord
    discord_token: SecretStr | None = Field(default=None, alias="DISCORD_TOKEN")
    discord_api_base: str | None = Field(default=None, alias="DISCORD_API_BASE")
    discord_gateway_url: str | None = Field(default=None, alias="DISCORD_GATEWAY_URL")
    discord_dev_guild_id: int | None = Field(default=None, alias="DISCORD_DEV_GUILD_ID")
    discord_shard_count: int | None = Field(default=None, alias="DISCORD_SHARD_COUNT", gt=0)
    discord_shard_ids: str = Field(default="", alias="DISCORD_SHARD_IDS")
    discord_admin_role_ids: str = Field(default="", alias="DISCORD_ADMIN_ROLE_IDS")

    # the web server (Slack HTTP mode, /healthz)
    http_host: str = Field(default="0.0.0.0", alias="TOKBOT_HTTP_HOST")
    http_port: int = Field(default=3000, alias="TOKBOT_HTTP_PORT", ge=0, le=65535)

    # the admin page (/admin): off unless a password is set
    admin_password: SecretStr | None = Field(default=None, alias="TOKBOT_ADMIN_PASSWORD")
    #: Mark the session cookie Secure: "auto" when the request came over https (directly or
    #: as X-Forwarded-Proto says), "always", or "never".
    admin_secure_cookie: Literal["auto", "always", "never"] = Field(
        default="auto", alias="TOKBOT_ADMIN_SECURE_COOKIE"
    )
    #: After 10 wrong passwords in a row from one address (or 200 from anywhere), logins from
    #: it (or from anywhere) are refused this long (on every replica).
    admin_lockout_minutes: float = Field(default=15.0, alias="TOKBOT_ADMIN_LOCKOUT_MINUTES", gt=0)
    #: How many proxies in front of tokbot append to X-Forwarded-For (0: none, the peer is the
    #: client): the lock-out counts the address the nearest one saw, not what a client wrote.
    admin_proxy_hops: int = Field(default=0, alias="TOKBOT_ADMIN_PROXY_HOPS", ge=0)

    # console adapter
    output_dir: Path = Field(default=Path("tokbot-output"), alias="TOKBOT_OUTPUT_DIR")

    # logging
    log_level: str = Field(default="INFO", alias="TOKBOT_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field(default="text", alias="TOKBOT_LOG_FORMAT")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return async_database_url(value)

    @field_validator("tokmodel_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("admin_password")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        secret = value.get_secret_value()
        if secret.startswith("scrypt:"):
            parts = secret.split(":")
            if len(parts) != 6 or not all(part.isdigit() for part in parts[1:4]):
                raise ValueError(
                    "a hashed admin password is scrypt:N:r:p:salt:hash, as printed by "
                    "`tokbot admin-password`"
                )
        elif len(secret) < 12:
            raise ValueError(
                "the admin password needs at least 12 characters (or use the hashed form "
                "`tokbot admin-password` prints)"
            )
        return value

    @property
    def admin_page_enabled(self) -> bool:
        return self.admin_password is not None

    @property
    def admin_ids(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.admin_user_ids.split(",") if part.strip())

    def alert_channels(self, platform: str) -> list[str]:
        """TOKBOT_ALERT_CHANNEL's channels on `platform`: `slack:C0123` or `discord:1234…`; a
        bare id is Discord's when it is all digits (a snowflake), else Slack's."""
        found = []
        for part in (p.strip() for p in self.alert_channel.split(",")):
            named, _, channel = part.rpartition(":")
            if not channel:
                continue
            owner = named.lower() or ("discord" if channel.isdigit() else "slack")
            if owner == platform:
                found.append(channel)
        return found

    @property
    def has_api_key(self) -> bool:
        return self.tokmodel_api_key is not None and bool(self.tokmodel_api_key.get_secret_value())

    def api_key(self) -> str:
        """The TokModel key, or a SettingsError that names the variable."""
        if self.tokmodel_api_key is None or not self.has_api_key:
            raise SettingsError(
                "TOKMODEL_API_KEY is not set: create a key in the TokModel console "
                "(API Keys → Create key) and put it in the environment or in .env"
            )
        return self.tokmodel_api_key.get_secret_value()

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or a reply."""
        values = (
            self.tokmodel_api_key,
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.discord_token,
            self.admin_password,
        )
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        return found + database_passwords(self.database_url)

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None

    @property
    def discord_enabled(self) -> bool:
        return self.discord_token is not None

    @property
    def discord_shards(self) -> list[int] | None:
        """Shard ids this process runs (DISCORD_SHARD_IDS, comma-separated), or None for all."""
        ids = [int(p) for p in self.discord_shard_ids.replace(" ", "").split(",") if p]
        return ids or None


def database_passwords(url: str) -> list[str]:
    """DATABASE_URL's password as written (percent-encoded or not) and decoded."""
    try:
        password = make_url(url).password
    except Exception:  # not a URL: the store says so; nothing to hide
        return []
    if not password:
        return []
    written = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
    return [p for p in {str(password), written} if p]


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | None = ".env"
) -> Settings:
    """Build Settings from the process environment and `.env`, or from `environ` alone (tests)."""
    try:
        if environ is None:
            return Settings(_env_file=env_file)  # type: ignore[call-arg]
        return Settings.model_validate(dict(environ))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err.get("loc", ())) or "setting"
            # A validator's own message is the whole story: drop pydantic's prefix.
            problems.append(f"{name}: {err.get('msg', '').removeprefix('Value error, ')}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
