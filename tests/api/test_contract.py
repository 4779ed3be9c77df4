"""The reward API's contract, on a fake backend (no Blender): what it refuses and how.

Each error body is validated against what ``/openapi.json`` declares for that route and
status; texts no program should be able to break the JSON of (lone surrogates) are pushed
through every endpoint; task ids are never silently replaced; limits name themselves.
The real service (uvicorn, Blender) is exercised in test_reward_api.py and test_hardening.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from llm3d.config import Config, load_config
from llm3d.exceptions import BackendUnavailableError
from llm3d.schemas import ExecStatus, RewardResult
from worker.scoring import ScoreJob
from worker.selection import CandidateOutcome, SelectJob

TOKEN = "contract-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOX = "from bpy_lib import *\nbox(size=[1, 1, 1])\nexport_scene()\n"
SURROGATE = "\ud800"


class FakeBackend:
    """Scores by code: ``down`` → 503, ``odd`` → an error holding a lone surrogate."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    async def score_batch(
        self,
        jobs: Sequence[ScoreJob],
        progress: Callable[[int], None] | None = None,
        **_: Any,
    ) -> list[RewardResult]:
        self.calls += 1
        if any(j.code == "down" for j in jobs):
            raise BackendUnavailableError("Redis at test is unreachable")
        out = []
        for job in jobs:
            odd = job.code.startswith("odd")
            out.append(
                RewardResult(
                    id=job.item_id,
                    status=ExecStatus.EXEC_FAILED if odd else ExecStatus.OK,
                    reward=0.05 if odd else 1.0,
                    error=f"ValueError: {SURROGATE} at line 1 {job.code}" if odd else None,
                )
            )
        return out

    async def select_batch(
        self,
        jobs: Sequence[SelectJob],
        progress: Callable[[int], None] | None = None,
        **_: Any,
    ) -> list[RewardResult]:
        """Matches by program length; ``odd`` programs fail with a lone surrogate."""
        self.calls += 1
        self.selected = [*getattr(self, "selected", []), *(j.code for j in jobs)]
        return [
            CandidateOutcome(ExecStatus.EXEC_FAILED, error=f"odd {SURROGATE}").to_result(j.item_id)
            if "odd" in j.code
            else CandidateOutcome(ExecStatus.OK, score=min(1.0, len(j.code) / 100)).to_result(
                j.item_id
            )
            for j in jobs
        ]

    async def health(self) -> dict[str, Any]:
        return {"backend": self.name, "note": f"odd {SURROGATE}"}

    def begin_shutdown(self, grace_s: float) -> None:
        return None

    async def close(self) -> None:
        return None


def make_config(**overrides: Any) -> Config:
    return load_config(
        environ={},
        api__token=TOKEN,
        api__max_items=5,
        api__max_request_mb=0.5,
        executor__timeout_s=30,
        executor__max_code_bytes=4096,
        **overrides,
    )


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(make_config(), backend_factory=lambda _: FakeBackend())
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http


def item(code: str = BOX, **kw: Any) -> dict[str, Any]:
    return {"id": kw.pop("id", "a"), "code": code, "reference": {"code": BOX}, **kw}


# -- the OpenAPI document is what the service answers -----------------------------------


def declared_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    responses = spec["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answers {status}, /openapi.json omits it"
    content = responses[str(status)]["content"]["application/json"]
    return {**content["schema"], "components": spec["components"]}


def conforms(spec: dict[str, Any], path: str, method: str, response: Any) -> None:
    schema = declared_schema(spec, path, method, response.status_code)
    jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)


def test_every_error_body_matches_the_openapi_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    batch, tasks = "/reward/batch", "/tasks"
    cases: list[tuple[str, str, int, Callable[[], Any]]] = [
        (batch, "POST", 401, lambda: client.post(batch, json={"items": [item()]})),
        (batch, "POST", 422, lambda: client.post(batch, content=b"{nope", headers=AUTH)),
        (batch, "POST", 422, lambda: client.post(batch, json={"items": []}, headers=AUTH)),
        (
            batch,
            "POST",
            422,
            lambda: client.post(batch, json={"items": [{"id": "a"}]}, headers=AUTH),
        ),
        (
            batch,
            "POST",
            422,
            lambda: client.post(batch, json={"request_id": "", "items": [item()]}, headers=AUTH),
        ),
        (
            batch,
            "POST",
            422,
            lambda: client.post(batch, json={"items": [item("#" * 5000)]}, headers=AUTH),
        ),
        (
            batch,
            "POST",
            422,
            lambda: client.post(
                batch, json={"items": [{"id": "a", "code": BOX, "task_id": "nope"}]}, headers=AUTH
            ),
        ),
        (
            batch,
            "POST",
            413,
            lambda: client.post(
                batch, json={"items": [item(id=str(i)) for i in range(6)]}, headers=AUTH
            ),
        ),
        (
            batch,
            "POST",
            413,
            lambda: client.post(batch, json={"items": [item("#" * 600_000)]}, headers=AUTH),
        ),
        (
            batch,
            "POST",
            503,
            lambda: client.post(batch, json={"items": [item("down")]}, headers=AUTH),
        ),
        (
            "/reward/jobs/{job_id}",
            "GET",
            404,
            lambda: client.get("/reward/jobs/nope", headers=AUTH),
        ),
        (tasks, "GET", 401, lambda: client.get(tasks)),
        (
            tasks,
            "POST",
            422,
            lambda: client.post(tasks, json={"task_id": "a b", "reference": {}}, headers=AUTH),
        ),
        ("/healthz", "GET", 200, lambda: client.get("/healthz")),
    ]
    for path, method, status, call in cases:
        response = call()
        assert response.status_code == status, (path, status, response.text)
        conforms(spec, path, method, response)
        if status >= 400:
            assert response.json()["detail"], "every error says what was wrong"
    # a 409 from each of its two causes
    body = {"request_id": "step-1", "items": [item()]}
    assert client.post(batch, json=body, headers=AUTH).status_code == 200
    conflict = client.post(batch, json={**body, "items": [item("#x\n" + BOX)]}, headers=AUTH)
    assert conflict.status_code == 409
    conforms(spec, batch, "POST", conflict)
    client.post(tasks, json={"task_id": "t", "reference": {"code": BOX}}, headers=AUTH)
    other = client.post(
        tasks, json={"task_id": "t", "reference": {"code": "#\n" + BOX}}, headers=AUTH
    )
    assert other.status_code == 409
    conforms(spec, tasks, "POST", other)


def test_no_route_declares_fastapis_own_validation_error() -> None:
    spec = create_app(make_config(), backend_factory=lambda _: FakeBackend()).openapi()
    assert "HTTPValidationError" not in json.dumps(spec)
    assert "ErrorResponse" in spec["components"]["schemas"]


# -- limits ------------------------------------------------------------------------------


def test_a_program_over_the_code_limit_is_a_422_naming_the_item_and_the_limit(
    client: TestClient,
) -> None:
    big = BOX + "#" * 5000
    items = [
        item(id="fine"),
        item(big, id="huge"),
        {**item(id="bigref"), "reference": {"code": big}},
    ]
    response = client.post("/reward/batch", json={"items": items}, headers=AUTH)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "'huge'" in detail and "items[1].code" in detail
    assert "items[2].reference.code" in detail and "'fine'" not in detail
    assert "4,096 bytes" in detail and "executor.max_code_bytes" in detail
    assert [e["loc"] for e in response.json()["errors"]] == [
        ["body", "items", 1, "code"],
        ["body", "items", 2, "reference", "code"],
    ]
    task = client.post("/tasks", json={"task_id": "big", "reference": {"code": big}}, headers=AUTH)
    assert task.status_code == 422 and "executor.max_code_bytes" in task.json()["detail"]
    job = client.post("/reward/jobs", json={"items": [item(big)]}, headers=AUTH)
    assert job.status_code == 422


def test_timeout_over_the_executor_maximum_is_a_422_naming_the_cap(client: TestClient) -> None:
    for path in ("/reward/batch", "/reward/jobs"):
        response = client.post(path, json={"timeout_s": 3600, "items": [item()]}, headers=AUTH)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "timeout_s" in detail and "30 s" in detail and "executor.timeout_s" in detail
    at_cap = client.post("/reward/batch", json={"timeout_s": 30, "items": [item()]}, headers=AUTH)
    assert at_cap.status_code == 200


@pytest.mark.parametrize("rid", ["", " ", "a b", "step\n1", "x" * 257, SURROGATE, "é"])
def test_request_id_must_be_visible_ascii(client: TestClient, rid: str) -> None:
    body = json.dumps({"request_id": rid, "items": [item()]})
    response = client.post(
        "/reward/batch", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "request_id" in response.json()["detail"]


def test_a_well_formed_request_id_is_echoed(client: TestClient) -> None:
    rid = "step-12/rank-3:" + "x" * 200
    response = client.post(
        "/reward/batch", json={"request_id": rid, "items": [item()]}, headers=AUTH
    )
    assert response.status_code == 200 and response.json()["request_id"] == rid


# -- tasks are never silently replaced ---------------------------------------------------


def test_a_known_task_id_is_a_409_unless_replace(client: TestClient) -> None:
    def post(reference: str, **kw: Any) -> Any:
        body = {"task_id": "cube", "reference": {"code": reference}, **kw}
        return client.post("/tasks", json=body, headers=AUTH)

    def key() -> str:
        listed = client.get("/tasks", headers=AUTH).json()["tasks"]
        return str(next(t["key"] for t in listed if t["task_id"] == "cube"))

    created = post(BOX, meta={"n": 1})
    assert created.status_code == 201, created.text
    original = key()
    again = post(BOX, meta={"n": 2})
    assert again.status_code == 200, "the same content again is an idempotent success"
    assert again.json()["meta"] == {"n": 1} and key() == original, "and changes nothing"
    other = BOX.replace("[1, 1, 1]", "[2, 1, 1]")
    conflict = post(other)
    assert conflict.status_code == 409
    assert "replace: true" in conflict.json()["detail"] and "'cube'" in conflict.json()["detail"]
    assert key() == original, "the ground truth was not replaced"
    replaced = post(other, replace=True)
    assert replaced.status_code == 200 and key() != original


# -- text that cannot be encoded never makes a 500 --------------------------------------


def test_lone_surrogates_in_outputs_never_make_a_500(client: TestClient) -> None:
    body = {"items": [item("odd one"), item(BOX, id="b")]}
    for attempt in ("scored", "cached"):
        response = client.post("/reward/batch", json=body, headers=AUTH)
        assert response.status_code == 200, (attempt, response.text)
        odd, fine = response.json()["results"]
        assert odd["error"].startswith("ValueError: \ufffd at line 1"), attempt
        assert fine["status"] == "ok" and fine["reward"] == 1.0, "the neighbour is unharmed"
    assert response.json()["results"][0]["cached"]
    job = client.post("/reward/jobs", json={"items": [item("odd two")]}, headers=AUTH).json()
    state = client.get(job["url"], headers=AUTH)
    for _ in range(200):
        if state.json()["state"] in {"done", "failed"}:
            break
        state = client.get(job["url"], headers=AUTH)
    assert state.status_code == 200 and state.json()["state"] == "done", state.text
    assert "\ufffd" in state.json()["response"]["results"][0]["error"]
    assert client.get("/healthz").status_code == 200


def test_a_lone_surrogate_in_task_meta_never_breaks_get_tasks(client: TestClient) -> None:
    body = json.dumps({"task_id": "m", "reference": {"code": BOX}, "meta": {"k\ud800": ["\udfff"]}})
    created = client.post(
        "/tasks", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert created.status_code == 201, created.text
    for _ in range(2):
        listed = client.get("/tasks", headers=AUTH)
        assert listed.status_code == 200, listed.text
        (meta,) = [t["meta"] for t in listed.json()["tasks"]]
        ((key, value),) = meta.items()
        assert key.startswith("k") and set(key[1:]) == {"\ufffd"} and value == ["\ufffd"]


@pytest.mark.parametrize("bad", ["a\ud800", "a\nb", "\x1b[31m"])
def test_an_item_id_must_be_printable_text(client: TestClient, bad: str) -> None:
    body = json.dumps({"items": [{"id": bad, "code": BOX, "reference": {"code": BOX}}]})
    response = client.post(
        "/reward/batch", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422 and "items[0].id" in response.json()["detail"]


# -- /metrics ----------------------------------------------------------------------------


@pytest.mark.parametrize("required", [False, True])
def test_metrics_can_require_the_token(required: bool) -> None:
    config = make_config(api__metrics_require_token=required)
    with TestClient(create_app(config, backend_factory=lambda _: FakeBackend())) as http:
        anonymous = http.get("/metrics")
        with_token = http.get("/metrics", headers=AUTH)
    assert with_token.status_code == 200 and "llm3d_http_requests_total" in with_token.text
    assert anonymous.status_code == (401 if required else 200)
    if required:
        assert "LLM3D_API_TOKEN" in anonymous.json()["detail"]


# -- a caller that goes away -------------------------------------------------------------


def test_work_is_cancelled_when_every_caller_of_a_request_id_went_away() -> None:
    """Two callers of one request_id share one scoring; it stops only when both left."""
    from api.cache import MemoryCache
    from api.registry import TaskRegistry
    from api.service import RewardService
    from api.telemetry import Telemetry
    from llm3d.schemas import RewardRequest

    started, cancelled = asyncio.Event(), asyncio.Event()

    class Slow(FakeBackend):
        async def score_batch(
            self,
            jobs: Sequence[ScoreJob],
            progress: Callable[[int], None] | None = None,
            **_: Any,
        ) -> list[RewardResult]:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return []

    async def go() -> None:
        service = RewardService(
            make_config(), Slow(), MemoryCache(10), TaskRegistry(), Telemetry(), "v"
        )
        request = RewardRequest.model_validate({"request_id": "r", "items": [item()]})
        first = asyncio.ensure_future(service.score(request))
        second = asyncio.ensure_future(service.score(request))
        await started.wait()
        first.cancel()
        for _ in range(20):  # let the first caller's cancellation run its course
            await asyncio.sleep(0)
        assert not cancelled.is_set(), "the second caller still waits for the answer"
        second.cancel()
        await asyncio.wait_for(cancelled.wait(), 5)
        # a retry after that scores again instead of waiting on the abandoned attempt
        third = asyncio.ensure_future(service.score(request))
        started.clear()
        await asyncio.wait_for(started.wait(), 5)
        third.cancel()

    asyncio.run(go())
