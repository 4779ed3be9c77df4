"""``llm3d demo`` (what ./scripts/quickstart.sh shows a new user), run for real."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.api.farm import LLM3D, clean_env


@pytest.mark.blender
@pytest.mark.slow
def test_demo_scores_every_kind_of_candidate_and_writes_comparisons(tmp_path: Path) -> None:
    result = subprocess.run(
        [*LLM3D, "demo", "--out", str(tmp_path), "--json"],
        env=clean_env({}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    by_id = {r["id"]: r for r in data["results"]}
    exact = [r for i, r in by_id.items() if i.endswith("/exact")]
    assert len(exact) == 4 and all(r["status"] == "ok" and r["reward"] > 0.95 for r in exact)
    for name in ("table", "chair", "mug", "desk_lamp"):
        assert by_id[f"{name}/x0.75"]["reward"] < by_id[f"{name}/exact"]["reward"] + 1e-9
    assert by_id["table/os_system"]["status"] == "refused"
    assert by_id["busy_loop"]["status"] == "timeout"
    assert all(r["reward"] is not None for r in data["results"]), "no infra_error in the demo"
    assert data["cached_second_pass"] == len(data["results"])
    images = [Path(p) for p in data["images"]]
    assert len(images) == 4 and all(p.is_file() and p.stat().st_size > 10_000 for p in images)
    assert (tmp_path / "server.log").is_file()
