"""The part program generators: deterministic, every family reachable, valid house style."""

from __future__ import annotations

import ast
from collections import Counter

import numpy as np
import pytest

from datagen.descriptor import DESCRIPTOR_SIZE, DescriptorIndex, shape_descriptor
from datagen.families import FAMILIES, Ranges, bpy_lib_names, generate_part, ops_used


def test_same_seed_and_index_give_the_same_program() -> None:
    assert generate_part(3, 17).code == generate_part(3, 17).code
    codes = {generate_part(3, i).code for i in range(50)}
    assert len(codes) == 50
    assert generate_part(4, 17).code != generate_part(3, 17).code


def test_every_family_is_drawn_and_programs_are_house_style() -> None:
    parts = [generate_part(0, i) for i in range(600)]
    counts = Counter(p.family for p in parts)
    assert set(counts) == set(FAMILIES)
    for part in parts:
        code = part.code
        ast.parse(code)  # valid Python
        lines = code.splitlines()
        assert lines[0] == "from bpy_lib import *"
        assert "# part_1: " + part.label in lines
        assert lines[-1] == "export_scene()"
        assert part.ops and set(part.ops) <= bpy_lib_names()


def test_families_and_weights_restrict_the_draw() -> None:
    parts = [generate_part(1, i, families=["box", "torus"], weights=[1, 0]) for i in range(30)]
    assert {p.family for p in parts} == {"box"}
    with pytest.raises(ValueError, match="unknown part families"):
        generate_part(0, 0, families=["teapot"])
    with pytest.raises(ValueError, match="weights"):
        generate_part(0, 0, families=["box"], weights=[1, 2])


def test_ranges_bound_the_main_dimensions() -> None:
    small = Ranges(size=(0.2, 0.3), thickness=(0.03, 0.05), modifier_prob=0.0)
    for i in range(40):
        part = generate_part(0, i, small, families=["box"])
        assert all(0.01 <= s <= 0.3 for s in part.params["size"]), part.params


def test_ops_used_ignores_comments_and_unknown_calls() -> None:
    code = "from bpy_lib import *\n# box(size=1)\nx = max(1, 2)\np = cylinder(radius=1, depth=1)\n"
    assert ops_used(code + "taper(p, factor=2)\nexport_scene()\n") == ["cylinder", "taper"]


def _cube(size: float, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (0, size) for y in (0, 1) for z in (0, 1)], float) + offset
    f = np.array(
        [
            [0, 1, 3],
            [0, 3, 2],
            [4, 6, 7],
            [4, 7, 5],
            [0, 4, 5],
            [0, 5, 1],
            [2, 3, 7],
            [2, 7, 6],
            [0, 2, 6],
            [0, 6, 4],
            [1, 5, 7],
            [1, 7, 3],
        ]
    )
    return v, f


def test_descriptor_tells_shapes_apart_and_ignores_position() -> None:
    a = shape_descriptor(*_cube(1.0))
    moved = shape_descriptor(*_cube(1.0, offset=5.0))
    flat = shape_descriptor(*_cube(0.3))
    assert a.shape == (DESCRIPTOR_SIZE,)
    assert np.linalg.norm(a - moved) < 1e-5
    assert np.linalg.norm(a - flat) > 0.2
    index = DescriptorIndex(threshold=0.03, rebuild_every=2)
    assert not index.is_duplicate(a)
    index.add(a)
    assert index.is_duplicate(moved)
    assert not index.is_duplicate(flat)
    index.add(flat)
    index.add(shape_descriptor(*_cube(2.0)))  # triggers a KD-tree rebuild
    assert index.is_duplicate(moved) and len(index) == 3
