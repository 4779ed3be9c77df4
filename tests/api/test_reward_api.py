"""The reward service over real HTTP, the same suite on the ``inline`` and ``celery`` backends.

What a trainer relies on: results in item order, exact copies near 1, bad programs scored
(never a failed batch), clear 4xx for malformed requests, the cache, jobs, idempotent
request ids, health and metrics.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from llm3d.client import RewardClient
from llm3d.exceptions import RewardServiceError
from llm3d.program import format_score
from llm3d.schemas import RewardResponse
from tests.api.conftest import TOKEN
from tests.api.farm import Farm
from worker.demo_programs import BROKEN, HOSTILE, OBJECTS, TIMEOUT, perturb

TABLE, SNOWMAN = OBJECTS["table"], OBJECTS["snowman"]
UNIT_BOX = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0, 1.0])\nexport_scene()\n"


def unit_cube_mesh() -> dict[str, Any]:
    """The triangulated unit cube centred at the origin: what ``UNIT_BOX`` builds."""
    v = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [[a, b, c] for a, b, c, d in quads] + [[a, c, d] for a, b, c, d in quads]
    return {"vertices": v.tolist(), "faces": faces}


def item(code: str, ref: str | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": kw.pop("id", uuid.uuid4().hex[:8]), "code": code, **kw}
    if ref is not None:
        out["reference"] = {"code": ref}
    return out


def post(
    farm: Farm, body: Any, auth: dict[str, str], path: str = "/reward/batch"
) -> httpx.Response:
    with farm.client(headers=auth) as http:
        return http.post(path, json=body)


def batch(
    farm: Farm, auth: dict[str, str], items: list[dict[str, Any]], **kw: Any
) -> RewardResponse:
    response = post(farm, {"items": items, **kw}, auth)
    assert response.status_code == 200, response.text
    return RewardResponse.model_validate(response.json())


def expected_low(code: str, gated: float) -> float:
    return 0.9 * gated + 0.1 * format_score(code)


# -- scoring ----------------------------------------------------------------------------


def test_batch_is_scored_in_item_order_and_bad_programs_never_fail_it(
    farm: Farm, auth: dict[str, str]
) -> None:
    broken = {c.name: c for c in BROKEN}
    hostile = {c.name: c for c in HOSTILE}
    items = [
        item(TABLE, TABLE, id="exact-table"),
        item(perturb(TABLE, 1.3), TABLE, id="perturbed-table"),
        item(broken["bad_argument"].code, TABLE, id="broken"),
        item(hostile["os_system"].code, TABLE, id="hostile"),
        item(SNOWMAN, SNOWMAN, id="exact-snowman"),
        item(TABLE, SNOWMAN, id="wrong-object"),
        item(broken["nothing_built"].code, SNOWMAN, id="nothing"),
    ]
    response = batch(farm, auth, items)
    got = {r.id: r for r in response.results}
    assert [r.id for r in response.results] == [i["id"] for i in items]
    assert response.reward_version
    assert got["exact-table"].status == "ok" and got["exact-table"].reward is not None
    assert got["exact-table"].reward > 0.95
    assert got["exact-table"].metrics["f_score_0.05"] > 0.95
    assert got["exact-snowman"].reward is not None and got["exact-snowman"].reward > 0.95
    perturbed = got["perturbed-table"]
    assert perturbed.status == "ok" and perturbed.reward is not None
    assert perturbed.reward < got["exact-table"].reward
    wrong = got["wrong-object"].reward
    assert wrong is not None and wrong < got["exact-snowman"].reward
    assert got["broken"].status == "exec_failed" and got["broken"].error
    assert got["broken"].reward == pytest.approx(expected_low(broken["bad_argument"].code, 0.05))
    assert got["hostile"].status == "refused" and "os" in (got["hostile"].error or "")
    assert got["nothing"].status == "no_geometry"
    assert got["nothing"].reward == pytest.approx(expected_low(broken["nothing_built"].code, 0.10))
    for r in response.results:
        assert set(r.components) >= {"gated", "format"}
        assert r.seconds >= 0 and not r.cached


def test_timeout_of_one_item_does_not_hold_the_others(farm: Farm, auth: dict[str, str]) -> None:
    response = batch(
        farm,
        auth,
        [item(TIMEOUT.code, TABLE, id="slow"), item(UNIT_BOX, UNIT_BOX, id="fast")],
        timeout_s=1.5,
    )
    slow, fast = response.results
    assert slow.status == "timeout" and slow.reward == pytest.approx(
        expected_low(TIMEOUT.code, 0.05)
    )
    assert fast.status == "ok" and fast.reward is not None and fast.reward > 0.95


def test_mesh_reference_and_registered_task(farm: Farm, auth: dict[str, str]) -> None:
    task_id = f"cube-{uuid.uuid4().hex[:6]}"
    with farm.client(headers=auth) as http:
        created = http.post(
            "/tasks", json={"task_id": task_id, "reference": unit_cube_mesh(), "meta": {"n": 1}}
        )
        assert created.status_code == 201, created.text
        assert created.json()["kind"] == "mesh"
        listed = http.get("/tasks").json()
    assert task_id in {t["task_id"] for t in listed["tasks"]}
    response = batch(
        farm,
        auth,
        [
            item(UNIT_BOX, task_id=task_id, id="by-task"),
            {"id": "inline-mesh", "code": UNIT_BOX, "reference": unit_cube_mesh()},
            item(UNIT_BOX.replace("1.0, 1.0, 1.0", "2.0, 1.0, 1.0"), task_id=task_id, id="long"),
        ],
    )
    by_task, inline, long = response.results
    assert by_task.status == "ok" and by_task.reward is not None and by_task.reward > 0.95
    assert inline.reward == pytest.approx(by_task.reward)
    assert long.reward is not None and long.reward < by_task.reward


def test_identical_items_hit_the_cache(farm: Farm, auth: dict[str, str]) -> None:
    code = perturb(SNOWMAN, 0.9) + f"# nonce {uuid.uuid4().hex}\n"
    first = batch(farm, auth, [item(code, SNOWMAN, id="a"), item(code, SNOWMAN, id="b")])
    assert [r.cached for r in first.results] == [False, True], "a twin in the batch is reused"
    again = batch(farm, auth, [item(code, SNOWMAN, id="c")])
    assert again.results[0].cached
    assert again.results[0].reward == first.results[0].reward
    assert again.results[0].id == "c"
    other_points = batch(farm, auth, [item(code, SNOWMAN, id="d")], points=1000)
    assert not other_points.results[0].cached, "settings are part of the cache key"
    with farm.client() as http:
        text = http.get("/metrics").text
    hits = [line for line in text.splitlines() if line.startswith("llm3d_cache_hits_total")]
    assert hits and float(hits[0].split()[-1]) >= 2


def test_unit_cube_chamfer_is_reported_for_evaluation_not_for_training(
    farm: Farm, auth: dict[str, str]
) -> None:
    """DESIGN §3: ``chamfer_unit_x1000`` is an evaluation metric; training rewards skip it."""
    code = perturb(TABLE, 0.95) + f"# nonce {uuid.uuid4().hex}\n"
    train = batch(farm, auth, [item(code, TABLE, id="train")]).results[0]
    assert train.status == "ok"
    assert "chamfer_unit_x1000" not in train.metrics
    assert {"chamfer_l2", "f_score_0.05", "hausdorff_90", "normal_consistency"} <= set(
        train.metrics
    )
    # the farm's eval_points is 4000 (tests/api/farm.py): a request at that count is evaluation
    evaluation = batch(farm, auth, [item(code, TABLE, id="eval")], points=4000).results[0]
    assert not evaluation.cached, "a different sample count is a different score"
    assert evaluation.metrics["chamfer_unit_x1000"] > 0
    assert evaluation.metrics["f_score_0.05"] == pytest.approx(
        train.metrics["f_score_0.05"], abs=0.05
    )


def test_oversize_program_is_a_422_naming_the_item_and_the_limit(
    farm: Farm, auth: dict[str, str]
) -> None:
    """DESIGN §2: code is at most 64 KiB; the API says so before anything runs."""
    big = UNIT_BOX + "# " + "x" * (70 * 1024) + "\n"
    response = post(
        farm, {"items": [item(big, UNIT_BOX, id="big"), item(UNIT_BOX, UNIT_BOX)]}, auth
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "'big'" in detail and "65,536 bytes" in detail and "executor.max_code_bytes" in detail


def test_nul_character_inside_a_program_is_scored_not_crashed(
    farm: Farm, auth: dict[str, str]
) -> None:
    response = batch(farm, auth, [item(UNIT_BOX + "box(size=[1, 1, 1])\x00\n", UNIT_BOX)])
    assert response.results[0].status in {"refused", "exec_failed"}
    assert response.results[0].reward is not None


# -- jobs and idempotency ---------------------------------------------------------------


def test_job_mode_accepts_then_completes(farm: Farm, auth: dict[str, str]) -> None:
    items = [item(UNIT_BOX, UNIT_BOX, id="j1"), item(HOSTILE[0].code, UNIT_BOX, id="j2")]
    with farm.client(headers=auth) as http:
        accepted = http.post("/reward/jobs", json={"items": items})
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        assert accepted.headers["Location"] == job["url"] == f"/reward/jobs/{job['job_id']}"
        deadline = time.monotonic() + 120
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = http.get(job["url"]).json()
            if state["state"] in {"done", "failed"}:
                break
            time.sleep(0.2)
        missing = http.get("/reward/jobs/does-not-exist")
    assert state["state"] == "done", state
    assert state["completed"] == 2
    results = state["response"]["results"]
    assert [r["id"] for r in results] == ["j1", "j2"]
    assert results[0]["status"] == "ok" and results[1]["status"] == "refused"
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]


def test_request_id_is_idempotent_and_cannot_be_reused_for_other_work(
    farm: Farm, auth: dict[str, str]
) -> None:
    rid = f"step-{uuid.uuid4().hex[:6]}"
    body = {"request_id": rid, "items": [item(SNOWMAN + "# r\n", SNOWMAN, id="x")]}
    first = post(farm, body, auth)
    second = post(farm, body, auth)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json(), "a retried request gets the very same answer"
    other = post(farm, {**body, "items": [item(UNIT_BOX, UNIT_BOX, id="x")]}, auth)
    assert other.status_code == 409 and rid in other.json()["detail"]


def test_client_speaks_to_the_service(farm: Farm) -> None:
    with RewardClient(farm.url, token=TOKEN, retries=0) as client:
        result = client.score(UNIT_BOX, reference={"code": UNIT_BOX})
        assert result.status == "ok" and result.reward is not None and result.reward > 0.95
        assert client.health()["status"] == "ok"
        with pytest.raises(RewardServiceError) as info:
            client.score(UNIT_BOX, task_id="no-such-task")
    assert info.value.status_code == 422


# -- malformed requests -----------------------------------------------------------------


def raw(farm: Farm, content: bytes, headers: dict[str, str]) -> httpx.Response:
    with farm.client(headers={**headers, "Content-Type": "application/json"}) as http:
        return http.post("/reward/batch", content=content)


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"{not json", 422, "not valid JSON"),
        (b"", 422, "empty"),
        (bytes(range(256)) * 40, 422, "NUL byte"),
        (b'{"items": [{"id": "a", "code": "\xff\xfe"}]}', 422, "not valid UTF-8"),
        (b'{"items": [{"id": "a", "code": "x\x00"}]}', 422, "NUL byte"),
        (b'{"items": []}', 422, "items"),
        (b'{"items": [{"id": "a", "code": "x"}]}', 422, "exactly one of task_id or reference"),
        (
            b'{"items": [{"id": "a", "code": "x", "task_id": "t", "reference": {"code": "y"}}]}',
            422,
            "exactly one of task_id or reference",
        ),
        (b'{"items": [{"id": "a", "code": "x", "task_id": "t"}], "oops": 1}', 422, "oops"),
    ],
    ids=["malformed", "empty", "binary", "non-utf8", "nul", "no-items", "no-gt", "two-gt", "extra"],
)
def test_malformed_requests_get_a_clear_4xx(
    farm: Farm, auth: dict[str, str], content: bytes, status: int, words: str
) -> None:
    response = raw(farm, content, auth)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_garbage_of_10000_characters(farm: Farm, auth: dict[str, str]) -> None:
    rng = np.random.default_rng(0)
    garbage = "".join(chr(c) for c in rng.integers(0x21, 0x7E, 10_000)).encode()
    response = raw(farm, garbage, auth)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "not valid JSON" in detail and len(response.text) < 2000, "no echo of the garbage"


def test_unknown_task_ids_are_named(farm: Farm, auth: dict[str, str]) -> None:
    body = {"items": [item(UNIT_BOX, UNIT_BOX, id="ok"), item(UNIT_BOX, task_id="nope", id="b")]}
    response = post(farm, body, auth)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'nope'" in detail and "items[1]" in detail and "POST /tasks" in detail


def test_limits_answer_413(farm: Farm, auth: dict[str, str]) -> None:
    too_many = {"items": [item("x", task_id="t", id=str(i)) for i in range(301)]}
    response = post(farm, too_many, auth)
    assert response.status_code == 413 and "api.max_items" in response.json()["detail"]
    huge = {"items": [item("# " + "y" * (1100 * 1024), UNIT_BOX)]}
    response = post(farm, huge, auth)
    assert response.status_code == 413 and "api.max_request_mb" in response.json()["detail"]


def test_bearer_token_is_required(farm: Farm) -> None:
    body = json.dumps({"items": [item(UNIT_BOX, UNIT_BOX)]}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = raw(farm, body, headers)
        assert response.status_code == 401, headers
        assert "LLM3D_API_TOKEN" in response.json()["detail"]
        assert response.headers["WWW-Authenticate"] == "Bearer"
    with farm.client() as http:
        assert http.get("/tasks").status_code == 401
        assert http.get("/healthz").status_code == 200, "health stays open for probes"


# -- health, metrics, OpenAPI -----------------------------------------------------------


def test_health_metrics_and_openapi(farm: Farm) -> None:
    with farm.client() as http:
        health = http.get("/healthz")
        metrics = http.get("/metrics")
        spec = http.get("/openapi.json").json()
    assert health.status_code == 200
    assert health.json()["backend"] == farm.backend and health.json()["status"] == "ok"
    text = metrics.text
    for name in (
        "llm3d_http_requests_total",
        "llm3d_items_total",
        "llm3d_item_seconds_bucket",
        "llm3d_http_request_seconds_bucket",
        "llm3d_cache_hits_total",
        "llm3d_queue_depth",
    ):
        assert name in text, name
    assert 'status="ok"' in text
    assert {"/reward/batch", "/reward/jobs", "/reward/jobs/{job_id}", "/tasks", "/healthz"} <= set(
        spec["paths"]
    )
    assert "RewardResult" in spec["components"]["schemas"]


def test_container_health_checks_pass(farm: Farm) -> None:
    """The HEALTHCHECK commands of docker/*.Dockerfile and compose.yaml, run for real."""
    import subprocess

    from tests.api.farm import LLM3D

    api = subprocess.run(
        [*LLM3D, "health"], env=farm.env, capture_output=True, text=True, timeout=60
    )
    assert api.returncode == 0, api.stderr
    assert json.loads(api.stdout)["status"] == "ok"
    if farm.backend == "celery":
        workers = subprocess.run(
            [*LLM3D, "health", "--workers"],
            env=farm.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert workers.returncode == 0, workers.stderr
        assert json.loads(workers.stdout)["workers"]
    down = subprocess.run(
        [*LLM3D, "health", "--url", "http://127.0.0.1:9", "--timeout", "2"],
        env=farm.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1 and "ConnectError" in down.stderr
