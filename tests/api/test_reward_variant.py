"""``reward.variant: gated-fine`` through a real ``llm3d serve``: the service says which reward it
gives (``/healthz`` and every response), and near-perfect programs that the seed's reward
cannot tell apart get different rewards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.farm import Farm, start_farm
from worker.demo_programs import OBJECTS, perturb

pytestmark = [pytest.mark.blender, pytest.mark.slow]

TABLE = OBJECTS["table"]


@pytest.fixture(scope="module")
def fine_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    tmp: Path = tmp_path_factory.mktemp("farm-fine")
    running = start_farm("inline", tmp, extra_env={"LLM3D_REWARD__VARIANT": "gated-fine"})
    yield running
    running.stop()


def test_the_service_scores_with_the_configured_variant(fine_farm: Farm) -> None:
    health = httpx.get(fine_farm.url + "/healthz", timeout=30).json()
    assert health["reward_version"] == "gated-fine-v1"
    items = [
        {"id": name, "code": code, "reference": {"code": TABLE}}
        for name, code in [("exact", TABLE), ("close", perturb(TABLE, 1.02)), ("off", perturb(TABLE, 1.06))]
    ]  # fmt: skip
    response = httpx.post(fine_farm.url + "/reward/batch", json={"items": items}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reward_version"] == "gated-fine-v1"
    got = {r["id"]: r for r in body["results"]}
    assert all(r["status"] == "ok" for r in got.values())
    assert got["exact"]["reward"] == pytest.approx(1.0)
    assert got["exact"]["reward"] > got["close"]["reward"] > got["off"]["reward"]
