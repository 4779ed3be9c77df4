"""Honest splits (issue 19, point 4): no asset and no near-duplicate in two splits, whole
categories held out into eval_unseen (no Blender: descriptors and rows from plain files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datagen.dataset_builder import plan_sources, split_rows
from datagen.descriptor import DESCRIPTOR_SIZE, shape_descriptor
from datagen.object_assembler import load_categories
from datagen.splits import SplitItem, separate
from llm3d.chat import ChatRow
from llm3d.config import DataConfig
from tests.datagen.test_build_sources import _sources


def _desc(k: float) -> np.ndarray:
    return np.full(DESCRIPTOR_SIZE, k, dtype=np.float32)


def test_near_duplicates_and_one_asset_share_one_split() -> None:
    items = [
        SplitItem("a", "a", "sft", _desc(0.0)),
        SplitItem("b", "b", "sft", _desc(0.001)),  # a near-copy of a
        SplitItem("c", "c", "eval", _desc(0.002)),  # ... and of b: all three one group
        SplitItem("d", "asset-1", "sft", _desc(1.0)),
        SplitItem("e", "asset-1", "rl", _desc(2.0)),  # same asset, different shape
        SplitItem("f", "f", "eval", _desc(3.0)),
    ]
    out = separate(items, threshold=0.03)
    assert out.splits["a"] == out.splits["b"] == out.splits["c"] == "sft"  # the majority
    assert out.splits["d"] == out.splits["e"] == "sft"  # a tie: the first split
    assert out.splits["f"] == "eval"
    assert out.moved == 2 and out.dropped == 0 and out.groups_joined == 2
    # threshold 0: only the asset joins
    only_assets = separate(items, threshold=0.0).splits
    assert only_assets["c"] == "eval" and only_assets["e"] == "sft"


def test_near_copies_of_a_held_out_shape_leave_training() -> None:
    items = [
        SplitItem("ladder-0", "ladder-0", "eval_unseen", _desc(0.5)),
        SplitItem("part-7", "part-7", "sft", _desc(0.501)),
        SplitItem("mug-0", "mug-0", "rl", _desc(0.9)),
    ]
    out = separate(items, threshold=0.03)
    assert out.splits == {"ladder-0": "eval_unseen", "part-7": None, "mug-0": "rl"}
    assert out.dropped == 1
    with pytest.raises(ValueError, match="unknown splits"):
        separate([SplitItem("x", "x", "test", _desc(0))], 0.03)


def test_the_plan_holds_out_whole_categories(tmp_path: Path) -> None:
    infinigen, parts, _ = _sources(tmp_path)
    cats = tmp_path / "cats3.yaml"
    cats.write_text("categories:\n  stool: {weight: 1.0}\n  mug: {weight: 1.0}\n"
                    "  ladder: {weight: 1.0}\n")  # fmt: skip
    data = DataConfig(objects_per_category=10, source_max_parts=4, unseen_categories=["ladder"])
    plan = plan_sources(["templates", "infinigen", "parts"], load_categories(cats), data, 1,
                        infinigen_dir=infinigen, parts_dir=parts)  # fmt: skip
    by_split: dict[str, set[str]] = {}
    for obj, split in plan:
        by_split.setdefault(split, set()).add(obj.category)
    assert by_split["eval_unseen"] == {"ladder"}
    for split in ("sft", "rl", "eval"):
        assert "ladder" not in by_split[split]
        assert {"stool", "mug"} <= by_split[split]
    with pytest.raises(ValueError, match=r"eval_unseen is set by data\.unseen_categories"):
        plan_sources(["templates"], load_categories(cats),
                     DataConfig(splits={"sft": 0.9, "eval_unseen": 0.1}), 1)  # fmt: skip


def _write_object(out: Path, oid: str, split: str, category: str, vertices: np.ndarray,
                  asset: str | None = None) -> None:  # fmt: skip
    import trimesh

    faces = trimesh.creation.box().faces
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    (out / "meshes").mkdir(exist_ok=True)
    (out / "objects").mkdir(exist_ok=True)
    (out / "images" / oid).mkdir(parents=True, exist_ok=True)
    mesh.export(out / "meshes" / f"{oid}.ply")
    (out / "images" / oid / "front.png").write_bytes(b"")
    meta = {
        "id": oid,
        "source": "templates",
        "asset": asset or oid,
        "category": category,
        "noun": category,
        "split": split,
        "code": "from bpy_lib import *\nexport_scene()\n",
        "n_parts": 1,
        "ops": [],
        "complexity": 1.0,
        "difficulty": "easy",
        "views": ["front"],
        "status": "ok",
        "mesh": f"meshes/{oid}.ply",
        "images": [f"images/{oid}/front.png"],
    }  # fmt: skip  (no descriptor: an older build's object, computed from its mesh)
    (out / "objects" / f"{oid}.json").write_text(json.dumps(meta))


def test_split_rows_never_put_a_shape_in_two_splits(tmp_path: Path) -> None:
    import trimesh

    cube = trimesh.creation.box().vertices
    slab = cube * np.array([1.0, 0.2, 0.05])
    _write_object(tmp_path, "stool-0", "sft", "stool", cube * 0.5)
    _write_object(tmp_path, "stool-1", "eval", "stool", cube * 0.7)  # the same shape, scaled
    _write_object(tmp_path, "ladder-0", "eval_unseen", "ladder", slab * 0.9 + 0.1)
    # near-copies of the held-out shape, planned for eval and for training
    _write_object(tmp_path, "shelf-0", "eval", "shelf", slab)
    _write_object(tmp_path, "board-0", "sft", "board", slab * 0.3)
    rows, outcome = split_rows(tmp_path, "reference", dedup_threshold=0.03)
    ids = {s: [r["id"] for r in rs] for s, rs in rows.items()}
    assert ids == {"sft": ["stool-0", "stool-1"], "rl": [], "eval": [],
                   "eval_unseen": ["ladder-0"]}  # fmt: skip
    assert outcome.moved == 1 and outcome.dropped == 2  # stool-1; shelf-0 and board-0
    for split, split_rows_ in rows.items():
        for row in split_rows_:
            assert ChatRow.model_validate(row).split == split
    # with near-duplicate detection off only ids and assets keep splits apart
    rows, _ = split_rows(tmp_path, "reference", dedup_threshold=0.0)
    assert [r["id"] for r in rows["eval"]] == ["shelf-0", "stool-1"]


def test_the_descriptor_sees_scaled_copies_as_duplicates() -> None:
    import trimesh

    box = trimesh.creation.box()
    a = shape_descriptor(box.vertices, box.faces)
    b = shape_descriptor(box.vertices * 3 + 1, box.faces)
    c = shape_descriptor(box.vertices * [1, 0.2, 0.05], box.faces)
    assert np.linalg.norm(a - b) < 0.03 < np.linalg.norm(a - c)


def test_the_eval_runner_reads_eval_unseen(tmp_path: Path) -> None:
    import trimesh

    from environments.blender_3d.dataset import read_split
    from training.eval_runner import resolve_split

    _write_object(tmp_path, "ladder-0", "eval_unseen", "ladder", trimesh.creation.box().vertices)
    rows, _ = split_rows(tmp_path, "reference", dedup_threshold=0.03)
    objects = tmp_path / "objects"  # where `llm3d data build` writes by default
    (objects / "eval_unseen.jsonl").write_text(json.dumps(rows["eval_unseen"][0]) + "\n")
    path = resolve_split("eval_unseen", tmp_path)  # `llm3d eval --split eval_unseen`
    assert path == objects / "eval_unseen.jsonl"
    [sample] = read_split(path)
    assert sample.id == "ladder-0" and sample.category == "ladder"


def test_a_large_cluster_of_near_copies_stays_in_one_split() -> None:
    rng = np.random.default_rng(0)
    items = []
    for cluster in range(3):  # more copies than the nearest-neighbour query asks for
        centre = rng.uniform(0, 1, DESCRIPTOR_SIZE)
        for copy in range(25):
            noisy = centre + rng.normal(0, 0.001, DESCRIPTOR_SIZE)
            split = ("sft", "rl", "eval")[copy % 3]
            items.append(SplitItem(f"{cluster}-{copy}", f"{cluster}-{copy}", split,
                                   noisy.astype(np.float32)))  # fmt: skip
    out = separate(items, threshold=0.03)
    for cluster in range(3):
        assert len({out.splits[f"{cluster}-{c}"] for c in range(25)}) == 1
