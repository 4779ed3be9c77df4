"""The environment end to end: verifiers' own loader, a chat server, a real reward service.

The reward service is ``llm3d serve`` on the inline backend (tests/api/farm.py starts it as
the Docker image does); the model is a local HTTP server speaking chat completions that
answers each task by the image it was sent, so the whole path runs: the dataset's images
as ``image_url`` parts → the completion → the parser → one ``POST /reward/batch`` a group →
the rubric's reward and metrics.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from environments.blender_3d.dataset import image_data_url, read_split
from tests.api.farm import Farm, free_port, start_farm
from tests.environments.chat_server import chat_server

pytestmark = [pytest.mark.blender, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BROKEN = "from bpy_lib import *\n# part_1: slab\nbox(size=[-1, 1, 1])\nexport_scene()\n"


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.eval_examples import build_split

    out = tmp_path_factory.mktemp("env-data")
    return build_split(out, ["mug", "table", "stool"], "eval", resolution=48, system="bpy_lib")


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    # ground-truth meshes are registered with POST /tasks: allow bodies of a few MB
    running = start_farm(
        "inline", tmp_path_factory.mktemp("farm"), extra_env={"LLM3D_API__MAX_REQUEST_MB": "32"}
    )
    yield running
    running.stop()


@pytest.fixture
def vf_loader(monkeypatch: pytest.MonkeyPatch) -> Any:
    """verifiers, with the environment importable as ``blender_3d`` even if not pip-installed."""
    monkeypatch.syspath_prepend(str(REPO / "environments"))
    import verifiers as vf

    return vf


def answers(split: Path) -> dict[str, str]:
    """First image's data URL → the completion the fake model gives for that task."""
    samples = {s.id: s for s in read_split(split)}
    text = {
        "eval-mug": "Here it is:\n```python\n" + (samples["eval-mug"].code or "") + "```",
        "eval-table": "```python\n" + BROKEN + "```",
        "eval-stool": "I cannot tell what this is.",
    }
    return {image_data_url(s.images[0]): text[s.id] for s in samples.values()}


def test_loads_with_verifiers_and_scores_real_completions(
    vf_loader: Any, split: Path, farm: Farm
) -> None:
    from openai import OpenAI

    env = vf_loader.load_environment(
        "blender-3d", eval_dataset_path=str(split), reward_url=farm.url, points=2000
    )
    assert type(env).__name__ == "Blender3DEnvironment"
    known = {t["task_id"] for t in httpx.get(farm.url + "/tasks").json()["tasks"]}
    assert {"eval-mug", "eval-table", "eval-stool"} <= known  # registered on load

    by_image = answers(split)

    def choose(messages: list[dict[str, Any]]) -> str:
        first = next(p for p in messages[-1]["content"] if p["type"] == "image_url")
        return by_image[first["image_url"]["url"]]

    with chat_server(choose) as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        results = env.evaluate_sync(client=client, model="tiny-vl", rollouts_per_example=2)

    # every prompt carried the task's 4 views as image parts, never paths
    for body in server.requests:
        user = body["messages"][-1]
        assert [p["type"] for p in user["content"]].count("image_url") == 4
        assert "images/" not in str(user)
    states = {s["info"]["task_id"]: s for s in results["state"]}
    assert len(results["state"]) == 6
    mug, table, stool = states["eval-mug"], states["eval-table"], states["eval-stool"]
    assert mug["llm3d"]["status"] == "ok"
    assert mug["reward"] == pytest.approx(1.0, abs=1e-6)
    # the reference itself, sampled independently at 2 000 points: the sampling floor
    assert mug["metrics"]["f_score_0.05"] >= 0.95
    assert mug["metrics"]["execution"] == 1.0
    assert 0.0 < mug["metrics"]["chamfer_l2"] < 1e-3
    assert table["llm3d"]["status"] == "exec_failed"
    assert "size" in table["llm3d"]["error"]
    assert table["reward"] == pytest.approx(0.9 * 0.05 + 0.1 * 1.0)
    assert table["metrics"]["execution"] == 0.0
    assert math.isnan(table["metrics"]["chamfer_l2"])  # undefined without a mesh, not 0
    assert stool["llm3d"]["status"] == "empty"
    assert stool["reward"] == 0.0 and stool["metrics"]["format"] == 0.0
    assert all(s["metrics"]["infra_error"] == 0.0 for s in results["state"])
    # groups of 2 identical completions: zero advantage
    assert all(s["advantage"] == pytest.approx(0.0) for s in results["state"])


def make_state(task_id: str, text: str) -> Any:
    from verifiers.types import State

    state = State(
        input={
            "prompt": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
            "answer": task_id,
            "task": "blender-3d",
            "info": {"task_id": task_id},
            "example_id": 0,
        }
    )
    state.update(
        completion=[{"role": "assistant", "content": text}],
        trajectory=[{"reward": None, "advantage": None}],
        timing={"scoring_ms": 0.0, "total_ms": 0.0},
        error=None,
    )
    return state


def test_unreachable_service_is_infra_error_not_zero(vf_loader: Any) -> None:
    from environments.blender_3d.harness import Blender3DHarness
    from environments.blender_3d.rubric import Blender3DRubric

    dead = f"http://127.0.0.1:{free_port()}"
    rubric = Blender3DRubric(Blender3DHarness(dead, retries=0, http_timeout=5))
    states = [make_state("t", "```python\nfrom bpy_lib import *\n```") for _ in range(3)]
    asyncio.run(rubric.score_group(states, asyncio.Semaphore(4)))
    for state in states:
        assert math.isnan(state["reward"])
        assert state["metrics"]["infra_error"] == 1.0
        assert state["advantage"] == 0.0
        assert state["trajectory"][0]["advantage"] == 0.0
        assert state["llm3d"]["status"] == "infra_error"
        assert dead in state["llm3d"]["error"]


def test_group_advantage_ignores_infra_errors(vf_loader: Any) -> None:
    from environments.blender_3d.harness import Blender3DHarness, infra_results
    from environments.blender_3d.rubric import Blender3DRubric
    from llm3d.schemas import RewardResult

    class Stub(Blender3DHarness):
        async def score(self, codes: Any, task_ids: Any) -> list[RewardResult]:
            self.seen = list(codes)
            ok = {"status": "ok", "metrics": {"f_score_0.05": 0.5, "chamfer_l2": 0.01}}
            return [
                RewardResult(id="0", reward=0.8, components={"format": 1.0}, **ok),
                *infra_results(["1"], "worker lost"),
                RewardResult(id="2", reward=0.4, components={"format": 1.0}, **ok),
            ]

    harness = Stub()
    rubric = Blender3DRubric(harness)
    states = [make_state("t", f"```python\nfrom bpy_lib import *\n# {i}\n```") for i in range(3)]
    asyncio.run(rubric.score_group(states, asyncio.Semaphore(4)))
    assert len(harness.seen) == 3  # one batch for the group
    assert [s["advantage"] for s in states] == pytest.approx([0.2, 0.0, -0.2])
    assert [s["metrics"]["infra_error"] for s in states] == [0.0, 1.0, 0.0]
    assert states[0]["metrics"]["chamfer_l2"] == 0.01


def test_a_failed_generation_is_masked_and_not_sent(vf_loader: Any) -> None:
    from environments.blender_3d.harness import Blender3DHarness
    from environments.blender_3d.rubric import Blender3DRubric
    from llm3d.schemas import RewardResult

    class Stub(Blender3DHarness):
        async def score(self, codes: Any, task_ids: Any) -> list[RewardResult]:
            self.sent = list(task_ids)
            return [
                RewardResult(id="0", status="empty", reward=0.0, components={"format": 0.0})
                for _ in codes
            ]

    harness = Stub()
    states = [make_state("a", "no code"), make_state("b", "")]
    states[1]["error"] = vf_loader.ModelError("endpoint said 500")
    asyncio.run(Blender3DRubric(harness).score_group(states, asyncio.Semaphore(4)))
    assert harness.sent == ["a"]
    assert states[0]["reward"] == 0.0 and states[0]["advantage"] == 0.0
    assert math.isnan(states[1]["reward"])
    assert states[1]["metrics"]["infra_error"] == 1.0
    assert "generation failed: ModelError" in states[1]["llm3d"]["error"]


def test_registration_skips_known_tasks_and_replaces_stale_ones(
    vf_loader: Any, split: Path, farm: Farm
) -> None:
    from dataclasses import replace

    from environments.blender_3d.harness import Blender3DHarness

    harness = Blender3DHarness(farm.url)
    samples = read_split(split)
    harness.register(samples)
    assert harness.register(samples) == 0  # same content: nothing sent again
    # another ground truth under the mug's id (a stale registration) is replaced
    stale = replace(samples[0], mesh=None, code="from bpy_lib import *\nbox()\nexport_scene()\n")
    assert harness.register([stale]) == 1
    assert harness.register(samples) == 1
    tasks = {t["task_id"]: t for t in httpx.get(farm.url + "/tasks").json()["tasks"]}
    assert tasks[samples[0].id]["kind"] == "mesh"


def test_tasks_the_harness_registered_are_selected_by_their_id(split: Path, farm: Farm) -> None:
    """The harness registers each task with its views (the row's images), so a trainer can
    choose among candidates by ``task_id`` alone; a task registered without its views (an
    older harness) gets them on the next registration."""
    from environments.blender_3d.harness import Blender3DHarness
    from llm3d.client import RewardClient

    samples = {s.id: s for s in read_split(split)}
    mug, table = samples["eval-mug"], samples["eval-table"]
    harness = Blender3DHarness(farm.url)
    with RewardClient(farm.url) as client:
        client.add_task(mug.id, {"code": mug.code}, replace=True)  # no views
        assert harness.register(list(samples.values())) >= 1
        tasks = {t.task_id: t for t in client.tasks().tasks}
        cameras = client.health()["render_views"]
        assert tasks[mug.id].views == len(mug.images) == len(cameras), tasks[mug.id]
        assert tasks[mug.id].kind == "mesh"
        assert harness.register(list(samples.values())) == 0  # views and all: nothing sent
        candidates = [table.code or "", f"```python\n{mug.code}```", BROKEN]
        group = client.select(candidates, task_id=mug.id)
    assert group.error is None and group.best == 1, group
    true = group.candidates[1]
    assert true.status == "ok" and true.match is not None and true.match > 0.9
    assert group.candidates[0].match is not None and group.candidates[0].match < true.match
    assert group.candidates[2].status == "exec_failed" and group.candidates[2].match is None


def test_a_wrong_task_id_raises_instead_of_scoring(vf_loader: Any, farm: Farm) -> None:
    from environments.blender_3d.harness import Blender3DHarness
    from llm3d.exceptions import RewardServiceError

    harness = Blender3DHarness(farm.url)
    with pytest.raises(RewardServiceError, match=r"unknown task_id.*'no-such-task'"):
        harness.score_sync(["from bpy_lib import *\n"], ["no-such-task"])


def test_load_environment_without_splits_says_what_to_pass(vf_loader: Any, tmp_path: Path) -> None:
    from environments.blender_3d.blender_3d import load_environment

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  out_dir: {tmp_path}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="eval_dataset_path"):
        load_environment(config_path=cfg)
