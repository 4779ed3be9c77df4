"""Primitives: analytic volumes and bounding boxes, placement, closed and outward meshes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bpy_lib as bl
from tests.bpy_lib.helpers import box_of, is_closed_and_consistent, only, volume

pytestmark = pytest.mark.blender


def polygon_area(n: int, r: float) -> float:
    """Area of a regular n-gon of circumradius r."""
    return 0.5 * n * r * r * math.sin(2 * math.pi / n)


CASES = [
    # (call, exact volume of the faceted shape or None, tolerance, bounding-box half sizes)
    (lambda: bl.box(size=[1.0, 0.5, 0.2]), 0.1, 1e-6, (0.5, 0.25, 0.1)),
    (
        lambda: bl.cylinder(radius=0.5, depth=1.0, segments=32),
        polygon_area(32, 0.5) * 1.0,
        1e-6,
        (0.5, 0.5, 0.5),
    ),
    (
        lambda: bl.cone(radius1=0.5, depth=0.9, segments=40),
        polygon_area(40, 0.5) * 0.9 / 3,
        1e-6,
        (0.5, 0.5, 0.45),
    ),
    (
        lambda: bl.cone(radius1=0.5, radius2=0.25, depth=1.0, segments=64),
        math.pi * 1.0 / 3 * (0.25 + 0.125 + 0.0625),
        0.01,
        (0.5, 0.5, 0.5),
    ),
    (
        lambda: bl.sphere(radius=0.5, segments=64, rings=32),
        4 / 3 * math.pi * 0.125,
        0.01,
        (0.5,) * 3,
    ),
    (
        lambda: bl.torus(major_radius=0.6, minor_radius=0.15, segments=64, minor_segments=32),
        2 * math.pi**2 * 0.6 * 0.15**2,
        0.01,
        (0.75, 0.75, 0.15),
    ),
    (
        lambda: bl.capsule(radius=0.2, depth=1.0, segments=64),
        math.pi * 0.04 * 0.6 + 4 / 3 * math.pi * 0.008,
        0.01,
        (0.2, 0.2, 0.5),
    ),
    (lambda: bl.wedge(size=[1.0, 0.5, 0.4]), 0.1, 1e-6, (0.5, 0.25, 0.2)),
    (
        lambda: bl.prism(sides=6, radius=0.5, depth=0.8),
        polygon_area(6, 0.5) * 0.8,
        1e-6,
        (0.5, 0.5 * math.sqrt(3) / 2, 0.4),
    ),
]


@pytest.mark.parametrize(("make", "expected", "rtol", "half"), CASES)
def test_volume_and_box(make, expected: float, rtol: float, half: tuple[float, ...]) -> None:
    handle = make()
    vertices, faces = only(handle)
    assert is_closed_and_consistent(faces)
    assert volume(vertices, faces) == pytest.approx(expected, rel=rtol)
    lo, hi = box_of(vertices)
    np.testing.assert_allclose(hi, half, atol=1e-5)
    np.testing.assert_allclose(lo, [-h for h in half], atol=1e-5)


def test_rounded_box_loses_only_its_edges() -> None:
    handle = bl.box(size=[1.0, 1.0, 1.0], round=0.1)
    vertices, faces = only(handle)
    lo, hi = box_of(vertices)
    np.testing.assert_allclose(hi - lo, [1.0, 1.0, 1.0], atol=1e-5)
    v = volume(vertices, faces)
    # A box rounded with radius r loses (4 - pi) r^2 per unit of edge length, roughly.
    assert 1.0 - 12 * (4 - math.pi) / 4 * 0.01 * 1.2 < v < 1.0
    assert is_closed_and_consistent(faces)


def test_plane_is_one_flat_quad_facing_up() -> None:
    handle = bl.plane(size=[1.0, 0.4])
    vertices, faces = only(handle)
    assert len(faces) == 2
    lo, hi = box_of(vertices)
    np.testing.assert_allclose([lo, hi], [[-0.5, -0.2, 0], [0.5, 0.2, 0]], atol=1e-6)
    a, b, c = vertices[faces[0]].astype(np.float64)
    assert np.cross(b - a, c - a)[2] > 0


def test_location_and_rotation_place_the_part() -> None:
    handle = bl.cylinder(radius=0.1, depth=1.0, location=[0.2, -0.3, 0.4], rotation=[0, 90, 0])
    lo, hi = box_of(only(handle)[0])
    np.testing.assert_allclose(lo, [0.2 - 0.5, -0.4, 0.3], atol=1e-5)
    np.testing.assert_allclose(hi, [0.2 + 0.5, -0.2, 0.5], atol=1e-5)


def test_names_are_returned_and_unique() -> None:
    assert bl.box(size=0.1, name="seat") == "seat"
    assert bl.box(size=0.1) == "box"
    assert bl.box(size=0.1) == "box.001"
    with pytest.raises(ValueError, match=r"box\(name\): the name 'seat' is already used"):
        bl.box(size=0.1, name="seat")
    assert bl.parts() == ["box", "box.001", "seat"]
