"""The Celery app's settings and its thin task, called as plain functions (no broker needed,
except for the Redis-stored reference, which uses the test db)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from llm3d.config import Config, load_config
from llm3d.schemas import ReferencePayload, reference_key
from tests.api.farm import TEST_REDIS_URL, needs_redis
from worker.demo_programs import OBJECTS, perturb
from worker.farm.celery_app import SCORE_TASK, make_celery, task_time_limits
from worker.farm.leases import LeaseKeeper, lease_interval_s
from worker.farm.tasks import WorkerState
from worker.scoring import ScoreJob, ScoreSettings

TABLE = OBJECTS["table"]


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(
        environ={},
        executor__timeout_s=10.0,
        metrics__train_points=2000,
        farm__redis_url=TEST_REDIS_URL,
    )


def test_app_is_configured_for_long_idempotent_tasks(config: Config) -> None:
    app = make_celery(config)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_max_tasks_per_child == config.farm.max_tasks_per_child
    assert conf.task_default_queue == "blender"
    assert conf.task_routes[SCORE_TASK]["queue"] == "blender"
    assert conf.broker_url == conf.result_backend == TEST_REDIS_URL
    soft, hard = task_time_limits(config)
    # the executor's timeout fires first; both task limits sit above it (for two programs)
    assert config.executor.timeout_s * 2 < soft < hard
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (soft, hard)
    assert task_time_limits(config, 1.0)[0] < soft, "a request's timeout_s tightens the limits"
    transport = conf.broker_transport_options
    # a lost worker's task comes back within ~30 s (live workers renew their leases, so the
    # visibility timeout may be far below a task's hard limit)
    assert transport["visibility_timeout"] == config.farm.visibility_timeout_s <= 30
    assert lease_interval_s(config.farm.visibility_timeout_s) * 4 <= transport["visibility_timeout"]
    assert transport["unacked_restore_interval"] <= config.farm.visibility_timeout_s / 4
    assert transport["unacked_restore_throttle"] == 1
    # the farm's own unacked bookkeeping, in its namespace
    assert transport["unacked_index_key"].startswith(config.farm.namespace + ":")
    assert LeaseKeeper in app.steps["consumer"]
    # survives kombu's teardown of a lost Redis connection (worker/farm/consumer.py)
    assert conf.worker_consumer == "worker.farm.consumer:Consumer"


def test_the_task_is_registered_thin_and_late_acknowledged() -> None:
    from worker.farm import tasks

    task = tasks.app.tasks[SCORE_TASK]
    assert task.acks_late and task.reject_on_worker_lost
    assert task.name == tasks.score.name == SCORE_TASK


@pytest.fixture(scope="module")
def worker_state(config: Config) -> Iterator[WorkerState]:
    state = WorkerState(config)
    yield state
    state.close()


def _job(
    item_id: str, code: str, ref: ReferencePayload, config: Config, *, send_reference: bool = True
) -> ScoreJob:
    settings = ScoreSettings.from_config(config)
    return ScoreJob(item_id, code, reference_key(ref), settings, ref if send_reference else None)


@pytest.mark.blender
@pytest.mark.slow
def test_task_body_equals_the_inline_backend(config: Config, worker_state: WorkerState) -> None:
    from worker.execution.executor import ExecutorPool
    from worker.farm.backends import InlineBackend
    from worker.farm.tasks import score_payload

    ref = ReferencePayload(code=TABLE)
    jobs = [_job("exact", TABLE, ref, config), _job("perturbed", perturb(TABLE, 1.2), ref, config)]
    with ExecutorPool(config.executor, size=1) as pool:
        backend = InlineBackend(config, pool=pool)
        inline = [backend.score_one(j).model_dump(exclude={"seconds"}) for j in jobs]
    celery = [score_payload(j.to_dict(), worker_state) for j in jobs]
    for a, b in zip(inline, celery, strict=True):
        b.pop("seconds")
        assert a == b
    assert inline[0]["status"] == "ok" and inline[0]["reward"] > inline[1]["reward"]


@needs_redis
@pytest.mark.redis
@pytest.mark.blender
@pytest.mark.slow
def test_mesh_references_are_read_from_redis(config: Config, worker_state: WorkerState) -> None:
    import redis

    from worker.farm.tasks import reference_redis_key, score_payload

    box = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0, 1.0])\nexport_scene()\n"
    ref = ReferencePayload(
        vertices=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]],
        faces=[[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
    )
    client = redis.Redis.from_url(TEST_REDIS_URL)
    job = _job("tetra", box, ref, config, send_reference=False)
    key = reference_redis_key(config.farm.namespace, job.gt_key)
    client.delete(key)
    missing = score_payload(job.to_dict(), worker_state)
    assert missing["status"] == "infra_error" and missing["reward"] is None
    assert "not in Redis" in missing["error"]
    client.set(key, json.dumps(ref.to_dict()), ex=60)
    found = score_payload(job.to_dict(), worker_state)
    assert found["status"] == "ok" and found["reward"] is not None


def test_soft_time_limit_gives_infra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from worker.farm import tasks

    def hang(*_: object) -> dict[str, object]:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks, "score_payload", hang)
    result = tasks.score({"item_id": "slow"})
    assert result["status"] == "infra_error" and result["reward"] is None
    assert result["id"] == "slow" and "time limit" in result["error"]


@needs_redis
@pytest.mark.redis
def test_a_groups_views_travel_once_through_redis_not_in_every_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each candidate's Celery message carried its group's views (base64); now the backend
    stores them once per group, as it does mesh references, and the worker reads them back."""
    import asyncio
    import os
    import uuid

    import redis

    from llm3d.schemas import RewardResult
    from worker.farm.celery_backend import CeleryBackend
    from worker.farm.tasks import select_payload, views_redis_key
    from worker.selection import SelectJob, SelectSettings, views_digest

    namespace = f"llm3d-test-{uuid.uuid4().hex[:8]}"
    config = load_config(environ={}, farm__redis_url=TEST_REDIS_URL, farm__namespace=namespace)
    settings = SelectSettings(10.0, config.render)
    groups = {g: tuple(os.urandom(40_000) for _ in range(4)) for g in ("a", "b")}
    jobs = [
        SelectJob(f"{g}#{n}", f"# candidate {n}\n", views, settings, views_digest(views, settings))
        for g, views in groups.items()
        for n in range(3)
    ]
    jobs.append(SelectJob("c#0", "# no key given\n", groups["a"], settings))
    before = [len(json.dumps(j.to_dict())) for j in jobs]

    async def store() -> list[SelectJob]:
        backend = CeleryBackend(config)
        try:
            return list(await backend._store_references(jobs))  # type: ignore[arg-type]
        finally:
            await backend.redis.aclose()

    sent = asyncio.run(store())
    client = redis.Redis.from_url(TEST_REDIS_URL)
    stored = client.keys(f"{namespace}:views:*")
    try:
        assert len(stored) == len(groups), "once per group, not once per candidate"
        assert all(j.views == () and j.views_key for j in sent)
        assert [j.views_key for j in sent] == [views_digest(j.views, settings) for j in jobs]
        after = [len(json.dumps(j.to_dict())) for j in sent]
        assert min(before) > 200_000 and max(after) < 2_000, (before, after)

        # the worker reads them back: the candidate is matched against its group's views
        state = WorkerState(config)
        seen: list[SelectJob] = []

        def match(job: SelectJob) -> RewardResult:
            seen.append(job)
            return RewardResult(id=job.item_id, status="ok", reward=None, metrics={"match": 0.5})

        monkeypatch.setattr(state._selector, "select", match)
        assert select_payload(sent[4].to_dict(), state)["metrics"] == {"match": 0.5}
        assert seen[0].views == groups["b"] and seen[0].code == "# candidate 1\n"

        # views expired: that candidate says so (infra_error), nothing runs
        client.delete(views_redis_key(namespace, sent[0].views_key or ""))
        gone = select_payload(sent[0].to_dict(), state)
        assert gone["status"] == "infra_error" and gone["id"] == "a#0"
        assert "views of candidate a#0: not in Redis" in gone["error"] and len(seen) == 1
    finally:
        client.delete(*stored)
