"""Curves and sweeps: extrude, revolve, sweep and loft checked against analytic solids."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpy_lib as bl
from tests.bpy_lib.helpers import area, box_of, is_closed_and_consistent, only, volume

pytestmark = pytest.mark.blender


def polygon_area(n: int, r: float) -> float:
    return 0.5 * n * r * r * math.sin(2 * math.pi / n)


def test_curves_export_no_faces_and_are_reusable() -> None:
    c = bl.circle(radius=0.3)
    assert len(bl.export_scene()[1]) == 0
    a = bl.extrude(c, depth=0.2)
    b = bl.extrude(c, depth=-0.2)
    assert a != b
    assert bl.parts() == sorted([a, b])


def test_extrude_circle_is_a_cylinder() -> None:
    c = bl.circle(radius=0.3, segments=48, center=[0.1, 0, -0.2])
    handle = bl.extrude(c, depth=0.5)
    v, f = only(handle)
    assert is_closed_and_consistent(f)
    assert volume(v, f) == pytest.approx(polygon_area(48, 0.3) * 0.5, rel=1e-6)
    lo, hi = box_of(v)
    np.testing.assert_allclose([lo[2], hi[2]], [-0.2, 0.3], atol=1e-6)


def test_extrude_direction_and_open_profile() -> None:
    line = bl.polyline(points=[[0, 0], [0.5, 0]])
    with pytest.raises(ValueError, match=r"extrude\(direction\): .* straight line"):
        bl.extrude(line, depth=0.3)
    sheet = bl.extrude(line, depth=0.3, direction=[0, 0, 1])
    v, f = only(sheet)
    assert area(v, f) == pytest.approx(0.15, rel=1e-6)


def test_revolve_rectangle_is_a_cylinder() -> None:
    r = bl.rectangle(width=0.3, height=1.0, center=[0.15, 0, 0.5], plane="XZ")
    handle = bl.revolve(r, segments=64)
    v, f = only(handle)
    assert is_closed_and_consistent(f)
    assert volume(v, f) == pytest.approx(polygon_area(64, 0.3) * 1.0, rel=1e-6)
    lo, hi = box_of(v)
    np.testing.assert_allclose(lo, [-0.3, -0.3, 0.0], atol=1e-5)
    np.testing.assert_allclose(hi, [0.3, 0.3, 1.0], atol=1e-5)


def test_revolve_about_x_with_center_and_partial_angle() -> None:
    r = bl.rectangle(width=1.0, height=0.2, center=[0, 0, 0.2], plane="XZ")  # z in [0.1, 0.3]
    half = bl.revolve(r, axis="X", angle=180, segments=64)
    v, f = only(half)
    assert is_closed_and_consistent(f)
    ring = math.pi * (0.3**2 - 0.1**2) * 1.0
    assert volume(v, f) == pytest.approx(ring / 2, rel=0.01)


def test_revolve_rejects_a_profile_across_the_axis() -> None:
    r = bl.rectangle(width=0.4, height=0.4, plane="XY")
    with pytest.raises(ValueError, match=r"revolve\(profile\): .* plane through the Z axis"):
        bl.revolve(r)


def test_straight_sweep_is_a_cylinder() -> None:
    path = bl.polyline(points=[[0, 0, -0.5], [0, 0, 0.5]])
    tube = bl.sweep(path, radius=0.1, segments=32)
    v, f = only(tube)
    assert is_closed_and_consistent(f)
    assert volume(v, f) == pytest.approx(polygon_area(32, 0.1), rel=1e-6)


def test_closed_path_sweep_mitres_the_corners() -> None:
    """A picture frame: a 0.05 x 0.02 section around a 1 x 0.6 rectangle."""
    path = bl.rectangle(width=1.0, height=0.6)
    section = bl.rectangle(width=0.05, height=0.02)
    frame = bl.sweep(path, profile=section)
    v, f = only(frame)
    assert is_closed_and_consistent(f)
    assert volume(v, f) == pytest.approx(3.2 * 0.05 * 0.02, rel=1e-6)
    _lo, hi = box_of(v)
    np.testing.assert_allclose(hi, [0.525, 0.325, 0.01], atol=1e-6)


def test_sweep_twist_and_scales() -> None:
    path = bl.polyline(points=[[0, 0, 0], [0, 0, 0.25], [0, 0, 0.5], [0, 0, 0.75], [0, 0, 1]])
    section = bl.rectangle(width=0.2, height=0.2)
    cone_like = bl.sweep(path, profile=section, scales=[1, 0.5])
    v, f = only(cone_like)
    # a square frustum from side 0.2 to 0.1 over height 1
    assert volume(v, f) == pytest.approx(1 / 3 * (0.04 + 0.01 + 0.02), rel=1e-6)
    bl.clear_scene()
    path = bl.polyline(points=[[0, 0, 0], [0, 0, 1]])
    section = bl.rectangle(width=0.2, height=0.2)
    twisted = bl.sweep(path, profile=section, twist=90)
    top = only(twisted)[0]
    top = top[np.isclose(top[:, 2], 1.0)]
    # turned by 90 degrees the square's corners land on themselves, rotated
    np.testing.assert_allclose(np.sort(np.abs(top[:, 0])), [0.1] * 4, atol=1e-5)


def test_loft_of_equal_squares_is_a_box_and_mixed_shapes_close() -> None:
    a = bl.rectangle(width=0.4, height=0.4)
    b = bl.rectangle(width=0.4, height=0.4, center=[0, 0, 0.5])
    handle = bl.loft([a, b])
    v, f = only(handle)
    assert is_closed_and_consistent(f)
    assert volume(v, f) == pytest.approx(0.08, rel=1e-6)
    bl.clear_scene()
    c = bl.circle(radius=0.3, segments=32)
    r = bl.rectangle(width=0.4, height=0.4, center=[0, 0, 0.5])
    top = bl.circle(radius=0.1, segments=16, center=[0, 0, 1.0])
    handle = bl.loft([c, r, top])
    v, f = only(handle)
    assert is_closed_and_consistent(f)
    assert volume(v, f) > 0.05
    np.testing.assert_allclose(box_of(v)[1], [0.3, 0.3, 1.0], atol=1e-5)


def test_loft_refuses_mixed_open_and_closed() -> None:
    a = bl.circle(radius=0.3)
    b = bl.arc(radius=0.3, center=[0, 0, 0.5])
    with pytest.raises(ValueError, match=r"loft\(profiles\): mix of closed and open"):
        bl.loft([a, b])


def test_curve_shapes() -> None:
    import bpy

    from bpy_lib import _mesh

    def pts(h: str) -> np.ndarray:
        return _mesh.world_points(bpy.data.objects[h])

    rr = pts(bl.rounded_rectangle(width=0.6, height=0.4, radius=0.1, plane="YZ"))
    np.testing.assert_allclose(rr.min(axis=0), [0, -0.3, -0.2], atol=1e-9)
    np.testing.assert_allclose(np.abs(rr[:, 0]).max(), 0.0)
    arc_pts = pts(bl.arc(radius=0.5, start_angle=0, end_angle=90, segments=8))
    assert len(arc_pts) == 9
    np.testing.assert_allclose(np.linalg.norm(arc_pts, axis=1), 0.5, atol=1e-6)
    bz = pts(bl.bezier(points=[[0, 0], [0.5, 1.0], [1.0, 0]], resolution=10))
    np.testing.assert_allclose(bz[[0, -1]], [[0, 0, 0], [1, 0, 0]], atol=1e-6)
    assert bz[:, 1].max() == pytest.approx(0.5, abs=1e-6)  # quadratic apex is half the control
    hexagon = pts(bl.polygon(sides=6, radius=0.2, center=[0, 0, 0.3]))
    assert len(hexagon) == 6
    np.testing.assert_allclose(hexagon[:, 2], 0.3, atol=1e-6)


def test_sweep_scales_bulge_in_the_middle() -> None:
    path = bl.polyline(points=[[0, 0, 0], [0, 0, 0.5], [0, 0, 1]])
    bulge = bl.sweep(path, radius=0.1, scales=[0.5, 1.5, 0.5])
    v, _ = only(bulge)
    radial = np.hypot(v[:, 0], v[:, 1])
    mid = radial[np.isclose(v[:, 2], 0.5)]
    end = radial[np.isclose(v[:, 2], 1.0)]
    assert mid.max() == pytest.approx(0.15, abs=1e-6)
    assert end.max() == pytest.approx(0.05, abs=1e-6)
    with pytest.raises(ValueError, match=r"sweep\(scales\): expected a list of 2 to 32 numbers"):
        bl.sweep(path, scales=[1])


def test_helix_sweep_is_a_coil_of_the_right_length() -> None:
    h = bl.helix(radius=0.3, pitch=0.1, turns=3, center=[0, 0, -0.2], segments=64)
    coil = bl.sweep(h, radius=0.02, segments=16)
    v, f = only(coil)
    assert is_closed_and_consistent(f)
    lo, hi = box_of(v)
    np.testing.assert_allclose([lo[2], hi[2]], [-0.2 - 0.02, 0.1 + 0.02], atol=2e-3)
    length = 3 * math.hypot(2 * math.pi * 0.3, 0.1)
    tube = polygon_area(16, 0.02) * length
    assert volume(v, f) == pytest.approx(tube, rel=0.005)
