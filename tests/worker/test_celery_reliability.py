"""The farm under faults, with real processes: a worker killed mid-batch, Redis restarted
mid-job, and a batch full of hostile programs and timeouts.

The killed-worker and Redis tests use short visibility timeouts so that redelivery happens
within seconds; the Redis test runs its own ``redis-server`` (never the shared one).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm3d.config import load_config
from tests.api.farm import Farm, needs_redis, private_redis, redis_available, start_farm
from worker.executor import Executor
from worker.metrics import GroundTruthCache
from worker.samples import HOSTILE, OBJECTS, TIMEOUT, perturb
from worker.scoring import ReferencePayload, ScoreJob, ScoreSettings, reference_key, score_job

pytestmark = [pytest.mark.blender, pytest.mark.slow]

UNIT_BOX = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0, 1.0])\nexport_scene()\n"


def nonce(code: str, i: int) -> str:
    """A distinct program with the same mesh and format score (no cache hit, same reward)."""
    return f"{code}# nonce {i} {uuid.uuid4().hex[:6]}\n"


def submit(farm: Farm, items: list[dict[str, Any]], **kw: Any) -> str:
    with farm.client() as http:
        response = http.post("/reward/jobs", json={"items": items, **kw})
    assert response.status_code == 202, response.text
    return str(response.json()["url"])


def poll(farm: Farm, url: str, timeout: float = 180, until: int | None = None) -> dict[str, Any]:
    """A job's state once done (or once ``until`` items are done); 503s are waited out."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    with farm.client() as http:
        while time.monotonic() < deadline:
            r = http.get(url)
            if r.status_code == 200:
                state = r.json()
                if state["state"] in {"done", "failed"}:
                    return state
                if until is not None and state["completed"] >= until:
                    return state
            time.sleep(0.2)
    raise AssertionError(f"job not finished in {timeout}s: {state}\n{farm.logs()}")


def assert_one_result_each(
    state: dict[str, Any], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    assert state["state"] == "done", state.get("error")
    results: list[dict[str, Any]] = state["response"]["results"]
    assert [r["id"] for r in results] == [i["id"] for i in items], "one result per item, in order"
    return results


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@needs_redis
@pytest.mark.redis
def test_killed_worker_mid_batch_every_item_gets_exactly_one_result(tmp: Path) -> None:
    farm = start_farm("celery", tmp, extra_env={"LLM3D_FARM__VISIBILITY_TIMEOUT_S": "8"}, workers=1)
    try:
        items = [
            {"id": f"i{i:03d}", "code": nonce(UNIT_BOX, i), "reference": {"code": UNIT_BOX}}
            for i in range(200)
        ]
        url = submit(farm, items)
        mid = poll(farm, url, until=40)
        assert mid["state"] == "running" and mid["completed"] < 200, "kill it mid-batch"
        farm.workers[0].kill()  # SIGKILL the whole group: worker, pool, fork servers
        assert not farm.workers[0].alive()
        farm.start_worker()
        state = poll(farm, url, timeout=240)
        results = assert_one_result_each(state, items)
        statuses = {r["status"] for r in results}
        assert statuses == {"ok"}, statuses
        assert all(r["reward"] > 0.95 for r in results)
    finally:
        farm.stop()


@pytest.mark.redis
def test_redis_restart_during_a_job_gives_503_then_completes(tmp: Path) -> None:
    with private_redis(tmp) as (url, redis_proc):
        farm = start_farm(
            "celery",
            tmp,
            redis_url=url,
            extra_env={"LLM3D_FARM__VISIBILITY_TIMEOUT_S": "8"},
            workers=1,
        )
        try:
            items = [
                {"id": f"r{i:02d}", "code": nonce(UNIT_BOX, i), "reference": {"code": UNIT_BOX}}
                for i in range(60)
            ]
            job_url = submit(farm, items)
            poll(farm, job_url, until=5)
            redis_proc.kill(15)  # SIGTERM: Redis persists (AOF) and exits
            assert not redis_proc.alive()
            with farm.client() as http:
                down = http.get(job_url)
                batch = http.post(
                    "/reward/batch", json={"items": [{**items[0], "id": "x"}]}, timeout=60
                )
                health = http.get("/healthz")
            for response in (down, batch, health):
                assert response.status_code == 503, response.text
                body = response.json()
                detail = body.get("detail", "")
                assert "Redis" in detail and "unreachable" in detail, body
            assert down.headers.get("Retry-After")
            time.sleep(1.0)
            redis_proc.start()  # same port, same directory: the queue and the job come back
            deadline = time.monotonic() + 60
            while not redis_available(url):
                assert time.monotonic() < deadline, f"Redis did not come back:\n{redis_proc.tail()}"
                time.sleep(0.1)
            state = poll(farm, job_url, timeout=240)
            assert state["state"] == "done", f"{state.get('error')}\n{farm.logs()}"
            results = assert_one_result_each(state, items)
            assert {r["status"] for r in results} == {"ok"}, [r["error"] for r in results]
        finally:
            farm.stop()


def _direct_rewards(codes: dict[str, str], settings: ScoreSettings) -> dict[str, float | None]:
    """The reward of each (program, reference) scored by the pure pipeline, outside the farm."""
    cache = GroundTruthCache(8)
    out: dict[str, float | None] = {}
    config = load_config()
    with Executor(config.executor) as ex:
        for key, (code, ref) in {k: v.split("\x1e") for k, v in codes.items()}.items():
            payload = ReferencePayload(code=ref)
            job = ScoreJob(key, code, reference_key(payload), settings, payload)
            result = score_job(
                job,
                runner=lambda c, t: ex.run(c, timeout_s=t),
                gt_cache=cache,
                metrics_config=config.metrics,
                executor_config=config.executor,
            )
            out[key] = result.reward
    return out


@pytest.fixture(
    scope="module",
    params=[
        "inline",
        pytest.param("celery", marks=[pytest.mark.redis, needs_redis]),
    ],
)
def busy_farm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Farm]:
    farm = start_farm(request.param, tmp_path_factory.mktemp(f"mixed-{request.param}"))
    yield farm
    farm.stop()


def test_hostile_and_timeouts_do_not_disturb_normal_programs(busy_farm: Farm) -> None:
    rng = random.Random(7)
    bases: dict[str, tuple[str, str]] = {}
    for name, code in OBJECTS.items():
        bases[f"{name}-exact"] = (code, code)
        bases[f"{name}-perturbed"] = (perturb(code, 1.2), code)
    base_names = sorted(bases)
    items: list[dict[str, Any]] = []
    expect_base: dict[str, str] = {}
    for i in range(130):
        base = base_names[i % len(base_names)]
        code, ref = bases[base]
        items.append({"id": f"n{i}", "code": nonce(code, i), "reference": {"code": ref}})
        expect_base[f"n{i}"] = base
    for i in range(50):
        h = HOSTILE[i % len(HOSTILE)]
        items.append({"id": f"h{i}", "code": nonce(h.code, i), "reference": {"code": UNIT_BOX}})
    for i in range(20):
        items.append(
            {"id": f"t{i}", "code": nonce(TIMEOUT.code, i), "reference": {"code": UNIT_BOX}}
        )
    rng.shuffle(items)

    with httpx.Client(base_url=busy_farm.url, timeout=300) as http:
        response = http.post("/reward/batch", json={"items": items, "timeout_s": 1.5})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [i["id"] for i in items]
    by_id = {r["id"]: r for r in results}

    config = load_config(metrics__train_points=2000)
    settings = ScoreSettings.from_config(config, timeout_s=10.0)
    expected = _direct_rewards({k: f"{c}\x1e{r}" for k, (c, r) in bases.items()}, settings)
    for item_id, base in expect_base.items():
        got = by_id[item_id]
        assert got["status"] == "ok", (item_id, got["error"])
        assert got["reward"] == pytest.approx(expected[base], abs=1e-9), item_id
    hostile = [r for r in results if r["id"].startswith("h")]
    assert all(r["status"] in {"refused", "exec_failed", "no_geometry"} for r in hostile)
    assert all(r["reward"] is not None and r["reward"] < 0.2 for r in hostile)
    timeouts = [r for r in results if r["id"].startswith("t")]
    assert {r["status"] for r in timeouts} == {"timeout"}
