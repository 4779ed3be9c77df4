"""Parametrised object templates, one a category of ``configs/categories.yaml`` (no Blender).

A template draws its proportions and optional parts from ``rng`` and returns the object's
parts, each a :class:`Part` (a label and the ``bpy_lib`` lines
that build it). Objects are built in bpy_lib's frame: Z up, standing on z ≈ -0.9, inside
[-1, 1]³. Symmetric parts are one part plus ``grid_array``/``linear_array``/
``radial_array``/``mirror`` calls, never copies written out. The templates started from
``bpy_lib/examples/`` (chair, table, stool, mug, vase, desk lamp, ladder, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from datagen.families import num, vec, vec_list

__all__ = ["TEMPLATES", "Part"]


@dataclass(frozen=True)
class Part:
    """One labelled part of an object: the ``bpy_lib`` lines that build it."""

    label: str
    code: str

    def __post_init__(self) -> None:
        if not self.label.strip() or "\n" in self.label:
            raise ValueError(f"a part label must be one non-empty line, got {self.label!r}")
        if not self.code.strip():
            raise ValueError(f"part {self.label!r} has no code")


Rng = np.random.Generator
Template = Callable[[Rng], list[Part]]


def _u(rng: Rng, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 2)


def _legs(rng: Rng, x: float, y: float, top: float, floor: float, name: str = "leg") -> Part:
    """Four legs at (±x, ±y) from floor to top: one leg and a 2×2 grid array."""
    length = round(top - floor, 2)
    mid = round((top + floor) / 2, 2)
    if rng.random() < 0.5:
        r = _u(rng, 0.025, 0.05)
        make = f"{name} = cylinder(radius={num(r)}, depth={num(length)}, location={vec([x, y, mid])}, segments=16)"
    else:
        t = _u(rng, 0.05, 0.09)
        make = f"{name} = box(size={vec([t, t, length])}, location={vec([x, y, mid])})"
    lines = [make]
    if rng.random() < 0.3:
        lines.append(f"taper({name}, factor={num(_u(rng, 0.6, 0.9))})")
    lines.append(f"grid_array({name}, counts=[2, 2], spacing={vec([-2 * x, -2 * y])})")
    return Part("legs", "\n".join(lines))


def chair(rng: Rng) -> list[Part]:
    w, d = _u(rng, 0.7, 1.0), _u(rng, 0.7, 0.95)
    seat_z = _u(rng, -0.15, 0.05)
    t = _u(rng, 0.06, 0.1)
    parts = [
        Part(
            "seat",
            f"seat = box(size={vec([w, d, t])}, location={vec([0, 0, seat_z])}"
            + (f", round={num(_u(rng, 0.01, 0.03))})" if rng.random() < 0.5 else ")"),
        ),
        _legs(rng, round(w / 2 - 0.06, 2), round(d / 2 - 0.06, 2), seat_z - t / 2, -0.95),
    ]
    back_h = _u(rng, 0.6, 0.85)
    back_y = round(d / 2 - 0.03, 2)
    if rng.random() < 0.5:
        parts.append(
            Part(
                "backrest",
                f"back = box(size={vec([w, 0.05, back_h])}, "
                f"location={vec([0, back_y, seat_z + t / 2 + back_h / 2])})",
            )
        )
    else:
        post_h = back_h
        parts.append(
            Part(
                "back posts",
                f"post = box(size=[0.05, 0.05, {num(post_h)}], "
                f"location={vec([w / 2 - 0.05, back_y, seat_z + t / 2 + post_h / 2])})\n"
                f"mirror(post, axis='X')",
            )
        )
        count = int(rng.integers(2, 5))
        step = round((post_h - 0.15) / count, 2)
        parts.append(
            Part(
                "back slats",
                f"slat = box(size={vec([w - 0.1, 0.03, 0.06])}, "
                f"location={vec([0, back_y, seat_z + t / 2 + 0.15])})\n"
                f"linear_array(slat, count={count}, offset={vec([0, 0, step])})",
            )
        )
    if rng.random() < 0.35:
        arm_z = round(seat_z + t / 2 + 0.25, 2)
        parts.append(
            Part(
                "armrests",
                f"arm = box(size={vec([0.06, d - 0.1, 0.05])}, location={vec([w / 2, 0, arm_z])})\n"
                f"mirror(arm, axis='X')",
            )
        )
    return parts


def stool(rng: Rng) -> list[Part]:
    r = _u(rng, 0.3, 0.5)
    top_z = _u(rng, 0.3, 0.6)
    t = _u(rng, 0.05, 0.1)
    round_top = rng.random() < 0.6
    seat = (
        f"seat = cylinder(radius={num(r)}, depth={num(t)}, location={vec([0, 0, top_z])}, segments=32)"
        if round_top
        else f"seat = box(size={vec([2 * r, 2 * r, t])}, location={vec([0, 0, top_z])})"
    )
    parts = [Part("seat", seat)]
    count = int(rng.choice([3, 4]))
    leg_r = _u(rng, 0.025, 0.045)
    length = round(top_z - t / 2 + 0.95, 2)
    lean = int(rng.choice([0, 5, 8]))
    leg_lines = [
        f"leg = cylinder(radius={num(leg_r)}, depth={num(length)}, "
        f"location={vec([r * 0.7, 0, top_z - t / 2 - length / 2])}, segments=12)"
    ]
    if lean:
        leg_lines.append(f"rotate(leg, [0, {lean}, 0])")
    leg_lines.append(f"radial_array(leg, count={count})")
    parts.append(Part("legs", "\n".join(leg_lines)))
    if rng.random() < 0.5:
        ring_z = round(-0.95 + length * 0.35, 2)
        parts.append(
            Part(
                "foot ring",
                f"ring = torus(major_radius={num(r * 0.7 + 0.03)}, minor_radius=0.02, "
                f"location={vec([0, 0, ring_z])})",
            )
        )
    return parts


def table(rng: Rng) -> list[Part]:
    w, d = _u(rng, 1.2, 1.9), _u(rng, 0.7, 1.1)
    top_z = _u(rng, 0.2, 0.45)
    t = _u(rng, 0.04, 0.08)
    round_top = rng.random() < 0.25
    if round_top:
        top = f"top = cylinder(radius={num(d / 2 + 0.1)}, depth={num(t)}, location={vec([0, 0, top_z])}, segments=48)"
        parts = [Part("table top", top)]
        parts.append(
            Part(
                "pedestal",
                f"stem = cylinder(radius=0.06, depth={num(top_z + 0.85)}, "
                f"location={vec([0, 0, (top_z - 0.85) / 2 - 0.05])})",
            )
        )
        parts.append(
            Part(
                "base",
                f"base = cone(radius1={num(_u(rng, 0.25, 0.4))}, radius2=0.08, depth=0.12, "
                f"location=[0, 0, -0.89])",
            )
        )
        return parts
    rounded = f", round={num(_u(rng, 0.01, 0.02))}" if rng.random() < 0.5 else ""
    parts = [
        Part(
            "table top", f"top = box(size={vec([w, d, t])}, location={vec([0, 0, top_z])}{rounded})"
        )
    ]
    x, y = round(w / 2 - 0.08, 2), round(d / 2 - 0.08, 2)
    parts.append(_legs(rng, x, y, top_z - t / 2, -0.95))
    if rng.random() < 0.5:
        az = round(top_z - t / 2 - 0.05, 2)
        parts.append(
            Part(
                "apron",
                f"apron = box(size={vec([w - 0.16, d - 0.16, 0.1])}, location={vec([0, 0, az])})\n"
                f"inner = box(size={vec([w - 0.24, d - 0.24, 0.2])}, location={vec([0, 0, az])})\n"
                "difference(apron, inner)",
            )
        )
    if rng.random() < 0.3:
        parts.append(
            Part(
                "lower shelf",
                f"shelf = box(size={vec([w - 0.2, d - 0.2, 0.03])}, location=[0, 0, -0.6])",
            )
        )
    return parts


def bench(rng: Rng) -> list[Part]:
    w, d = _u(rng, 1.5, 1.9), _u(rng, 0.35, 0.5)
    seat_z = _u(rng, -0.3, -0.1)
    count = int(rng.integers(3, 6))
    gap = 0.02
    slat_d = round((d - gap * (count - 1)) / count, 2)
    parts = [
        Part(
            "seat slats",
            f"slat = box(size={vec([w, slat_d, 0.04])}, "
            f"location={vec([0, -d / 2 + slat_d / 2, seat_z])})\n"
            f"linear_array(slat, count={count}, offset={vec([0, slat_d + gap, 0])})",
        )
    ]
    side_t = _u(rng, 0.05, 0.08)
    side_h = round(seat_z - 0.02 + 0.95, 2)
    parts.append(
        Part(
            "side supports",
            f"side = box(size={vec([side_t, d, side_h])}, "
            f"location={vec([w / 2 - 0.15, 0, -0.95 + side_h / 2])})\n"
            f"mirror(side, axis='X')",
        )
    )
    if rng.random() < 0.5:
        parts.append(
            Part(
                "backrest",
                f"back = box(size={vec([w, 0.04, 0.3])}, location={vec([0, d / 2 + 0.02, seat_z + 0.3])})\n"
                "rotate(back, [-10, 0, 0])",
            )
        )
    return parts


def bookshelf(rng: Rng) -> list[Part]:
    w, d, h = _u(rng, 0.8, 1.4), _u(rng, 0.3, 0.45), _u(rng, 1.5, 1.9)
    t = _u(rng, 0.03, 0.05)
    shelves = int(rng.integers(2, 6))
    parts = [
        Part(
            "side panels",
            f"side = box(size={vec([t, d, h])}, location={vec([w / 2 - t / 2, 0, 0])})\n"
            "mirror(side, axis='X')",
        ),
        Part(
            "top and bottom",
            f"board = box(size={vec([w, d, t])}, location={vec([0, 0, -h / 2 + t / 2])})\n"
            f"linear_array(board, count=2, offset={vec([0, 0, h - t])})",
        ),
    ]
    step = round((h - t) / (shelves + 1), 2)
    parts.append(
        Part(
            "shelves",
            f"shelf = box(size={vec([w - 2 * t, d - 0.02, t])}, "
            f"location={vec([0, 0, -h / 2 + t / 2 + step])})\n"
            f"linear_array(shelf, count={shelves}, offset={vec([0, 0, step])})",
        )
    )
    if rng.random() < 0.5:
        parts.append(
            Part(
                "back panel", f"back = box(size={vec([w, 0.01, h])}, location={vec([0, d / 2, 0])})"
            )
        )
    return parts


def cabinet(rng: Rng) -> list[Part]:
    w, d, h = _u(rng, 0.8, 1.6), _u(rng, 0.4, 0.6), _u(rng, 0.8, 1.6)
    body_z = round(-0.95 + 0.1 + h / 2, 2)
    parts = [
        Part(
            "body",
            f"body = box(size={vec([w, d, h])}, location={vec([0, 0, body_z])}, round=0.01)",
        ),
        Part(
            "feet",
            f"foot = cylinder(radius=0.03, depth=0.1, location={vec([w / 2 - 0.06, d / 2 - 0.06, -0.9])}, segments=12)\n"
            f"grid_array(foot, counts=[2, 2], spacing={vec([-(w - 0.12), -(d - 0.12)])})",
        ),
    ]
    doors = int(rng.choice([1, 2]))
    door_w = round(w / doors - 0.04, 2)
    door_x = round(-w / 2 + 0.02 + door_w / 2, 2)
    lines = [
        f"door = box(size={vec([door_w, 0.02, h - 0.06])}, location={vec([door_x, -d / 2 - 0.01, body_z])})"
    ]
    if doors == 2:
        lines.append("mirror(door, axis='X')")
    parts.append(Part("doors", "\n".join(lines)))
    if rng.random() < 0.6:
        hx = round(door_x + door_w / 2 - 0.06, 2)
        lines = [
            f"knob = sphere(radius=0.025, location={vec([hx, -d / 2 - 0.04, body_z])}, segments=12, rings=6)"
        ]
        if doors == 2:
            lines.append("mirror(knob, axis='X')")
        parts.append(Part("knobs", "\n".join(lines)))
    return parts


def lamp(rng: Rng) -> list[Part]:
    base_r = _u(rng, 0.25, 0.4)
    parts = [
        Part(
            "base",
            f"base = cylinder(radius={num(base_r)}, depth=0.08, location=[0, 0, -0.9], segments=48)"
            + ("\nbevel(base, width=0.02)" if rng.random() < 0.5 else ""),
        )
    ]
    top = [_u(rng, -0.3, 0.3), 0.0, _u(rng, 0.2, 0.5)]
    if rng.random() < 0.5:
        parts.append(
            Part(
                "arm",
                f"path = polyline(points={vec_list([[0, 0, -0.86], [top[0] * 0.5, 0, -0.1], top])})\n"
                "arm = sweep(path, radius=0.025)",
            )
        )
    else:
        parts.append(
            Part(
                "arm",
                f"path = bezier(points={vec_list([[0, 0, -0.86], [0, 0, 0.2], top])})\n"
                "arm = sweep(path, radius=0.025)",
            )
        )
    r1 = _u(rng, 0.2, 0.35)
    tilt = int(rng.choice([0, 20, 40]))
    shade_z = round(top[2] + 0.1, 2)
    parts.append(
        Part(
            "shade",
            f"shade = cone(radius1={num(r1)}, radius2={num(r1 * 0.4)}, depth=0.3, "
            f"location={vec([top[0], 0, shade_z])}, rotation={vec([0, tilt, 0])})\n"
            f"inside = cone(radius1={num(r1 - 0.03)}, radius2={num(r1 * 0.4 - 0.02)}, depth=0.32, "
            f"location={vec([top[0], 0, shade_z - 0.02])}, rotation={vec([0, tilt, 0])})\n"
            "difference(shade, inside)",
        )
    )
    return parts


def mug(rng: Rng) -> list[Part]:
    r, h = _u(rng, 0.35, 0.5), _u(rng, 0.8, 1.2)
    flare = _u(rng, 0.0, 0.08)
    parts = [
        Part(
            "body",
            f"wall = polyline(points={vec_list([[0, -h / 2], [r, -h / 2], [r + flare, h / 2]])}, plane='XZ')\n"
            "body = revolve(wall, segments=48)\n"
            f"solidify(body, thickness={num(_u(rng, 0.03, 0.06))})",
        )
    ]
    grip = _u(rng, 0.2, 0.3)
    if rng.random() < 0.5:
        handle = (
            f"path = arc(radius={num(grip)}, start_angle=-80, end_angle=80, "
            f"center={vec([r + flare / 2, 0, 0])}, plane='XZ', segments=20)\n"
            "handle = sweep(path, radius=0.035)"
        )
    else:
        handle = (
            f"handle = torus(major_radius={num(grip)}, minor_radius=0.035, "
            f"location={vec([r + flare / 2, 0, 0])}, rotation=[90, 0, 0])"
        )
    parts.append(Part("handle", handle))
    return parts


def bowl(rng: Rng) -> list[Part]:
    r, h = _u(rng, 0.6, 0.95), _u(rng, 0.3, 0.6)
    bottom = round(r * _u(rng, 0.35, 0.6), 2)
    pts = [[0, -h / 2], [bottom, -h / 2], [round((bottom + r) / 2 + 0.05, 2), 0], [r, h / 2]]
    curve = "bezier" if rng.random() < 0.5 else "polyline"
    parts = [
        Part(
            "body",
            f"wall = {curve}(points={vec_list(pts)}, plane='XZ')\n"
            "body = revolve(wall, segments=48)\n"
            f"solidify(body, thickness={num(_u(rng, 0.03, 0.05))})",
        )
    ]
    if rng.random() < 0.4:
        parts.append(
            Part(
                "foot ring",
                f"foot = torus(major_radius={num(bottom * 0.8)}, minor_radius=0.03, "
                f"location={vec([0, 0, -h / 2 - 0.02])})",
            )
        )
    return parts


def vase(rng: Rng) -> list[Part]:
    sides = int(rng.choice([6, 8, 12, 32]))
    radii = [_u(rng, 0.2, 0.4), _u(rng, 0.45, 0.75), _u(rng, 0.15, 0.3), _u(rng, 0.2, 0.4)]
    zs = [-0.9, _u(rng, -0.4, 0.0), _u(rng, 0.4, 0.6), 0.9]
    lines = [
        f"s{k} = polygon(sides={sides}, radius={num(r)}, center={vec([0, 0, z])})"
        for k, (r, z) in enumerate(zip(radii, zs, strict=True))
    ]
    lines.append("body = loft([s0, s1, s2, s3])")
    if rng.random() < 0.5:
        lines.append("subdivide(body, levels=1, smooth=False)")
        lines.append(f"twist(body, angle={int(rng.choice([30, 45, 60]))})")
    parts = [Part("body", "\n".join(lines))]
    if rng.random() < 0.4:
        parts.append(
            Part(
                "lip",
                f"lip = torus(major_radius={num(radii[3])}, minor_radius=0.03, location=[0, 0, 0.9])",
            )
        )
    return parts


def bottle(rng: Rng) -> list[Part]:
    r = _u(rng, 0.25, 0.4)
    neck = _u(rng, 0.08, 0.14)
    shoulder = _u(rng, 0.1, 0.4)
    pts = [[0, -0.9], [r, -0.9], [r, shoulder], [neck, shoulder + 0.3], [neck, 0.75], [0, 0.75]]
    parts = [
        Part(
            "body",
            f"profile = polyline(points={vec_list(pts)}, plane='XZ')\n"
            "body = revolve(profile, segments=32)",
        ),
        Part(
            "cap",
            f"cap = cylinder(radius={num(neck + 0.02)}, depth=0.15, location=[0, 0, 0.82], segments=24)",
        ),
    ]
    if rng.random() < 0.4:
        parts.append(
            Part(
                "label band",
                f"band = cylinder(radius={num(r + 0.01)}, depth=0.3, location=[0, 0, -0.4], segments=32)",
            )
        )
    return parts


def wine_glass(rng: Rng) -> list[Part]:
    cup_r = _u(rng, 0.3, 0.45)
    stem_h = _u(rng, 0.6, 0.9)
    cup_bottom = round(-0.88 + stem_h, 2)
    pts = [[0.02, cup_bottom], [cup_r, round(cup_bottom + 0.35, 2)], [round(cup_r * 0.85, 2), 0.9]]
    return [
        Part(
            "foot",
            f"foot = cylinder(radius={num(_u(rng, 0.25, 0.35))}, depth=0.03, location=[0, 0, -0.9])",
        ),
        Part(
            "stem",
            f"stem = cylinder(radius=0.03, depth={num(stem_h)}, "
            f"location={vec([0, 0, -0.88 + stem_h / 2])}, segments=16)",
        ),
        Part(
            "cup",
            f"wall = bezier(points={vec_list(pts)}, plane='XZ')\n"
            "cup = revolve(wall, segments=48)\n"
            "solidify(cup, thickness=0.02)",
        ),
    ]


def dumbbell(rng: Rng) -> list[Part]:
    length = _u(rng, 1.0, 1.4)
    plate_r = _u(rng, 0.3, 0.5)
    plates = int(rng.integers(1, 4))
    plate_t = _u(rng, 0.06, 0.1)
    x0 = round(length / 2 - 0.1, 2)
    lines = [
        f"plate = cylinder(radius={num(plate_r)}, depth={num(plate_t)}, "
        f"location={vec([x0, 0, 0])}, rotation=[0, 90, 0])"
    ]
    if plates > 1:
        lines.append(
            f"linear_array(plate, count={plates}, offset={vec([-(plate_t + 0.01), 0, 0])})"
        )
    lines.append("mirror(plate, axis='X')")
    return [
        Part(
            "bar",
            f"bar = cylinder(radius=0.04, depth={num(length + 0.3)}, rotation=[0, 90, 0], segments=16)",
        ),
        Part("weights", "\n".join(lines)),
    ]


def ladder(rng: Rng) -> list[Part]:
    h, w = _u(rng, 1.6, 1.9), _u(rng, 0.5, 0.8)
    rungs = int(rng.integers(4, 9))
    step = round((h - 0.3) / (rungs - 1), 2)
    rail = (
        f"rail = box(size=[0.06, 0.08, {num(h)}], location={vec([w / 2, 0, 0])})"
        if rng.random() < 0.5
        else f"rail = cylinder(radius=0.035, depth={num(h)}, location={vec([w / 2, 0, 0])}, segments=12)"
    )
    return [
        Part("side rails", f"{rail}\nmirror(rail, axis='X')"),
        Part(
            "rungs",
            f"rung = cylinder(radius=0.025, depth={num(w)}, location={vec([0, 0, -h / 2 + 0.15])}, "
            "rotation=[0, 90, 0], segments=12)\n"
            f"linear_array(rung, count={rungs}, offset={vec([0, 0, step])})",
        ),
    ]


TEMPLATES: dict[str, Template] = {
    "chair": chair,
    "stool": stool,
    "table": table,
    "bench": bench,
    "bookshelf": bookshelf,
    "cabinet": cabinet,
    "lamp": lamp,
    "mug": mug,
    "bowl": bowl,
    "vase": vase,
    "bottle": bottle,
    "wine_glass": wine_glass,
    "dumbbell": dumbbell,
    "ladder": ladder,
}
