"""Infinigen assets become verified object programs, or rejects (issue 19, point 1).

``fixtures/infinigen_simple_desk_seed0.npz`` is a real sidecar answer, recorded from
``SimpleDeskFactory`` seed 0 (Infinigen 1.15.5, BSD-3-Clause), so the assembly runs where
the sidecar is not installed; the last test spawns a fresh asset where it is.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from datagen.infinigen_extractor import extract_assets, sidecar_python
from datagen.infinigen_objects import (
    assemble_assets,
    fitted_part_code,
    load_infinigen_categories,
)
from llm3d.config import REPO_ROOT, ExecutorConfig, load_config

DESK = Path(__file__).parent / "fixtures" / "infinigen_simple_desk_seed0.npz"
CATEGORIES = load_infinigen_categories(REPO_ROOT / "configs" / "categories.yaml")

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def runner() -> Iterator[object]:
    from tests.datagen.conftest import blender_available

    if not blender_available():
        pytest.skip("bpy is not installed")
    from worker.execution.executor import Executor

    with Executor(ExecutorConfig(timeout_s=60.0)) as ex:
        yield ex


def _desk_parts(tmp_path: Path) -> Path:
    folder = tmp_path / "infinigen"
    (folder / "raw").mkdir(parents=True)
    shutil.copy(DESK, folder / "raw" / "SimpleDeskFactory-0000.npz")
    # the raw answer exists, so nothing is spawned: the recorded asset is split into parts
    extract_assets(folder, ["SimpleDeskFactory"], [0], python=Path("/nonexistent"))
    return folder


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_real_infinigen_asset_becomes_one_verified_object_program(
    tmp_path: Path, runner: object
) -> None:
    folder = _desk_parts(tmp_path)
    summary = assemble_assets(folder, runner=runner, categories=CATEGORIES, show_progress=False)  # type: ignore[arg-type]
    assert summary["kept"] == 1 and summary["rejected"] == 0
    (row,) = _rows(folder / "objects.jsonl")
    code = str(row["code"])
    assert row["category"] == "desk" and row["source"] == "infinigen"
    assert code.startswith("from bpy_lib import *\n\n# object: desk\n")
    assert code.count("# part_") == row["n_parts"] == 2
    assert code.count("export_scene()") == 1 and code.rstrip().endswith("export_scene()")
    assert "grid_array(" in code  # the four legs stay one repeated part
    assert float(row["f_score"]) >= 0.9  # type: ignore[arg-type]
    # the program itself reproduces the asset: run it again and score it independently
    import numpy as np

    from worker.metrics import compute_metrics, prepare_ground_truth

    with np.load(DESK) as npz:
        gt = prepare_ground_truth(npz["vertices"], npz["faces"], points=5000, seed=3)
    result = runner.run(code)  # type: ignore[attr-defined]
    from datagen.fit_input import FrameTransform

    t = row["transform"]
    back = FrameTransform(tuple(t["centre"]), t["scale"]).to_original(result.vertices)  # type: ignore[index, arg-type]
    assert compute_metrics(back, result.faces, gt)["f_score_0.05"] >= 0.9
    # resumable: a second run does nothing
    again = assemble_assets(folder, runner=runner, categories=CATEGORIES, show_progress=False)  # type: ignore[arg-type]
    assert again["kept"] == 1 and len(_rows(folder / "objects.jsonl")) == 1


def test_objects_below_the_threshold_go_to_the_rejects_file(tmp_path: Path, runner: object) -> None:
    folder = _desk_parts(tmp_path)
    out = tmp_path / "objects"
    summary = assemble_assets(folder, out, runner=runner, min_f_score=1.01,  # type: ignore[arg-type]
                              categories=CATEGORIES, show_progress=False)  # fmt: skip
    assert summary["kept"] == 0 and summary["rejected"] == 1
    assert summary["acceptance_rate"] == 0.0
    assert _rows(out / "objects.jsonl") == []
    (reject,) = _rows(out / "rejects.jsonl")
    assert "below 1.01" in str(reject["reason"]) and float(reject["f_score"]) > 0.5  # type: ignore[arg-type]
    assert "# object: desk" in str(reject["code"])
    # a rerun keeps the verdict; --retry-rejects assembles the rejected asset again
    again = assemble_assets(folder, out, runner=runner, min_f_score=0.9,  # type: ignore[arg-type]
                            categories=CATEGORIES, show_progress=False)  # fmt: skip
    assert again["kept"] == 0 and again["rejected"] == 1
    retried = assemble_assets(folder, out, runner=runner, min_f_score=0.9,  # type: ignore[arg-type]
                              categories=CATEGORIES, show_progress=False, retry_rejects=True)  # fmt: skip
    assert retried["kept"] == 1 and retried["rejected"] == 0
    assert _rows(out / "rejects.jsonl") == [] and len(_rows(out / "objects.jsonl")) == 1


def test_every_configured_factory_has_a_category() -> None:
    from datagen.infinigen_survey import load_survey

    for config in ("configs/default.yaml", "configs/data_small.yaml"):
        factories = load_config(REPO_ROOT / config).data.infinigen_factories
        assert set(factories) <= set(CATEGORIES), config
    # every indoor factory the survey found, so a build can take any that runs
    assert set(load_survey(REPO_ROOT / "configs" / "infinigen_survey.json")) <= set(CATEGORIES)
    assert CATEGORIES["TableDiningFactory"].category == "table"


def test_a_fitted_program_becomes_a_part_body() -> None:
    program = "from bpy_lib import *\n\n# part_1: block\np = box(size=[1, 1, 1])\nexport_scene()\n"
    assert fitted_part_code(program) == "p = box(size=[1, 1, 1])"


@pytest.mark.slow
def test_a_fresh_infinigen_asset_is_assembled(tmp_path: Path, runner: object) -> None:
    python = sidecar_python(load_config().data.infinigen_python)
    if python is None:
        pytest.skip("the Infinigen sidecar is not installed (./scripts/setup_infinigen.sh)")
    folder = tmp_path / "fresh"
    extracted = extract_assets(folder, ["SimpleDeskFactory"], [1], python=python)
    assert extracted["parts"] >= 1, extracted
    summary = assemble_assets(folder, runner=runner, categories=CATEGORIES, show_progress=False)  # type: ignore[arg-type]
    assert summary["assets"] == 1 and summary["kept"] == 1, _rows(folder / "rejects.jsonl")


def test_cli_assembles_an_infinigen_folder(tmp_path: Path, runner: object) -> None:
    from typer.testing import CliRunner

    from llm3d.cli import app

    folder = _desk_parts(tmp_path)
    result = CliRunner().invoke(app, ["data", "assemble", "--infinigen", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kept"] == 1 and summary["per_factory"]["SimpleDeskFactory"]["kept"] == 1
    missing = CliRunner().invoke(app, ["data", "assemble", "--infinigen", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "run `llm3d data infinigen" in missing.output
