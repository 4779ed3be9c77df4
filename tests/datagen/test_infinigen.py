"""The Infinigen extractor: splitting/labelling on a recorded fixture, the sidecar protocol.

``fixtures/infinigen_table.npz`` has the layout the sidecar writes (vertices, faces, a
label per face, label names): a dining table whose top and legs are two material slots,
plus a helper speck that must be dropped. It is synthetic (boxes), made without
Infinigen, which this machine does not have; the real run at the end needs the sidecar.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datagen.infinigen_extractor import extract_assets, sidecar_python, split_parts
from llm3d.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "infinigen_table.npz"


def _fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as npz:
        return {k: npz[k] for k in npz.files}


def test_labels_make_the_parts_and_helpers_are_dropped() -> None:
    data = _fixture()
    parts = split_parts(
        data["vertices"], data["faces"], data["face_labels"], [str(x) for x in data["label_names"]]
    )
    assert sorted(p.label for p in parts) == ["leg_metal", "top_wood"]
    legs = next(p for p in parts if p.label == "leg_metal")
    assert len(legs.faces) == 4 * 12  # four loose legs stay one part
    assert legs.faces.max() == len(legs.vertices) - 1


def test_without_labels_loose_pieces_split_and_copies_stay_together() -> None:
    data = _fixture()
    parts = split_parts(data["vertices"], data["faces"])
    # top, and the four equal legs as one part; the speck is under 3 % of the asset's size
    assert sorted(len(p.faces) for p in parts) == [12, 48]
    assert sorted(p.label for p in parts) == ["piece 1", "piece 2"]


FAKE_SIDECAR = """#!{python}
import json, shutil, sys
request = json.loads(sys.argv[3])
if request["factory"] == "BrokenFactory":
    print(json.dumps({{"ok": False, "error": "LookupError: no factory"}}))
    sys.exit(1)
shutil.copy({fixture!r}, request["out"])
print("noise from Blender")
print(json.dumps({{"ok": True, "out": request["out"], "labels": []}}))
"""


def test_sidecar_protocol_resume_and_failures(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(FAKE_SIDECAR.format(python=sys.executable, fixture=str(FIXTURE)))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "ig"
    summary = extract_assets(out, ["TableDiningFactory", "BrokenFactory"], [0, 1], python=fake)
    assert summary["parts"] == 4  # two assets × (top, legs)
    assert set(summary["failed"]) == {"BrokenFactory-0000", "BrokenFactory-0001"}
    failed = [json.loads(x) for x in (out / "failed.jsonl").read_text().splitlines()]
    assert [(r["factory"], r["seed"]) for r in failed] == [
        ("BrokenFactory", 0),
        ("BrokenFactory", 1),
    ]
    assert all("no factory" in r["error"] for r in failed)  # the card says why
    from datagen.part_generator import iter_parts

    parts = list(iter_parts(out))  # the part generator's layout: the fitter reads it too
    assert len(parts) == 4
    for row, _, faces in parts:
        assert len(faces) == row["n_faces"]
    fake.write_text("#!/bin/sh\nexit 3\n")  # spawned assets are not spawned again
    again = extract_assets(out, ["TableDiningFactory"], [0, 1], python=fake)
    assert again["parts"] == 4 and not again["failed"]


def test_command_explains_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLM3D_DATA__INFINIGEN_PYTHON", str(tmp_path / "missing" / "python"))
    result = CliRunner().invoke(app, ["data", "infinigen", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["installed"] is False and "setup_infinigen.sh" in payload["hint"]


@pytest.mark.slow
@pytest.mark.skipif(sidecar_python() is None, reason="the Infinigen sidecar is not installed")
def test_real_infinigen_assets(tmp_path: Path) -> None:
    python = sidecar_python()
    assert python is not None
    factories = ["SimpleDeskFactory", "TableDiningFactory", "ChairFactory"]
    summary = extract_assets(tmp_path, factories, [0], python=python, timeout_s=300)
    assert not summary["failed"], summary["failed"]
    rows = [json.loads(x) for x in (tmp_path / "parts.jsonl").read_text().splitlines()]
    assert {r["factory"] for r in rows} == set(factories)
    assert all(r["n_faces"] > 0 for r in rows)


def test_extracted_parts_become_programs(tmp_path: Path) -> None:
    from datagen.fit_runner import fit_parts

    fake = tmp_path / "python"
    fake.write_text(FAKE_SIDECAR.format(python=sys.executable, fixture=str(FIXTURE)))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    extract_assets(tmp_path / "ig", ["TableDiningFactory"], [0], python=fake)
    summary = fit_parts(tmp_path / "ig", show_progress=False, max_evals=40)
    assert summary["parts"] == 2 and summary["share_above_0.9"] == 1.0
    rows = [json.loads(x) for x in (tmp_path / "ig" / "fitted.jsonl").read_text().splitlines()]
    legs = next(r for r in rows if r["label"] == "leg_metal")
    assert legs["family"] == "array" and "grid_array(p, counts=[2, 2]" in legs["program"]
    again = fit_parts(tmp_path / "ig", show_progress=False)
    assert again["fitted_this_run"] == 0 and again["parts"] == 2


@pytest.mark.slow
@pytest.mark.skipif(sidecar_python() is None, reason="the Infinigen sidecar is not installed")
def test_survey_records_what_runs_and_why_the_rest_does_not(tmp_path: Path) -> None:
    from datagen.infinigen_survey import load_survey, skipped, survey_factories

    python = sidecar_python()
    assert python is not None
    path = tmp_path / "survey.json"
    desk = "infinigen.assets.objects.shelves.simple_desk:SimpleDeskFactory"
    records = survey_factories(
        path, python=python, timeout_s=300, show_progress=False,
        factories=[desk, "infinigen.assets.objects.shelves:NoSuchFactory"],
        raw_dir=tmp_path / "ig" / "raw",
    )  # fmt: skip
    assert records["SimpleDeskFactory"]["status"] == "ok"
    # the spawned asset is data infinigen's seed 0: a build over the factory reuses it
    assert [p.name for p in (tmp_path / "ig" / "raw").iterdir()] == ["SimpleDeskFactory-0000.npz"]
    reused = extract_assets(
        tmp_path / "ig", ["SimpleDeskFactory"], [0], python=Path("/nonexistent")
    )
    assert not reused["failed"] and reused["parts"] == records["SimpleDeskFactory"]["parts"]
    assert records["SimpleDeskFactory"]["parts"] >= 2
    assert records["NoSuchFactory"]["status"] == "failed"
    assert "NoSuchFactory" in records["NoSuchFactory"]["reason"]
    # resumable: a surveyed factory is not spawned again; a slow one is a timeout
    again = survey_factories(
        path, python=python, timeout_s=1, show_progress=False,
        factories=[desk, "infinigen.assets.objects.seating:BedFactory"],
    )  # fmt: skip
    assert again["SimpleDeskFactory"] == records["SimpleDeskFactory"]
    assert again["BedFactory"]["status"] == "timeout"
    assert load_survey(path) == again
    why = skipped(again)
    assert set(why) == {"NoSuchFactory", "BedFactory"}
    assert why["BedFactory"].startswith("timeout") and "1 s" in why["BedFactory"]
