"""RewardService on a fake backend (no Blender, no HTTP): idempotency under concurrency,
deduplication, caching policy and ordering — the logic every backend shares."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from api.cache import MemoryCache
from api.registry import TaskRegistry
from api.service import RequestConflictError, RewardService
from api.telemetry import Telemetry
from llm3d.config import load_config
from llm3d.exceptions import BackendUnavailableError, UnknownTaskError
from llm3d.schemas import ExecStatus, ReferencePayload, RewardRequest, RewardResult
from worker.scoring import ScoreJob, infra_result


class FakeBackend:
    """Scores by code: 'infra' → infra_error, anything else → ok with reward len(code)/100."""

    name = "fake"

    def __init__(self, delay: float = 0.0, fail: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.fail = fail
        self.shutdown_grace: float | None = None

    async def score_batch(
        self,
        jobs: Sequence[ScoreJob],
        progress: Callable[[int], None] | None = None,
        **_: Any,
    ) -> list[RewardResult]:
        self.calls.append([j.code for j in jobs])
        await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise BackendUnavailableError("Redis at test is unreachable")
        return [
            infra_result(j.item_id, "worker lost")
            if j.code == "infra"
            else RewardResult(id=j.item_id, status=ExecStatus.OK, reward=len(j.code) / 100)
            for j in jobs
        ]

    async def health(self) -> dict[str, Any]:
        return {}

    def begin_shutdown(self, grace_s: float) -> None:
        self.shutdown_grace = grace_s

    async def close(self) -> None:
        return None


def make(backend: FakeBackend) -> RewardService:
    tasks = TaskRegistry()
    tasks.add("t", ReferencePayload(code="from bpy_lib import *\n"), source="test")
    return RewardService(
        load_config(environ={}), backend, MemoryCache(100), tasks, Telemetry(), "test-v1"
    )


def request(*codes: str, rid: str | None = None) -> RewardRequest:
    items = [{"id": f"i{n}", "code": c, "task_id": "t"} for n, c in enumerate(codes)]
    return RewardRequest.model_validate({"request_id": rid, "items": items})


def test_concurrent_retries_of_one_request_id_score_once() -> None:
    backend = FakeBackend(delay=0.1)
    service = make(backend)

    async def go() -> list[Any]:
        req = request("a", "bb", rid="step-1")
        return list(await asyncio.gather(*(service.score(req) for _ in range(3))))

    first, second, third = asyncio.run(go())
    assert first == second == third
    assert len(backend.calls) == 1


def test_reusing_a_request_id_for_other_work_is_a_conflict() -> None:
    service = make(FakeBackend())

    async def go() -> None:
        await service.score(request("a", rid="r"))
        with pytest.raises(RequestConflictError, match="'r' was already used"):
            await service.score(request("b", rid="r"))

    asyncio.run(go())


def test_a_failed_attempt_is_not_remembered() -> None:
    backend = FakeBackend(fail=1)
    service = make(backend)

    async def go() -> list[float | None]:
        with pytest.raises(BackendUnavailableError):
            await service.score(request("abc", rid="r"))
        response = await service.score(request("abc", rid="r"))
        return [r.reward for r in response.results]

    assert asyncio.run(go()) == [0.03]
    assert len(backend.calls) == 2


def test_twins_are_scored_once_and_infra_errors_are_never_cached() -> None:
    backend = FakeBackend()
    service = make(backend)

    async def go() -> tuple[Any, Any]:
        one = await service.score(request("x", "infra", "x", "yy"))
        two = await service.score(request("infra", "x"))
        return one, two

    one, two = asyncio.run(go())
    assert backend.calls == [["x", "infra", "yy"], ["infra"]]
    assert [r.id for r in one.results] == ["i0", "i1", "i2", "i3"]
    assert [r.cached for r in one.results] == [False, False, True, False]
    assert one.results[1].reward is None and one.results[1].status is ExecStatus.INFRA_ERROR
    assert [r.cached for r in two.results] == [False, True]


def test_unknown_task_ids_are_all_named() -> None:
    service = make(FakeBackend())
    req = RewardRequest.model_validate(
        {
            "items": [
                {"id": "a", "code": "x", "task_id": "nope"},
                {"id": "b", "code": "x", "task_id": "zip"},
            ]
        }
    )
    with pytest.raises(UnknownTaskError) as info:
        asyncio.run(service.score(req))
    assert (
        "'nope'" in str(info.value) and "'zip'" in str(info.value) and "items[1]" in str(info.value)
    )


def test_after_shutdown_began_new_requests_get_503_and_the_backend_is_told() -> None:
    backend = FakeBackend()
    service = make(backend)

    async def go() -> None:
        await service.score(request("a"))
        service.begin_shutdown()
        with pytest.raises(BackendUnavailableError, match="shutting down"):
            await service.score(request("b"))

    asyncio.run(go())
    assert backend.shutdown_grace == service.config.api.shutdown_grace_s
    assert len(backend.calls) == 1
