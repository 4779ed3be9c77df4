"""One item that cannot be scored never fails its batch, on any backend (issue 18, point 2).

The failure injected is the one a real image had: ``numba`` missing from the environment, so
scoring any prediction far from its ground truth raises ``ModuleNotFoundError`` inside the
metrics while an exact copy scores normally. That item must come back as ``infra_error``
(reward ``None``, the error text), and the others of the batch must be scored. In-process
the module is hidden through ``sys.modules``; a Celery worker is started with
tests/helpers/hide_modules on its ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from llm3d.config import load_config
from llm3d.schemas import ReferencePayload, RewardResult, reference_key
from tests.api.farm import needs_redis, start_farm
from tests.docker.image_check import FAR_BOX, UNIT_BOX
from tests.helpers.modal_stand_in import StandInFunction
from worker.scoring import ScoreJob, ScoreSettings

BROKEN = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0])\nexport_scene()\n"
HIDE = Path(__file__).resolve().parents[1] / "helpers" / "hide_modules"
# (item id, program, status when numba is missing)
ITEMS = [
    ("exact", UNIT_BOX, "ok"),
    ("far_off", FAR_BOX, "infra_error"),
    ("broken", BROKEN, "exec_failed"),
    ("exact_again", UNIT_BOX + "# again\n", "ok"),
]


def jobs() -> list[ScoreJob]:
    ref = ReferencePayload(code=UNIT_BOX)
    settings = ScoreSettings.from_config(load_config(), points=2000, timeout_s=30)
    return [ScoreJob(i, code, reference_key(ref), settings, ref) for i, code, _ in ITEMS]


def hide_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import numba`` (and the module that needs it) fails in this process from now on."""
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setitem(sys.modules, "worker.geometry.nearest_far", None)


def assert_one_item_failed(results: list[dict[str, Any]]) -> None:
    assert [r["id"] for r in results] == [i for i, _, _ in ITEMS], "one result per item, in order"
    assert {r["id"]: r["status"] for r in results} == {i: s for i, _, s in ITEMS}
    far = results[1]
    assert far["reward"] is None and "ModuleNotFoundError" in far["error"], far
    assert results[0]["reward"] > 0.95 and results[3]["reward"] > 0.95
    assert results[2]["reward"] is not None and results[2]["reward"] < 0.2


@pytest.mark.blender
@pytest.mark.slow
def test_inline_backend_scores_the_rest_of_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.farm.backends import InlineBackend

    hide_numba(monkeypatch)

    async def run() -> list[RewardResult]:
        backend = InlineBackend(load_config(executor__servers=1))
        try:
            return await backend.score_batch(jobs())
        finally:
            await backend.close()

    results = asyncio.run(run())
    assert_one_item_failed([r.model_dump(mode="json") for r in results])


@pytest.mark.blender
@pytest.mark.slow
def test_modal_score_body_scores_each_item_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    modal_app = pytest.importorskip("worker.farm.modal_app", reason="pip install 'llm3d[modal]'")

    hide_numba(monkeypatch)
    try:
        results = [modal_app.score_body(job.to_dict()) for job in jobs()]
    finally:
        if modal_app._scorer is not None:
            modal_app._scorer.close()
            modal_app._scorer = None
    assert_one_item_failed(results)


@needs_redis
@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.redis
def test_celery_worker_without_numba_fails_one_item_not_the_batch(tmp_path: Path) -> None:
    farm = start_farm(
        "celery", tmp_path, extra_env={"PYTHONPATH": str(HIDE), "HIDE_MODULES": "numba"}
    )
    try:
        body = {
            "points": 2000,
            "items": [
                {"id": i, "code": code, "reference": {"code": UNIT_BOX}} for i, code, _ in ITEMS
            ],
        }
        with farm.client() as http:
            response = http.post("/reward/batch", json=body)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert_one_item_failed(results)
        assert "No module named 'numba'" in results[1]["error"]
    finally:
        farm.stop()


def test_modal_backend_keeps_the_batch_when_one_call_fails() -> None:
    pytest.importorskip("modal", reason="pip install 'llm3d[modal]'")
    from modal.exception import FunctionTimeoutError

    from worker.farm.backends import ModalBackend

    def body(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["item_id"] == "far_off":
            raise FunctionTimeoutError("Function timed out after 290 s")
        return RewardResult(id=payload["item_id"], status="ok", reward=0.5).model_dump(mode="json")

    backend = ModalBackend(load_config(api__backend="modal"))
    backend._score = StandInFunction(body)
    done: list[int] = []
    results = asyncio.run(backend.score_batch(jobs(), progress=done.append))
    assert [r.id for r in results] == [i for i, _, _ in ITEMS]
    assert [r.status for r in results] == ["ok", "infra_error", "ok", "ok"]
    assert results[1].reward is None and "FunctionTimeoutError" in (results[1].error or "")
    assert "modal app logs llm3d-reward" in (results[1].error or "")
    assert done == [1, 2, 3, 4]
