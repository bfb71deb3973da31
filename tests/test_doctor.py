"""`tokbot doctor` names the exact problem and its fix (against the stand-in, real databases)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import inspect

from adapters.doctor import run_doctor
from bot.settings import Settings
from bot.store import Store
from bot.tokmodel.fake import FakeTokModel, Fault


async def doctor(settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_doctor(settings, out)
    return code, out.getvalue()


async def _migrated(settings: Settings) -> None:
    store = await Store.open(settings.database_url)
    try:
        await store.upgrade()
    finally:
        await store.close()


async def test_all_good(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    await _migrated(settings)
    code, report = await doctor(settings)
    assert code == 0, report
    assert "✓ TokModel: key accepted" in report and "all good" in report
    # (The tests' settings turn embeddings off; on, the line names the model and the index.)
    assert "✓ team memory: embeddings off (TOKBOT_EMBEDDINGS)" in report
    assert "0 row(s) queued meanwhile, embedded once it is turned on" in report
    settings = make_settings(TOKBOT_EMBEDDINGS="on")
    code, report = await doctor(settings)
    line = "✓ team memory: embeddings by openai/text-embedding-3-small; "
    assert line in report
    if settings.database_url.startswith("sqlite"):  # (the index each engine has: its tests)
        assert line + "vector index sqlite-vec 0.1.9" in report
    else:  # (pgvector where the PostgreSQL server has it: bot.store.vector_index_pg)
        assert f"{line}no vector index" in report or f"{line}pgvector 0." in report
    # It only looks: no index tables were made, no trigger dropped (`tokbot run` does that).
    store = await Store.open(settings.database_url)
    try:
        async with store.engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await store.close()
    assert not [n for n in names if n.startswith(("vec_", "tokbot_vectors_"))], names


async def test_a_wrong_key_is_named(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(TOKMODEL_API_KEY="sk-wrong-key-123456")
    await _migrated(settings)
    code, report = await doctor(settings)
    assert code == 1
    assert "✗ TokModel: the API key was rejected (401" in report and "TOKMODEL_API_KEY" in report
    assert "sk-wrong-key-123456" not in report


async def test_no_credits_is_named(
    make_settings: Callable[..., Settings], fake: FakeTokModel
) -> None:
    settings = make_settings()
    await _migrated(settings)
    fake.fail(Fault(status=403))
    code, report = await doctor(settings)
    assert code == 1 and "out of credits (403)" in report and "top up" in report


async def test_unreachable_tokmodel_and_unknown_models(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(TOKMODEL_BASE_URL="http://127.0.0.1:9", TOKBOT_CHAT_MODEL="x/y")
    await _migrated(settings)
    code, report = await doctor(settings)
    assert code == 1 and "cannot reach http://127.0.0.1:9" in report
    settings = make_settings(TOKBOT_CHAT_MODEL="openai/no-such-model")
    code, report = await doctor(settings)
    assert "TOKBOT_CHAT_MODEL=openai/no-such-model is not among" in report
    settings = make_settings(TOKBOT_CHAT_MODEL="openai/whisper-1")
    code, report = await doctor(settings)
    assert "TOKBOT_CHAT_MODEL=openai/whisper-1 is a transcription model, not a chat" in report


async def test_an_unmigrated_database_and_a_missing_key(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    code, report = await doctor(settings)
    assert code == 1 and "run `tokbot db upgrade`" in report
    settings = make_settings(TOKMODEL_API_KEY="")
    code, report = await doctor(settings)
    assert "TOKMODEL_API_KEY is not set" in report


async def test_discord_checks_against_the_fake(make_settings: Callable[..., Settings]) -> None:
    from adapters.discord.fake import FakeDiscord

    for granted in (True, False):
        discord = FakeDiscord("discord-doctor-token", grant_message_content=granted)
        await discord.start()
        try:
            base = {"DISCORD_API_BASE": discord.api_base}
            settings = make_settings(DISCORD_TOKEN="discord-doctor-token", **base)
            await _migrated(settings)
            code, report = await doctor(settings)
            assert "✓ Discord: logged in as" in report
            assert (code == 0) is granted, report
            if not granted:
                assert "Message Content Intent" in report
            code, report = await doctor(make_settings(DISCORD_TOKEN="wrong", **base))
            assert code == 1 and "bot token was rejected (401)" in report
        finally:
            await discord.stop()


def test_the_cli_runs_doctor(tmp_path: Path) -> None:
    from tests.test_cli import _tokbot

    result = _tokbot(tmp_path, "doctor")
    assert result.returncode == 1
    assert "✗ settings: TOKMODEL_API_KEY is not set" in result.stdout
    assert "run `tokbot db upgrade`" in result.stdout


async def test_slack_checks_against_the_fake(make_settings: Callable[..., Settings]) -> None:
    from adapters.slack.fake import FakeSlack

    slack = FakeSlack()
    await slack.start("127.0.0.1", 0)
    try:
        env = {"SLACK_API_URL": slack.api_url, "SLACK_SIGNING_SECRET": slack.signing_secret}
        settings = make_settings(SLACK_BOT_TOKEN=slack.bot_token, **env)
        await _migrated(settings)
        code, report = await doctor(settings)
        assert code == 0 and "✓ Slack: connected as" in report, report
        code, report = await doctor(make_settings(SLACK_BOT_TOKEN="xoxb-wrong", **env))
        assert code == 1 and "auth.test failed: invalid_auth" in report
        assert "xoxb-wrong" not in report
        code, report = await doctor(
            make_settings(SLACK_BOT_TOKEN=slack.bot_token, SLACK_API_URL=slack.api_url)
        )
        assert "neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN" in report
    finally:
        await slack.stop()


async def _gateway_without_v1beta(
    make_settings: Callable[..., Settings], key: str, missing: tuple[str, ...]
) -> tuple[int, str]:
    """A LiteLLM-like gateway: FastAPI answers its unknown routes 404 before any key check."""
    async with FakeTokModel(api_key="sk-right-key-0001", missing_routes=missing) as gateway:
        settings = make_settings(TOKMODEL_API_KEY=key, TOKMODEL_BASE_URL=gateway.url + "/v1")
        await _migrated(settings)
        return await doctor(settings)


async def test_a_gateway_without_v1beta_models_falls_back_to_v1_models(
    make_settings: Callable[..., Settings],
) -> None:
    missing = ("/v1beta",)
    code, report = await _gateway_without_v1beta(make_settings, "sk-right-key-0001", missing)
    assert code == 0, report
    assert "✓ TokModel: key accepted, 12 models available (listed at /v1/models)" in report
    code, report = await _gateway_without_v1beta(make_settings, "sk-wrong-key-0002", missing)
    assert code == 1 and "answered 404" not in report
    assert "✗ TokModel: the API key was rejected (401" in report


async def test_a_gateway_without_any_model_list_says_so(
    make_settings: Callable[..., Settings],
) -> None:
    missing = ("/v1beta", "/v1/models")
    code, report = await _gateway_without_v1beta(make_settings, "sk-right-key-0001", missing)
    assert code == 1 and "serves neither /v1beta/models nor /v1/models" in report
    assert "fix: set TOKMODEL_BASE_URL" in report
