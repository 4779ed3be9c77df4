"""scripts/build_object_dataset.sh runs the whole chain on a tiny config and resumes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from llm3d.config import REPO_ROOT

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def test_the_script_builds_every_source_and_resumes(tmp_path: Path) -> None:
    from tests.datagen.conftest import blender_available

    if not blender_available():
        pytest.skip("bpy is not installed")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"data:\n  out_dir: {tmp_path / 'data'}\n  n_part_samples: 30\n  shard_size: 30\n"
        "  objects_per_category: 1\n  source_max_parts: 4\n  source_composed: 4\n"
        "  sources: [templates, infinigen, parts, composed]\n"
        "render:\n  resolution: 64\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM3D_")}
    env.update(CONFIG=str(config), LLM3D_DATA__INFINIGEN_PYTHON=str(tmp_path / "no-python"))
    script = REPO_ROOT / "scripts" / "build_object_dataset.sh"
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the build skips them" in done.stdout  # no sidecar: said, not failed
    out = tmp_path / "data" / "objects"
    rows = [json.loads(line) for s in ("sft", "rl", "eval", "eval_unseen")
            for line in (out / f"{s}.jsonl").read_text().splitlines()]  # fmt: skip
    assert {r["source"] for r in rows} == {"templates", "parts", "composed"}
    assert {r["category"] for r in rows if r["split"] == "eval_unseen"} == {"ladder"}
    again = subprocess.run([str(script), "--json"], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(
        again.stdout[again.stdout.index('{\n  "out_dir"') :].split("\n}\n")[0] + "\n}"
    )
    assert summary["built_this_run"] == 0 and summary["objects"] == len(rows)
