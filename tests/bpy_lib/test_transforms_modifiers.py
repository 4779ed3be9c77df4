"""Transforms (pivot semantics, mirror orientation) and applied modifiers/deformers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpy_lib as bl
from tests.bpy_lib.helpers import area, box_of, is_closed_and_consistent, only, volume

pytestmark = pytest.mark.blender


def test_move_and_rotate_about_own_pivot() -> None:
    bar = bl.box(size=[1.0, 0.1, 0.1], location=[0.5, 0, 0])
    bl.rotate(bar, angles=[0, 0, 90])
    lo, hi = box_of(only(bar)[0])
    np.testing.assert_allclose([lo, hi], [[0.45, -0.5, -0.05], [0.55, 0.5, 0.05]], atol=1e-6)
    bl.move(bar, offset=[-0.5, 0, 0.2])
    lo, hi = box_of(only(bar)[0])
    np.testing.assert_allclose([lo, hi], [[-0.05, -0.5, 0.15], [0.05, 0.5, 0.25]], atol=1e-6)


def test_rotate_about_a_world_pivot_and_quaternion_matches_euler() -> None:
    a = bl.box(size=0.1, location=[0.5, 0, 0])
    bl.rotate(a, angles=[0, 0, 90], pivot=[0, 0, 0])
    centre = np.mean(box_of(only(a)[0]), axis=0)
    np.testing.assert_allclose(centre, [0, 0.5, 0], atol=1e-6)
    bl.clear_scene()
    e = bl.box(size=[0.4, 0.2, 0.1], name="e")
    q = bl.box(size=[0.4, 0.2, 0.1], name="q")
    bl.rotate(e, angles=[30, 0, 0])
    s = math.sin(math.radians(15))
    bl.rotate(q, quaternion=[math.cos(math.radians(15)), s, 0, 0])
    np.testing.assert_allclose(bl.bounds(e), bl.bounds(q), atol=1e-5)
    with pytest.raises(ValueError, match=r"rotate\(angles, quaternion\): give exactly one"):
        bl.rotate(e)


def test_scale_per_axis_and_about_pivot() -> None:
    s = bl.sphere(radius=0.5, location=[0.2, 0, 0])
    bl.scale(s, factor=[1, 1, 0.5])
    lo, hi = box_of(only(s)[0])
    np.testing.assert_allclose(hi - lo, [1.0, 1.0, 0.5], atol=1e-5)
    np.testing.assert_allclose((lo + hi) / 2, [0.2, 0, 0], atol=1e-6)
    bl.scale(s, factor=2.0, pivot=[0, 0, 0])
    lo, hi = box_of(only(s)[0])
    np.testing.assert_allclose((lo + hi) / 2, [0.4, 0, 0], atol=1e-6)


def test_mirror_copy_keeps_the_solid_outward() -> None:
    w = bl.wedge(size=[0.2, 0.2, 0.2], location=[0.5, 0, 0])
    m = bl.mirror(w, axis="X")
    assert m != w and set(bl.parts()) == {w, m}
    v, f = only(m)
    assert volume(v, f) == pytest.approx(0.004, rel=1e-6)  # positive: faces were flipped
    lo, hi = box_of(v)
    np.testing.assert_allclose([lo[0], hi[0]], [-0.6, -0.4], atol=1e-6)
    # the ramp's tall side (at -X in the original) is now at +X
    tall = v[np.isclose(v[:, 2], 0.1)]
    assert np.allclose(tall[:, 0], -0.4)


def test_mirror_in_place_and_about_a_center() -> None:
    b = bl.box(size=0.1, location=[0.3, 0, 0])
    assert bl.mirror(b, axis="X", center=[0.5, 0, 0], copy=False) == b
    np.testing.assert_allclose(np.mean(bl.bounds(b), axis=0), [0.7, 0, 0], atol=1e-6)
    with pytest.raises(ValueError, match=r"mirror\(name\): only a copy gets a new name"):
        bl.mirror(b, copy=False, name="x")


def test_align_anchors_and_align_axis() -> None:
    b = bl.box(size=[0.2, 0.4, 0.6], location=[0.3, 0.3, 0.3])
    bl.align(b, point=[0, 0, 0], anchor="bottom")
    np.testing.assert_allclose(bl.bounds(b), [[-0.1, -0.2, 0.0], [0.1, 0.2, 0.6]], atol=1e-6)
    bl.align(b, point=[0, 0, 0], anchor="max")
    np.testing.assert_allclose(bl.bounds(b)[1], [0, 0, 0], atol=1e-6)
    rod = bl.cylinder(radius=0.05, depth=1.0)
    bl.align_axis(rod, direction=[1, 1, 0])
    _lo, hi = bl.bounds(rod)
    assert hi[0] == pytest.approx(hi[1], abs=1e-6)
    assert hi[0] > 0.35 and hi[2] < 0.06


def test_solidify_makes_a_wall() -> None:
    sheet = bl.plane(size=[1.0, 1.0])
    bl.solidify(sheet, thickness=0.1, offset=0)
    v, f = only(sheet)
    assert is_closed_and_consistent(f)
    assert volume(v, f) == pytest.approx(0.1, rel=1e-5)


def test_subdivide_counts_and_smoothing() -> None:
    cube = bl.box(size=1.0)
    bl.subdivide(cube, levels=2, smooth=False)
    v, f = only(cube)
    assert len(f) == 6 * 16 * 2
    assert volume(v, f) == pytest.approx(1.0, rel=1e-6)
    bl.clear_scene()
    cube = bl.box(size=1.0)
    bl.subdivide(cube, levels=2)
    v, f = only(cube)
    assert volume(v, f) < 0.8  # Catmull-Clark rounds the cube inwards


def test_bevel_rounds_only_sharp_edges() -> None:
    cyl = bl.cylinder(radius=0.3, depth=0.5, segments=32)
    before = len(only(cyl)[1])
    bl.bevel(cyl, width=0.05, segments=2)
    v, f = only(cyl)
    assert len(f) > before
    assert is_closed_and_consistent(f)
    _lo, hi = box_of(v)
    np.testing.assert_allclose(hi, [0.3, 0.3, 0.25], atol=1e-4)


def test_twist_keeps_volume_and_turns_the_top() -> None:
    col = bl.box(size=[0.4, 0.2, 1.0])
    bl.subdivide(col, levels=3, smooth=False)
    v0, f0 = only(col)
    bl.twist(col, angle=90)
    v, f = only(col)
    assert volume(v, f) == pytest.approx(volume(v0, f0), rel=0.02)
    top = v[np.isclose(v[:, 2], 0.5)]
    np.testing.assert_allclose(np.abs(top[:, :2]).max(axis=0), [0.1, 0.2], atol=1e-5)


def test_taper_scales_the_high_end() -> None:
    col = bl.box(size=[0.4, 0.4, 1.0])
    bl.taper(col, factor=0.5)
    v, f = only(col)
    top = v[np.isclose(v[:, 2], 0.5)]
    np.testing.assert_allclose(np.abs(top[:, :2]).max(), 0.1, atol=1e-6)
    # a square frustum from side 0.4 to 0.2
    assert volume(v, f) == pytest.approx((0.16 + 0.04 + 0.08) / 3, rel=1e-6)


def test_bend_keeps_the_centre_line_length() -> None:
    rod = bl.box(size=[0.02, 0.02, 1.0])
    bl.subdivide(rod, levels=3, smooth=False)
    bl.bend(rod, angle=90, axis="Z", toward="X")
    v, _ = only(rod)
    r = 1.0 / (math.pi / 2)
    _lo, hi = box_of(v)
    assert hi[0] == pytest.approx(r, abs=0.011)  # the free end reaches x = R
    assert hi[2] == pytest.approx(-0.5 + r, abs=0.011)
    bl.clear_scene()
    rod = bl.box(size=[0.02, 0.02, 1.0])
    with pytest.raises(ValueError, match=r"bend\(toward\): must differ from axis 'Z'"):
        bl.bend(rod, angle=30, axis="Z", toward="Z")


def test_simple_deform_names_the_deformers() -> None:
    a = bl.box(size=[0.4, 0.4, 1.0], name="a")
    b = bl.box(size=[0.4, 0.4, 1.0], name="b")
    bl.taper(a, factor=0.5)
    bl.simple_deform(b, method="taper", amount=0.5)
    assert bl.bounds(a) == bl.bounds(b)
    with pytest.raises(ValueError, match=r"simple_deform\(method\): expected one of 'twist'"):
        bl.simple_deform(b, method="stretch", amount=1)


def test_area_helper_sanity() -> None:
    p = bl.plane(size=[0.5, 0.4])
    assert area(*only(p)) == pytest.approx(0.2, rel=1e-6)
