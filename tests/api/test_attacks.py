"""Every attack class of the security suite, sent through the real reward API and ``llm3d run``.

A real ``llm3d serve`` (inline backend, jailed fork servers) holds a Bearer token in its
environment and serves a ground truth registered from a file in a dataset folder. One batch
carries every hostile program of ``tests/worker/test_security.py`` and the red team's routes
(the numpy use-after-free, the ``match`` format walk to ``os.environ``), plus an honest copy
of the ground truth. Each hostile item gets the program's own status and a low reward, the
honest one scores 1.0, no answer carries the token or the ground truth's contents, the file
is untouched, and the service (same process) answers ``/healthz`` afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.farm import Farm, start_farm
from tests.worker.test_security import HOSTILE

pytestmark = [pytest.mark.blender, pytest.mark.slow]

TOKEN = f"attack-token-{uuid.uuid4().hex}"
GT_MARK = f"ground-truth-{uuid.uuid4().hex}"
HONEST = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0, 1.0])\nexport_scene()\n"
RED_TEAM = {
    "numpy-use-after-free": (
        "from bpy_lib import *\nbox(size=[1, 1, 1])\nv, f = export_scene()\nw = v[0]\n"
        "v.resize((1 << 16, 3), refcheck=False)\nprint(w)\n"
    ),
    "match-format-environ": (
        "from bpy_lib import *\n"
        'match "{0.__globals__[os].environ}":\n'
        "    case str(format=fm):\n"
        "        raise ValueError(fm(box))\n"
    ),
    "lone-surrogate-error": 'from bpy_lib import *\nraise ValueError("\\ud800")\n',
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Farm, Path]]:
    tmp = tmp_path_factory.mktemp("attacks")
    dataset = tmp / "dataset"
    dataset.mkdir()
    truth = dataset / "cube.obj"
    truth.write_text(
        f"# {GT_MARK}\n"
        + "".join(f"v {x} {y} {z}\n" for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5))
        + "f 1 2 4 3\nf 5 7 8 6\nf 1 5 6 2\nf 3 4 8 7\nf 1 3 7 5\nf 2 6 8 4\n"
    )
    farm = start_farm("inline", tmp, extra_env={"LLM3D_API_TOKEN": TOKEN})
    try:
        yield farm, truth
    finally:
        farm.stop()


def _items(truth: Path) -> list[dict[str, object]]:
    canary = truth.parent
    items: list[dict[str, object]] = []
    for name, (body, _) in HOSTILE.items():
        code = "from bpy_lib import *\n" + body.replace("{canary}", str(canary)).format()
        if len(code.encode()) > 65_536:
            continue  # refused at the door (422), below
        items.append({"id": f"hostile-{name}", "code": code, "reference": {"code": HONEST}})
    for name, code in RED_TEAM.items():
        items.append({"id": f"red-{name}", "code": code, "reference": {"code": HONEST}})
    items.append({"id": "honest", "code": HONEST, "reference": {"code": HONEST}})
    return items


def test_every_attack_class_is_contained_by_the_reward_api(served: tuple[Farm, Path]) -> None:
    farm, truth = served
    before = truth.read_text()
    items = _items(truth)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=farm.url, timeout=300, headers=headers) as http:
        pid = farm.api.pid
        response = http.post("/reward/batch", json={"items": items, "timeout_s": 3.0})
        assert response.status_code == 200, response.text[:500]
        assert TOKEN not in response.text and GT_MARK not in response.text
        results = {r["id"]: r for r in response.json()["results"]}
        assert list(results) == [i["id"] for i in items]
        for item_id, result in results.items():
            if item_id == "honest":
                assert result["status"] == "ok" and result["reward"] == pytest.approx(1.0, abs=0.01)
                continue
            assert result["status"] in {"refused", "exec_failed", "timeout", "empty"}, result
            assert result["reward"] is not None and result["reward"] < 0.2, result
        assert http.get("/healthz").status_code == 200
        assert farm.api.pid == pid and farm.api.alive()
    assert truth.read_text() == before
    assert [p.name for p in truth.parent.iterdir()] == ["cube.obj"]


def test_oversized_programs_are_refused_at_the_door(served: tuple[Farm, Path]) -> None:
    farm, _ = served
    headers = {"Authorization": f"Bearer {TOKEN}"}
    big = [n for n, (body, _) in HOSTILE.items() if len(body.encode()) > 65_536]
    assert big
    with httpx.Client(base_url=farm.url, timeout=60, headers=headers) as http:
        for name in big:
            code = "from bpy_lib import *\n" + HOSTILE[name][0]
            response = http.post(
                "/reward/batch",
                json={"items": [{"id": name, "code": code, "reference": {"code": HONEST}}]},
            )
            assert response.status_code == 422 and "65,536" in response.text
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("name", list(RED_TEAM))
def test_llm3d_run_contains_the_red_team_programs(name: str, tmp_path: Path) -> None:
    program = tmp_path / "attack.py"
    program.write_text(RED_TEAM[name])
    proc = subprocess.run(
        [sys.executable, "-m", "llm3d.cli", "run", str(program), "--json", "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "LLM3D_API_TOKEN": TOKEN, "HOME": str(tmp_path)},
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    payload = json.loads(proc.stdout)
    assert payload["status"] in {"refused", "exec_failed"}
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
