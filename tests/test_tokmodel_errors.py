"""Error bodies of TokModel and of other OpenAI-compatible gateways, read by the real client over
loopback, and the one line people see for each (items 14 and 18 of issue 11)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from bot.tokmodel import BadRequest, InsufficientCredits, NotFound, TokModelClient
from bot.tokmodel.errors import ErrorBody, parse_error_body
from bot.wording import describe_tokmodel_error
from tests.test_tokmodel_client import HELLO, KEY, MODEL, serve


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # TokModel's documented shape: `code` echoes the status as an integer.
        (
            {"error": {"message": "Invalid or missing API key.", "type": "authentication_error",
                       "code": 401}},
            ErrorBody("Invalid or missing API key.", "authentication_error"),
        ),
        # OpenAI's shape (openai-python's APIError reads message/type/code/param from it).
        (
            {"error": {"message": "The model `x` does not exist", "type": "invalid_request_error",
                       "param": None, "code": "model_not_found"}},
            ErrorBody("The model `x` does not exist", "invalid_request_error", "model_not_found"),
        ),
        # LiteLLM sends the status as a string code: it says nothing new.
        ({"error": {"message": "boom", "type": None, "code": "500"}}, ErrorBody("boom")),
        # FastAPI's default for an unknown route, as LiteLLM serves it.
        ({"detail": "Not Found"}, ErrorBody("Not Found")),
        # FastAPI's 422 validation list.
        (
            {"detail": [{"loc": ["body", "model"], "msg": "field required",
                         "type": "value_error.missing"}]},
            ErrorBody("model: field required", param="model"),
        ),
        ({"error": "plain words"}, ErrorBody("plain words")),
        ({"message": "top-level"}, ErrorBody("top-level")),
        (["not", "an", "object"], ErrorBody()),
    ],
)  # fmt: skip
def test_parse_error_body_reads_every_shape(body: Any, expected: ErrorBody) -> None:
    assert parse_error_body(json.dumps(body).encode()) == expected


def _answer(status: int, body: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    return handler


async def test_fastapi_404_for_a_missing_route_names_the_path() -> None:
    routes = {"/v1/chat/completions": _answer(404, {"detail": "Not Found"})}
    async with serve(routes) as url, TokModelClient(url, KEY, max_retries=0) as client:
        with pytest.raises(NotFound) as info:
            await client.chat(HELLO, MODEL)
    exc = info.value
    assert exc.message == "Not Found" and exc.path == "/v1/chat/completions"
    assert not exc.is_about_model(MODEL)
    said = describe_tokmodel_error(exc, model=MODEL)
    assert "doesn't know the model" not in said
    assert said == "❓ TokModel couldn't find `/v1/chat/completions`: Not Found"


async def test_model_not_found_code_blames_the_model_even_without_its_name() -> None:
    body = {"error": {"message": "No such thing.", "type": "invalid_request_error",
                      "param": None, "code": "model_not_found"}}  # fmt: skip
    async with serve({"/v1/chat/completions": _answer(404, body)}) as url:
        async with TokModelClient(url, KEY, max_retries=0) as client:
            with pytest.raises(NotFound) as info:
                await client.chat(HELLO, "someone/else")
    assert info.value.code == "model_not_found"
    assert "doesn't know the model `someone/else`" in describe_tokmodel_error(
        info.value, model="someone/else"
    )


async def test_a_400_with_model_not_found_blames_the_model() -> None:
    body = {"error": {"message": "Invalid model name passed in model=x", "type": None,
                      "code": "model_not_found"}}  # fmt: skip
    async with serve({"/v1/chat/completions": _answer(400, body)}) as url:
        async with TokModelClient(url, KEY, max_retries=0) as client:
            with pytest.raises(BadRequest) as info:
                await client.chat(HELLO, "x/y")
    assert "doesn't know the model `x/y`" in describe_tokmodel_error(info.value, model="x/y")


async def test_fastapi_validation_list_is_one_line() -> None:
    body = {"detail": [{"loc": ["body", "messages", 0, "content"], "msg": "field required",
                        "type": "missing"}]}  # fmt: skip
    async with serve({"/v1/chat/completions": _answer(422, body)}) as url:
        async with TokModelClient(url, KEY, max_retries=0) as client:
            with pytest.raises(BadRequest) as info:
                await client.chat(HELLO, MODEL)
    said = describe_tokmodel_error(info.value, model=MODEL)
    assert said.endswith("messages.0.content: field required") and "\n" not in said


async def test_insufficient_quota_429_is_out_of_credits_and_not_retried() -> None:
    """OpenAI answers 429 with code "insufficient_quota" when the account cannot pay."""
    calls = 0
    body = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                      "param": None, "code": "insufficient_quota"}}  # fmt: skip

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response(body, status=429)

    async with serve({"/v1/chat/completions": handler}) as url:
        async with TokModelClient(url, KEY, max_retries=3, backoff_base=0.01) as client:
            with pytest.raises(InsufficientCredits):
                await client.chat(HELLO, MODEL)
    assert calls == 1
