"""One build over several sources (issue 19, point 3): templates, assembled Infinigen assets
and generated single parts reach sft/rl/eval, each row saying where it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datagen.dataset_builder import plan_sources
from datagen.families import Ranges, generate_part
from datagen.object_assembler import load_categories
from llm3d.config import DataConfig, ExecutorConfig
from tests.datagen.test_dataset_builder import RENDER

INFINIGEN_ROW = {
    "asset": "SimpleDeskFactory-0000", "id": "infinigen-SimpleDeskFactory-0000",
    "category": "desk", "noun": "desk", "factory": "SimpleDeskFactory",
    "parts": [
        {"label": "legs", "code": "p = box(size=[0.05, 0.05, 1.06], location=[-0.49, -0.83, -0.02])\n"
                                  "grid_array(p, counts=[2, 2], spacing=[0.99, 1.65])"},
        {"label": "top", "code": "p = box(size=[1.1, 1.74, 0.04], location=[0, 0, 0.53])"},
    ],
}  # fmt: skip


def _sources(root: Path) -> tuple[Path, Path, Path]:
    infinigen = root / "infinigen"
    infinigen.mkdir()
    rows = [dict(INFINIGEN_ROW, asset=f"desk-{k}", id=f"infinigen-desk-{k}") for k in range(3)]
    (infinigen / "objects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for k, row in enumerate(rows):
        row["f_score"] = 0.97 + 0.01 * k
    reject = dict(INFINIGEN_ROW, asset="desk-9", f_score=0.41,
                  reason="F@0.05 0.410 against the asset's mesh is below 0.9")  # fmt: skip
    (infinigen / "objects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (infinigen / "rejects.jsonl").write_text(json.dumps(reject) + "\n")
    (infinigen / "failed.jsonl").write_text(json.dumps(
        {"asset": "BedFactory-0000", "factory": "BedFactory", "seed": 0,
         "error": "timed out after 120 s"}) + "\n")  # fmt: skip
    (root / "survey.json").write_text(json.dumps({"factories": {
        "SimpleDeskFactory": {"status": "ok", "parts": 5},
        "WindowFactory": {"status": "failed", "reason": "KeyError: 'frame'"},
    }}))  # fmt: skip
    parts = root / "parts"
    parts.mkdir()
    lines = []
    for k in range(4):
        part = generate_part(5, k, Ranges(modifier_prob=0.0), families=["box", "cylinder"])
        lines.append(json.dumps({"id": f"{k:05d}", "family": part.family, "label": part.label,
                                 "code": part.code}))  # fmt: skip
    (parts / "parts.jsonl").write_text("\n".join(lines) + "\n")
    cats = root / "cats.yaml"
    cats.write_text("categories:\n  stool: {weight: 1.0}\n")
    return infinigen, parts, cats


def test_the_plan_takes_every_source_and_keeps_assets_whole(tmp_path: Path) -> None:
    infinigen, parts, cats = _sources(tmp_path)
    data = DataConfig(objects_per_category=3, source_max_parts=3)
    plan = plan_sources(["templates", "infinigen", "parts"], load_categories(cats), data, 1,
                        infinigen_dir=infinigen, parts_dir=parts)  # fmt: skip
    sources = [obj.meta["source"] for obj, _ in plan]
    assert sources.count("templates") == 3 and sources.count("infinigen") == 3
    assert sources.count("parts") == 3  # data.source_max_parts
    ids = [obj.id for obj, _ in plan]
    assert len(ids) == len(set(ids))
    desk = next(obj for obj, _ in plan if obj.meta["source"] == "infinigen")
    assert desk.code.startswith("from bpy_lib import *\n\n# object: desk\n# part_1: legs\n")
    with pytest.raises(ValueError, match=r"objects\.jsonl not found"):
        plan_sources(["infinigen"], {}, data, 1, infinigen_dir=tmp_path / "none")
    with pytest.raises(ValueError, match="unknown sources"):
        plan_sources(["scans"], {}, data, 1)


@pytest.mark.blender
@pytest.mark.slow
def test_a_build_over_four_sources_writes_rows_of_each(
    tmp_path: Path, exec_config: ExecutorConfig, part_run: tuple[Path, object]
) -> None:
    from tests.datagen.conftest import blender_available

    if not blender_available():
        pytest.skip("bpy is not installed")
    from datagen.dataset_builder import build_dataset

    infinigen, _, cats = _sources(tmp_path)
    parts, _ = part_run  # real generated parts, with the boxes compositions are placed by
    data = DataConfig(objects_per_category=3, source_max_parts=3, source_composed=4,
                      workers=2, in_flight=8,
                      infinigen_survey=tmp_path / "survey.json")  # fmt: skip
    out = tmp_path / "ds"
    summary = build_dataset(
        out, seed=1, data=data, executor=exec_config, render=RENDER, categories_file=cats,
        show_progress=False, sources=["templates", "infinigen", "parts", "composed"],
        infinigen_dir=infinigen, parts_dir=parts,
    )  # fmt: skip
    counts = summary.sources
    assert counts["templates"] == 3 and counts["infinigen"] == 3 and counts["parts"] == 3
    assert counts["composed"] + summary.failed.get("floating", 0) == 4, summary.as_dict()
    rows = [json.loads(line) for s in ("sft", "rl", "eval", "eval_unseen")
            for line in (out / f"{s}.jsonl").read_text().splitlines()]  # fmt: skip
    assert {r["source"] for r in rows} == {"templates", "infinigen", "parts", "composed"}
    composed = [r for r in rows if r["source"] == "composed"]
    assert all(2 <= r["n_parts"] <= 6 for r in composed)
    sft = [r for r in rows if r["split"] == "sft" and r["source"] == "composed"]
    if sft:  # the same chat format: the assistant writes the program
        assert sft[0]["messages"][2]["content"][0]["text"] == sft[0]["code"]
    card = (out / "README.md").read_text()
    assert "## Objects per source and split" in card and "| composed |" in card
    # where the Infinigen objects come from, what was rejected or did not spawn, and which
    # indoor factories the survey found unusable here, each with its reason
    assert "| SimpleDeskFactory | 3 | 1 | 0 | 0.975 |" in card
    assert "| BedFactory | 0 | 0 | 1 | – |" in card
    assert "desk-9: F@0.05 0.410 against the asset's mesh is below 0.9" in card
    assert "BedFactory-0000 did not spawn: timed out after 120 s" in card
    assert "- WindowFactory: failed: KeyError: 'frame'" in card
