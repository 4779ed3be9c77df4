"""RewardClient: retries only where a retry can help, idempotent request ids, clear errors.

The transport is httpx's MockTransport (the service itself is exercised over real HTTP in
tests/api/); here the point is the client's own policy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llm3d.client import AsyncRewardClient, RewardClient, build_request
from llm3d.exceptions import RewardServiceError
from llm3d.schemas import RewardRequest

ITEM = {"id": "a", "code": "from bpy_lib import *\n", "task_id": "t1"}


def _ok(request: httpx.Request) -> httpx.Response:
    body = RewardRequest.model_validate_json(request.content)
    return httpx.Response(
        200,
        json={
            "request_id": body.request_id,
            "reward_version": "test",
            "results": [
                {"id": i.id, "status": "no_geometry", "reward": 0.19, "cached": False}
                for i in body.items
            ],
        },
    )


class Recorder:
    """A MockTransport handler answering from a script of responses, recording requests."""

    def __init__(self, script: list[Callable[[httpx.Request], httpx.Response]]) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
        return step(request)


def _status(
    code: int, detail: str = "down", **headers: str
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(code, json={"detail": detail}, headers=headers)


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _client(rec: Recorder, **kw: Any) -> RewardClient:
    return RewardClient(
        "http://farm",
        transport=httpx.MockTransport(rec),
        backoff_s=0.001,
        **kw,
    )


def test_retries_5xx_and_connection_errors_with_the_same_request_id() -> None:
    rec = Recorder([_status(503), _refuse, _status(502), _ok])
    with _client(rec) as client:
        response = client.score_batch([ITEM])
    assert [r.id for r in response.results] == ["a"]
    ids = {json.loads(r.content)["request_id"] for r in rec.requests if r.content}
    assert len(rec.requests) == 4
    assert ids == {response.request_id}, "every retry must carry the same request_id"


@pytest.mark.parametrize("code", [400, 401, 404, 409, 413, 422])
def test_4xx_is_not_retried_and_names_the_problem(code: int) -> None:
    rec = Recorder([_status(code, detail="unknown task_id 't1'"), _ok])
    with _client(rec) as client, pytest.raises(RewardServiceError) as info:
        client.score_batch([ITEM])
    assert len(rec.requests) == 1
    assert info.value.status_code == code
    assert "unknown task_id 't1'" in str(info.value)
    assert "/reward/batch" in str(info.value)


def test_gives_up_after_the_retry_budget_with_the_last_error() -> None:
    rec = Recorder([_status(503, detail="Redis at x is unreachable")])
    with _client(rec, retries=2) as client, pytest.raises(RewardServiceError) as info:
        client.score_batch([ITEM])
    assert len(rec.requests) == 3
    assert "after 3 attempts" in str(info.value)
    assert "Redis at x is unreachable" in str(info.value)


def test_retry_after_header_is_honoured() -> None:
    policy = RewardClient("http://farm", backoff_s=0.001)._policy
    response = httpx.Response(503, headers={"Retry-After": "2"})
    assert policy.delay(0, response) == 2.0
    assert policy.delay(3, None) < 0.02


def test_token_is_sent_as_bearer_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec = Recorder([_ok])
    with _client(rec, token="s3cret") as client:
        client.score_batch([ITEM])
    assert rec.requests[0].headers["Authorization"] == "Bearer s3cret"
    monkeypatch.setenv("LLM3D_API_TOKEN", "from-env")
    rec2 = Recorder([_ok])
    with _client(rec2) as client:
        client.score_batch([ITEM])
    assert rec2.requests[0].headers["Authorization"] == "Bearer from-env"


def test_explicit_request_id_is_kept_and_items_are_validated_locally() -> None:
    request = build_request([ITEM], request_id="step-7")
    assert request.request_id == "step-7"
    assert build_request([ITEM]).request_id != build_request([ITEM]).request_id
    with pytest.raises(ValueError, match="exactly one of task_id or reference"):
        build_request([{"id": "a", "code": "x"}])


def test_async_client_retries_like_the_sync_one() -> None:
    rec = Recorder([_refuse, _status(504), _ok])

    async def go() -> list[str]:
        async with AsyncRewardClient(
            "http://farm", transport=httpx.MockTransport(rec), backoff_s=0.001
        ) as client:
            response = await client.score_batch([ITEM, {**ITEM, "id": "b"}])
            return [r.id for r in response.results]

    assert asyncio.run(go()) == ["a", "b"]
    assert len(rec.requests) == 3
    assert len({json.loads(r.content)["request_id"] for r in rec.requests}) == 1
