"""``llm3d score`` and ``llm3d render`` as a user calls them (in-process, through typer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from llm3d.cli import app
from tests.helpers import meshes

runner = CliRunner()

PROGRAM = """from bpy_lib import *

# object: block
# part_1: body
box(size=[1, 1, 1], name="body")
export_scene()
"""


def write_mesh(path: Path, mesh: meshes.Mesh) -> Path:
    trimesh.Trimesh(*mesh, process=False).export(path)
    return path


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture
def cube_files(tmp_path: Path) -> tuple[Path, Path]:
    gt = write_mesh(tmp_path / "gt.obj", meshes.unit_cube())
    pred = write_mesh(tmp_path / "pred.ply", meshes.unit_cube(centre=(0.1, 0.0, 0.0)))
    return pred, gt


def test_score_two_meshes_as_json(cube_files: tuple[Path, Path]) -> None:
    pred, gt = cube_files
    result = invoke("score", str(pred), str(gt), "--json", "--points", "4000", "--seed", "3")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "ok" and out["points"] == 4000 and out["seed"] == 3
    assert out["reward"] is None  # a mesh has no code to give a format score
    assert 0.6 < out["metrics"]["f_score_0.05"] < 0.75  # the cube moved by 0.1 (see metrics)
    assert out["components"]["gate"] == 5.0
    assert set(out["metrics"]) >= {"chamfer_l2", "hausdorff_90", "chamfer_unit_x1000"}


def test_score_prints_a_table(cube_files: tuple[Path, Path]) -> None:
    pred, gt = cube_files
    result = invoke("score", str(pred), str(gt), "--points", "1000")
    assert result.exit_code == 0, result.output
    for word in ("status", "f_score_0.05", "normal_consistency", "component gated"):
        assert word in result.stdout


def test_score_explains_bad_inputs(tmp_path: Path, cube_files: tuple[Path, Path]) -> None:
    pred, gt = cube_files
    missing = invoke("score", str(tmp_path / "nope.obj"), str(gt))
    assert missing.exit_code == 2 and "no such file" in missing.output
    (tmp_path / "notes.txt").write_text("hello")
    wrong = invoke("score", str(tmp_path / "notes.txt"), str(gt))
    assert wrong.exit_code == 2 and ".py" in wrong.output
    point = write_mesh(tmp_path / "point.obj", meshes.flat_sheet())
    point_v = np.zeros((3, 3))
    trimesh.Trimesh(point_v, [[0, 1, 2]], process=False).export(tmp_path / "dot.ply")
    unusable = invoke("score", str(pred), str(tmp_path / "dot.ply"))
    assert unusable.exit_code == 2 and "ground truth" in unusable.output
    assert invoke("score", str(point), str(gt), "--points", "500").exit_code == 0


@pytest.mark.blender
def test_score_a_program_against_itself_gives_the_full_reward(tmp_path: Path) -> None:
    program = tmp_path / "block.py"
    program.write_text(PROGRAM)
    result = invoke("score", str(program), str(program), "--json", "--points", "2000")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "ok"
    assert out["components"]["format"] == 1.0
    # independent samples of the two (DESIGN §3): the sampling floor, not 0, at 2 000 points
    assert out["metrics"]["f_score_0.05"] >= 0.9 and 0.0 < out["metrics"]["chamfer_l2"] < 1e-3
    assert out["reward"] == pytest.approx(1.0)
    assert out["reward_version"]
    # the same program against a mesh of another shape: the full path, a lower reward
    other = write_mesh(tmp_path / "tall.stl", meshes.box((0.5, 0.5, 3.0)))
    lower = json.loads(invoke("score", str(program), str(other), "--json").stdout)
    assert lower["status"] == "ok" and lower["reward"] < 0.9


@pytest.mark.blender
def test_score_a_failing_program_lands_in_its_gate(tmp_path: Path) -> None:
    program = tmp_path / "broken.py"
    program.write_text("from bpy_lib import *\n# part_1: body\nraise ValueError('nope')\n")
    gt = write_mesh(tmp_path / "gt.obj", meshes.unit_cube())
    out = json.loads(invoke("score", str(program), str(gt), "--json").stdout)
    assert out["status"] == "exec_failed"
    assert out["components"]["gated"] == 0.05
    assert out["reward"] == pytest.approx(0.9 * 0.05 + 0.1 * 2 / 3)
    assert out["metrics"] == {}


@pytest.mark.blender
def test_render_writes_the_views_of_a_mesh_and_a_program(tmp_path: Path) -> None:
    mesh = write_mesh(tmp_path / "cube.glb", meshes.unit_cube())
    result = invoke("render", str(mesh), "--out", str(tmp_path / "views"), "--json")
    assert result.exit_code == 0, result.output
    views = [Path(p) for p in json.loads(result.stdout)["views"]]
    assert [p.name for p in views] == ["front.png", "side.png", "top.png", "three_quarter.png"]
    assert all(p.stat().st_size > 0 for p in views)
    program = tmp_path / "block.py"
    program.write_text(PROGRAM)
    result = invoke("render", str(program), "--out", str(tmp_path / "prog"), "--prefix", "p_")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "prog" / "p_front.png").is_file()


@pytest.mark.blender
def test_score_writes_a_comparison_grid(cube_files: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = cube_files
    grid = tmp_path / "grid.png"
    result = invoke("score", str(pred), str(gt), "--points", "1000", "--grid", str(grid), "--json")
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(grid) as image:
        assert image.width > 4 * 256 and image.height > 2 * 256
