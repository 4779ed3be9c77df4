"""``llm3d data ...`` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm3d.cli import app

runner = CliRunner()


def test_data_help_lists_the_stages() -> None:
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0
    for name in ("parts", "assemble", "build", "fit"):
        assert name in result.output


def test_assemble_writes_programs(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "assemble", "--category", "mug", "--n", "2", "--out", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [o["id"] for o in payload["objects"]] == ["mug-00000", "mug-00001"]
    code = (tmp_path / "mug-00000.py").read_text()
    assert code.startswith("from bpy_lib import *") and "# part_1: body" in code
    bad = runner.invoke(app, ["data", "assemble", "--category", "spaceship"])
    assert bad.exit_code == 2 and "unknown categories" in bad.output


@pytest.mark.blender
def test_parts_json_summary(tmp_path: Path) -> None:
    from tests.datagen.conftest import blender_available

    if not blender_available():
        pytest.skip("bpy is not installed")
    args = ["data", "parts", "--n", "6", "--out", str(tmp_path), "--workers", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["kept"] == 6 and payload["samples_per_s"] > 0
    assert len((tmp_path / "parts.jsonl").read_text().splitlines()) == 6


def test_fit_prints_the_program_and_its_score(tmp_path: Path) -> None:
    import trimesh

    from datagen.shapes import box_mesh

    v, f = box_mesh([0.4, 0.4, 1.0])
    mesh = tmp_path / "box.ply"
    trimesh.Trimesh(v, f, process=False).export(mesh)
    out = tmp_path / "fit.py"
    args = [
        "data",
        "fit",
        str(mesh),
        "--no-verify",
        "--families",
        "box,cylinder",
        "--out",
        str(out),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["family"] == "box" and payload["f_score_0.05"] >= 0.99
    assert out.read_text() == payload["program"]
    bad = runner.invoke(app, ["data", "fit", str(tmp_path / "missing.ply")])
    assert bad.exit_code == 2 and "not found" in bad.output
