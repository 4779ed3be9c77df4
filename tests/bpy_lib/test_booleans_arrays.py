"""Booleans (exact volumes, consumed tools, empty results) and array patterns."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpy_lib as bl
from tests.bpy_lib.helpers import box_of, is_closed_and_consistent, only, volume

pytestmark = pytest.mark.blender


def test_difference_cuts_a_hole() -> None:
    block = bl.box(size=1.0)
    drill = bl.cylinder(radius=0.2, depth=2.0, segments=32)
    assert bl.difference(block, drill) == block
    assert bl.parts() == [block]  # the cutter was consumed
    v, f = only(block)
    hole = 0.5 * 32 * 0.04 * math.sin(2 * math.pi / 32)
    assert volume(v, f) == pytest.approx(1.0 - hole, rel=1e-5)
    assert is_closed_and_consistent(f)


def test_union_of_overlapping_boxes_counts_the_overlap_once() -> None:
    a = bl.box(size=1.0)
    b = bl.box(size=1.0, location=[0.5, 0, 0])
    c = bl.box(size=1.0, location=[1.0, 0, 0])
    bl.union(a, b, c)
    v, f = only(a)
    assert volume(v, f) == pytest.approx(2.0, rel=1e-6)
    np.testing.assert_allclose(box_of(v)[1], [1.5, 0.5, 0.5], atol=1e-6)


def test_intersection_keeps_the_shared_volume() -> None:
    a = bl.box(size=1.0)
    b = bl.box(size=1.0, location=[0.5, 0.5, 0])
    bl.intersection(a, b)
    v, f = only(a)
    assert volume(v, f) == pytest.approx(0.25, rel=1e-6)


def test_empty_results_raise_geometry_errors() -> None:
    a = bl.sphere(radius=0.3)
    b = bl.sphere(radius=0.3, location=[1.0, 0, 0])
    with pytest.raises(
        bl.GeometryError, match=r"intersection: the result is empty.*do not overlap"
    ):
        bl.intersection(a, b)
    small = bl.box(size=0.2)
    big = bl.box(size=1.0)
    with pytest.raises(bl.GeometryError, match=r"difference: the result is empty.*smaller"):
        bl.difference(small, big)
    assert set(bl.parts()) == {a, b, small, big}  # nothing was consumed on failure


def test_boolean_argument_errors() -> None:
    a = bl.box(size=0.5)
    with pytest.raises(TypeError, match=r"union: expected at least one other part"):
        bl.union(a)
    with pytest.raises(ValueError, match=r"difference: the part 'box' is given twice"):
        bl.difference(a, a)
    c = bl.circle(radius=0.1)
    with pytest.raises(ValueError, match=r"union\(parts\[1\]\): no part named 'circle'"):
        bl.union(a, c)


def test_linear_array_counts_and_extent() -> None:
    rung = bl.box(size=[0.1, 0.1, 0.1])
    bl.linear_array(rung, count=5, offset=[0.2, 0, 0])
    v, f = only(rung)
    assert len(f) == 5 * 12
    np.testing.assert_allclose(box_of(v)[1], [0.85, 0.05, 0.05], atol=1e-6)
    assert volume(v, f) == pytest.approx(5 * 0.001, rel=1e-6)


def test_grid_array_2d_and_3d() -> None:
    leg = bl.cylinder(radius=0.02, depth=0.4, segments=8, location=[0.3, 0.3, 0])
    bl.grid_array(leg, counts=[2, 3], spacing=[-0.6, -0.3])
    v, f = only(leg)
    assert len(v) == 6 * 18
    lo, hi = box_of(v)
    np.testing.assert_allclose([lo[0], lo[1], hi[0], hi[1]], [-0.32, -0.32, 0.32, 0.32], atol=1e-6)
    bl.clear_scene()
    cube = bl.box(size=0.1)
    bl.grid_array(cube, counts=[2, 2, 2], spacing=[0.2, 0.2, 0.2])
    v, f = only(cube)
    assert volume(v, f) == pytest.approx(8 * 0.001, rel=1e-6)


def test_radial_array_full_and_partial() -> None:
    tooth = bl.box(size=[0.1, 0.05, 0.05], location=[0.5, 0, 0])
    bl.radial_array(tooth, count=12)
    v, _ = only(tooth)
    assert len(v) == 12 * 8
    radii = np.linalg.norm(v[:, :2].astype(np.float64), axis=1)
    assert radii.max() == pytest.approx(math.hypot(0.55, 0.025), abs=1e-5)
    bl.clear_scene()
    arm = bl.box(size=[0.1, 0.05, 0.05], location=[0.5, 0, 0])
    bl.radial_array(arm, count=3, angle=90, axis="Z")
    v, _ = only(arm)
    # copies at 0, 45 and 90 degrees: the last one sits on +Y
    assert v[:, 1].max() == pytest.approx(0.55, abs=1e-5)
    assert v[:, 1].min() == pytest.approx(-0.025, abs=1e-5)


def test_array_limits() -> None:
    s = bl.sphere(radius=0.1, segments=256, rings=128)
    with pytest.raises(ValueError, match=r"linear_array: 100 copies of \d+ vertices exceed 200000"):
        bl.linear_array(s, count=100, offset=[0.01, 0, 0])
    with pytest.raises(
        ValueError, match=r"linear_array\(count\): expected a whole number in \[1, 100\]"
    ):
        bl.linear_array(s, count=0, offset=[0.01, 0, 0])
