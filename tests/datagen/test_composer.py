"""Composed objects (issue 19, point 2): 2–6 generated parts placed so they touch or stack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datagen.composer import compose_object, place_boxes, solid_parts, touching_groups
from datagen.dataset_builder import plan_sources
from llm3d.config import DataConfig, ExecutorConfig
from tests.datagen.test_build_sources import _sources


def _touching_groups(lo: np.ndarray, hi: np.ndarray) -> int:
    """Connected groups of boxes, two boxes joined when they overlap (or touch)."""
    n = len(lo)
    seen, groups = set(), 0
    for start in range(n):
        if start in seen:
            continue
        groups += 1
        stack = [start]
        seen.add(start)
        while stack:
            a = stack.pop()
            for b in range(n):
                if (
                    b not in seen
                    and np.all(lo[a] <= hi[b] + 1e-9)
                    and np.all(lo[b] <= hi[a] + 1e-9)
                ):
                    seen.add(b)
                    stack.append(b)
    return groups


def test_placed_boxes_form_one_touching_group() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 7))
        extents = rng.uniform(0.05, 1.0, (n, 3))
        centres, e = place_boxes(extents, rng)
        assert _touching_groups(centres - e / 2, centres + e / 2) == 1


def test_the_plan_composes_two_to_six_parts(tmp_path: Path) -> None:
    _, parts, _ = _sources(tmp_path)
    rows = [json.loads(line) for line in (parts / "parts.jsonl").read_text().splitlines()]
    for row in rows:  # the generator records each part's box; these rows are written by hand
        row["bbox"] = [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]
    (parts / "parts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = DataConfig(source_composed=12)
    plan = plan_sources(["composed"], {}, data, 1, parts_dir=parts)
    assert len(plan) == 12 and {s for _, s in plan} == {"sft", "rl", "eval"}
    for obj, _ in plan:
        assert obj.meta["source"] == "composed" and 2 <= obj.n_parts <= 4  # 4 parts to draw from
        assert obj.code.count("move(p, offset=") == obj.n_parts
        assert obj.code.startswith("from bpy_lib import *\n\n# object: object\n# part_1: ")
    assert compose_object(rows, 1, 3).code == plan[3][0].code  # seeded: the same on rerun
    with pytest.raises(ValueError, match="at least 2 generated parts"):
        compose_object(rows[:1], 1, 0)


@pytest.mark.blender
def test_composed_parts_touch_in_blender(
    part_run: tuple[Path, object], exec_config: ExecutorConfig
) -> None:
    """Each part of a kept composition, run alone with its placement, touches another part."""
    from scipy.spatial import cKDTree

    from datagen.object_assembler import assemble
    from worker.execution.executor import Executor
    from worker.geometry.sampling import sample_surface

    out, _ = part_run
    rows = [json.loads(line) for line in (out / "parts.jsonl").read_text().splitlines()]
    rows = solid_parts(rows)
    assert len(rows) >= 10
    floating: list[str] = []
    with Executor(exec_config) as ex:
        for index in range(20):
            obj = compose_object(rows, 7, index)
            whole = ex.run(obj.code)
            assert whole.status.value == "ok", whole.error
            assert np.abs(whole.vertices).max() <= 1.0  # scaled into bpy_lib's frame
            clouds = []
            for part in obj.parts:
                result = ex.run(assemble("part", [part]))
                assert result.status.value == "ok", result.error
                clouds.append(sample_surface(result.vertices, result.faces, 4000, 0).points)
            if touching_groups(whole.vertices, whole.faces) > 1:
                floating.append(obj.id)  # the builder leaves it out
                continue
            # what the builder keeps: every part's surface within 2 % of another part's
            for k, cloud in enumerate(clouds):
                others = np.concatenate([c for j, c in enumerate(clouds) if j != k])
                gap = float(cKDTree(others).query(cloud)[0].min())
                size = float(np.ptp(np.concatenate([cloud, others]), axis=0).max())
                assert gap < 0.02 * size, (obj.id, k, gap)
    assert len(floating) <= 2, floating  # box placement alone keeps nearly all together


def test_touching_groups_finds_a_floating_piece() -> None:
    import trimesh

    from datagen.composer import touching_groups

    a, b, c = trimesh.creation.box(), trimesh.creation.box(), trimesh.creation.box()
    b.apply_translation([0.9, 0, 0.5])  # stacked, overlapping
    c.apply_translation([3.0, 0, 0])  # apart
    two = trimesh.util.concatenate([a, b])
    three = trimesh.util.concatenate([a, b, c])
    assert touching_groups(two.vertices, two.faces) == 1
    assert touching_groups(three.vertices, three.faces) == 2


@pytest.mark.blender
def test_compositions_are_the_middle_tier(part_run: tuple[Path, object]) -> None:
    """Compositions of real generated parts (their operations as generated) grade medium,
    never hard: the curriculum's middle tier between single parts and full objects."""
    from collections import Counter

    out, _ = part_run
    rows = solid_parts([json.loads(x) for x in (out / "parts.jsonl").read_text().splitlines()])
    objects = [compose_object(rows, 11, index) for index in range(60)]
    tiers = Counter(obj.difficulty for obj in objects)
    assert tiers["hard"] == 0, [(o.id, o.complexity) for o in objects if o.difficulty == "hard"]
    assert tiers["medium"] >= 0.7 * len(objects), tiers
    assert all(obj.n_parts >= 2 for obj in objects)
    assert max(obj.n_parts for obj in objects) >= 4  # not only pairs
