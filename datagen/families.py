"""Random but plausible single-part ``bpy_lib`` programs, one generator a family (no Blender).

Every family is a function ``(rng, ranges) -> PartProgram`` that draws its parameters from
``ranges`` (the ``data.part_*`` ranges of the configuration) and writes the program body:
plain ``bpy_lib`` calls that build one part, named ``p``. :func:`make_program` wraps a body
into a complete program (``from bpy_lib import *``, a ``# part_1: label`` comment,
``export_scene()``). Families cover every ``bpy_lib`` primitive, curve and sweep, and the
combinations seen in real objects: a box with a boolean hole, an array of legs, radial
spokes, a lathed shell, a spring; a deformer (taper, twist, bend, bevel) is added to some
samples with probability ``ranges.modifier_prob``.

The same ``(seed, index)`` always gives the same program: :func:`sample_rng` derives the
generator of sample ``index`` from the run's seed alone, which is what makes the part
generator reproducible and resumable.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FAMILIES",
    "PartProgram",
    "Ranges",
    "bpy_lib_names",
    "generate_part",
    "make_program",
    "num",
    "ops_used",
    "sample_rng",
    "vec",
    "vec_list",
]

_BPY_LIB_INIT = Path(__file__).resolve().parent.parent / "bpy_lib" / "__init__.py"


@dataclass(frozen=True)
class Ranges:
    """Parameter ranges of the generated parts (from ``data`` in the configuration).

    Attributes
    ----------
    size : (float, float)
        Main dimensions (box sides, heights, diameters) are drawn from this interval.
    thickness : (float, float)
        Thin dimensions (walls, tubes, rods, plates).
    modifier_prob : float
        Chance that a deformer is added to a sample whose family allows one.
    """

    size: tuple[float, float] = (0.2, 1.8)
    thickness: tuple[float, float] = (0.03, 0.25)
    modifier_prob: float = 0.3


@dataclass(frozen=True)
class PartProgram:
    """One generated part: its program body and what it is made of."""

    family: str
    body: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    modifier: str | None = None

    @property
    def code(self) -> str:
        """The complete program."""
        return make_program(self.body, self.label)

    @property
    def ops(self) -> list[str]:
        """The ``bpy_lib`` functions the program calls, sorted."""
        return ops_used(self.code)


def make_program(body: str, label: str) -> str:
    """A complete one-part program around ``body`` (house style of DESIGN §6)."""
    return f"from bpy_lib import *\n\n# part_1: {label}\n{body.rstrip()}\nexport_scene()\n"


@cache
def bpy_lib_names() -> frozenset[str]:
    """The public names of ``bpy_lib`` (read from its ``__all__`` without importing Blender)."""
    tree = ast.parse(_BPY_LIB_INIT.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            return frozenset(str(v) for v in value)
    raise RuntimeError(f"{_BPY_LIB_INIT} has no __all__ list")


_CALL = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\(")


def ops_used(code: str) -> list[str]:
    """The ``bpy_lib`` functions called in ``code`` (comments ignored), sorted and unique."""
    names = bpy_lib_names()
    text = "\n".join(line.split("#", 1)[0] for line in code.splitlines())
    return sorted({m for m in _CALL.findall(text) if m in names} - {"export_scene"})


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of sample ``index`` of a run seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


# -- number formatting and drawing --------------------------------------------------------


#: The smallest size a program writes (two decimals): bpy_lib rejects sizes, radii and
#: depths of 0, which a thin part's would round to.
MIN_SIZE = 0.01


def num(x: float) -> str:
    """A number as program text: two decimals, no trailing zeros, never ``-0`` (the house
    style of every generated program)."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def vec(values: Sequence[float]) -> str:
    """A vector as program text: ``[x, y, z]`` with :func:`num` numbers."""
    return "[" + ", ".join(num(x) for x in values) + "]"


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 2)


def _size(rng: np.random.Generator, r: Ranges, frac: float = 1.0) -> float:
    return max(0.05, _u(rng, r.size[0] * frac, r.size[1] * frac))


def _thin(rng: np.random.Generator, r: Ranges) -> float:
    return max(0.01, _u(rng, *r.thickness))


def _location(rng: np.random.Generator, spread: float = 0.2) -> list[float]:
    return [_u(rng, -spread, spread) for _ in range(3)]


def _rotation(rng: np.random.Generator) -> list[float] | None:
    """Mostly axis-aligned parts; a third get a turn about one axis."""
    if rng.random() > 0.33:
        return None
    angles = [0.0, 0.0, 0.0]
    angles[int(rng.integers(3))] = float(rng.choice([15, 30, 45, 60, 90, -30, -45]))
    return angles


def _placement(rng: np.random.Generator) -> str:
    text = f", location={vec(_location(rng))}"
    rotation = _rotation(rng)
    if rotation is not None:
        text += f", rotation={vec(rotation)}"
    return text


# -- the families -------------------------------------------------------------------------

Family = Callable[[np.random.Generator, Ranges], PartProgram]


def _box(rng: np.random.Generator, r: Ranges) -> PartProgram:
    size = [_size(rng, r) for _ in range(3)]
    if rng.random() < 0.3:  # a plate or a board
        size[int(rng.integers(3))] = _thin(rng, r)
    rounded = _u(rng, 0.01, min(size) / 3) if rng.random() < 0.3 and min(size) > 0.06 else 0.0
    extra = f", round={num(rounded)}" if rounded else ""
    body = f"p = box(size={vec(size)}{extra}{_placement(rng)})\n"
    return PartProgram("box", body, "block", {"size": size, "round": rounded})


def _cylinder(rng: np.random.Generator, r: Ranges) -> PartProgram:
    radius = _size(rng, r, 0.5)
    depth = _thin(rng, r) if rng.random() < 0.3 else _size(rng, r)
    segments = int(rng.choice([16, 24, 32, 48]))
    body = (
        f"p = cylinder(radius={num(radius)}, depth={num(depth)}, segments={segments}"
        f"{_placement(rng)})\n"
    )
    return PartProgram("cylinder", body, "cylinder", {"radius": radius, "depth": depth})


def _cone(rng: np.random.Generator, r: Ranges) -> PartProgram:
    r1 = _size(rng, r, 0.5)
    r2 = _u(rng, 0.0, r1 * 0.8) if rng.random() < 0.6 else 0.0
    depth = _size(rng, r)
    body = f"p = cone(radius1={num(r1)}, radius2={num(r2)}, depth={num(depth)}{_placement(rng)})\n"
    return PartProgram("cone", body, "cone", {"radius1": r1, "radius2": r2, "depth": depth})


def _sphere(rng: np.random.Generator, r: Ranges) -> PartProgram:
    radius = _size(rng, r, 0.5)
    body = f"p = sphere(radius={num(radius)}, location={vec(_location(rng))})\n"
    params: dict[str, Any] = {"radius": radius}
    if rng.random() < 0.5:  # an ellipsoid
        factor = [_u(rng, 0.4, 1.0) for _ in range(3)]
        body += f"scale(p, {vec(factor)})\n"
        params["scale"] = factor
    return PartProgram("sphere", body, "ball", params)


def _torus(rng: np.random.Generator, r: Ranges) -> PartProgram:
    major = _size(rng, r, 0.4)
    minor = min(_thin(rng, r), round(major * 0.6, 2))
    body = f"p = torus(major_radius={num(major)}, minor_radius={num(minor)}{_placement(rng)})\n"
    return PartProgram("torus", body, "ring", {"major_radius": major, "minor_radius": minor})


def _capsule(rng: np.random.Generator, r: Ranges) -> PartProgram:
    radius = _size(rng, r, 0.25)
    depth = max(_size(rng, r), round(2 * radius + 0.05, 2))
    body = f"p = capsule(radius={num(radius)}, depth={num(depth)}{_placement(rng)})\n"
    return PartProgram("capsule", body, "capsule", {"radius": radius, "depth": depth})


def _wedge(rng: np.random.Generator, r: Ranges) -> PartProgram:
    size = [_size(rng, r) for _ in range(3)]
    body = f"p = wedge(size={vec(size)}{_placement(rng)})\n"
    return PartProgram("wedge", body, "wedge", {"size": size})


def _prism(rng: np.random.Generator, r: Ranges) -> PartProgram:
    sides = int(rng.integers(3, 9))
    radius = _size(rng, r, 0.5)
    depth = _size(rng, r)
    body = f"p = prism(sides={sides}, radius={num(radius)}, depth={num(depth)}{_placement(rng)})\n"
    return PartProgram("prism", body, "prism", {"sides": sides, "radius": radius, "depth": depth})


def _profile_points(rng: np.random.Generator, r: Ranges) -> list[list[float]]:
    """A lathe profile in XZ: radius > 0, heights increasing, closed to the axis at both ends."""
    count = int(rng.integers(3, 7))
    height = _size(rng, r)
    zs = np.linspace(-height / 2, height / 2, count)
    radii = [_u(rng, 0.08, r.size[1] / 2) for _ in range(count)]
    return (
        [[0.0, round(float(zs[0]), 2)]]
        + [[radii[k], round(float(zs[k]), 2)] for k in range(count)]
        + [[0.0, round(float(zs[-1]), 2)]]
    )


def _revolve(rng: np.random.Generator, r: Ranges) -> PartProgram:
    points = _profile_points(rng, r)
    smooth = rng.random() < 0.5
    curve = (
        f"bezier(points={vec_list(points[1:-1])}, plane='XZ')"
        if smooth and len(points) - 2 <= 8
        else f"polyline(points={vec_list(points)}, plane='XZ')"
    )
    body = f"profile = {curve}\np = revolve(profile, segments=32)\n"
    return PartProgram("revolve", body, "turned body", {"profile": points, "smooth": smooth})


def _shell(rng: np.random.Generator, r: Ranges) -> PartProgram:
    """A lathed open wall made solid: bowls, cups, pots, lampshades."""
    height = _size(rng, r, 0.7)
    bottom = _u(rng, 0.1, r.size[1] / 3)
    top = _u(rng, bottom, r.size[1] / 2)
    wall = _u(rng, 0.02, 0.06)
    points = [[0.0, -height / 2], [bottom, -height / 2], [top, height / 2]]
    body = (
        f"wall = polyline(points={vec_list(points)}, plane='XZ')\n"
        f"p = revolve(wall, segments=48)\nsolidify(p, thickness={num(wall)})\n"
    )
    params = {"height": height, "bottom": bottom, "top": top, "wall": wall}
    return PartProgram("shell", body, "shell", params)


def vec_list(points: Sequence[Sequence[float]]) -> str:
    """A list of points as program text."""
    return "[" + ", ".join(vec(p) for p in points) + "]"


def _outline(rng: np.random.Generator, r: Ranges) -> tuple[str, dict[str, Any]]:
    kind = str(rng.choice(["polygon", "rounded_rectangle", "star", "l_shape"]))
    if kind == "polygon":
        sides, radius = int(rng.integers(3, 9)), _size(rng, r, 0.5)
        return f"polygon(sides={sides}, radius={num(radius)})", {"sides": sides, "radius": radius}
    if kind == "rounded_rectangle":
        w, h = _size(rng, r), _size(rng, r)
        rad = _u(rng, 0.01, min(w, h) / 2 - 0.01)
        return (
            f"rounded_rectangle(width={num(w)}, height={num(h)}, radius={num(rad)})",
            {"width": w, "height": h, "radius": rad},
        )
    if kind == "star":
        tips = int(rng.integers(4, 8))
        outer, inner = _size(rng, r, 0.5), 0.0
        inner = round(outer * float(rng.uniform(0.35, 0.7)), 2)
        pts = []
        for k in range(2 * tips):
            rad = outer if k % 2 == 0 else inner
            t = math.pi * k / tips
            pts.append([round(rad * math.cos(t), 2), round(rad * math.sin(t), 2)])
        return f"polyline(points={vec_list(pts)}, closed=True)", {"tips": tips, "outer": outer}
    w, h = _size(rng, r), _size(rng, r)
    t = _u(rng, 0.05, min(w, h) / 2)
    pts = [[0.0, 0.0], [w, 0.0], [w, t], [t, t], [t, h], [0.0, h]]
    pts = [[round(x - w / 2, 2), round(y - h / 2, 2)] for x, y in pts]
    return f"polyline(points={vec_list(pts)}, closed=True)", {"width": w, "height": h, "leg": t}


def _extrude(rng: np.random.Generator, r: Ranges) -> PartProgram:
    curve, params = _outline(rng, r)
    depth = _thin(rng, r) if rng.random() < 0.5 else _size(rng, r)
    body = f"outline = {curve}\np = extrude(outline, depth={num(depth)})\n"
    return PartProgram("extrude", body, "plate", {**params, "depth": depth})


def _path_points(rng: np.random.Generator, r: Ranges) -> list[list[float]]:
    count = int(rng.integers(3, 6))
    span = r.size[1] / 2
    start = np.array([_u(rng, -span, span) for _ in range(3)])
    pts = [start]
    for _ in range(count - 1):
        step = rng.normal(size=3)
        step *= _u(rng, 0.3, span) / max(float(np.linalg.norm(step)), 1e-6)
        pts.append(np.clip(pts[-1] + step, -0.95, 0.95))
    return [[round(float(x), 2) for x in p] for p in pts]


def _sweep(rng: np.random.Generator, r: Ranges) -> PartProgram:
    points = _path_points(rng, r)
    radius = min(_thin(rng, r), 0.12)
    curve = "bezier" if rng.random() < 0.6 else "polyline"
    body = f"path = {curve}(points={vec_list(points)})\n"
    if rng.random() < 0.3:
        w, h = _u(rng, 0.04, 0.2), _u(rng, 0.04, 0.2)
        body += f"section = rectangle(width={num(w)}, height={num(h)})\n"
        body += "p = sweep(path, profile=section)\n"
    else:
        body += f"p = sweep(path, radius={num(radius)})\n"
    return PartProgram("sweep", body, "tube", {"path": points, "radius": radius, "curve": curve})


def _loft(rng: np.random.Generator, r: Ranges) -> PartProgram:
    count = int(rng.integers(2, 5))
    height = _size(rng, r)
    zs = np.linspace(-height / 2, height / 2, count)
    sides = int(rng.choice([4, 6, 8, 12]))
    lines, names = [], []
    for k, z in enumerate(zs):
        radius = _u(rng, 0.1, r.size[1] / 2)
        lines.append(
            f"s{k} = polygon(sides={sides}, radius={num(radius)}, center={vec([0, 0, float(z)])})"
        )
        names.append(f"s{k}")
    body = "\n".join(lines) + f"\np = loft([{', '.join(names)}])\n"
    return PartProgram("loft", body, "lofted body", {"sections": count, "sides": sides})


def _spring(rng: np.random.Generator, r: Ranges) -> PartProgram:
    radius = _size(rng, r, 0.3)
    turns = int(rng.integers(2, 7))
    pitch = _u(rng, 0.08, 0.3)
    wire = _u(rng, 0.015, min(0.05, pitch / 3))
    body = (
        f"coil = helix(radius={num(radius)}, pitch={num(pitch)}, turns={turns}, "
        f"center={vec([0, 0, -pitch * turns / 2])})\n"
        f"p = sweep(coil, radius={num(wire)}, segments=8)\n"
    )
    params = {"radius": radius, "pitch": pitch, "turns": turns, "wire": wire}
    return PartProgram("spring", body, "spring", params)


def _box_hole(rng: np.random.Generator, r: Ranges) -> PartProgram:
    size = [_size(rng, r, 0.8) + 0.2 for _ in range(2)] + [_thin(rng, r) + 0.05]
    hole = _u(rng, 0.05, min(size[0], size[1]) / 3)
    count = int(rng.integers(1, 3))
    body = f"p = box(size={vec(size)})\n"
    cutters = []
    for k in range(count):
        x = 0.0 if count == 1 else (size[0] / 4) * (1 if k else -1)
        body += (
            f"hole{k} = cylinder(radius={num(hole)}, depth={num(size[2] + 0.1)}, "
            f"location={vec([x, 0, 0])})\n"
        )
        cutters.append(f"hole{k}")
    body += f"difference(p, {', '.join(cutters)})\n"
    return PartProgram("box_hole", body, "plate with holes", {"size": size, "hole": hole})


def _leg_array(rng: np.random.Generator, r: Ranges) -> PartProgram:
    length = _size(rng, r)
    thick = min(_thin(rng, r), 0.1)
    sx, sy = _size(rng, r, 0.8), _size(rng, r, 0.8)
    start = [round(sx / 2, 2), round(sy / 2, 2), 0.0]
    if rng.random() < 0.5:
        leg = f"cylinder(radius={num(thick / 2)}, depth={num(length)}, location={vec(start)})"
    else:
        leg = f"box(size={vec([thick, thick, length])}, location={vec(start)})"
    body = f"p = {leg}\ngrid_array(p, counts=[2, 2], spacing={vec([-sx, -sy])})\n"
    return PartProgram("leg_array", body, "legs", {"length": length, "spacing": [sx, sy]})


def _radial_array(rng: np.random.Generator, r: Ranges) -> PartProgram:
    count = int(rng.integers(3, 9))
    reach = _size(rng, r, 0.5)
    thick = min(_thin(rng, r), 0.12)
    body = (
        f"p = box(size={vec([reach, thick, thick])}, location={vec([reach / 2, 0, 0])})\n"
        f"radial_array(p, count={count})\n"
    )
    return PartProgram("radial_array", body, "spokes", {"count": count, "reach": reach})


def _linear_array(rng: np.random.Generator, r: Ranges) -> PartProgram:
    count = int(rng.integers(2, 7))
    w = _size(rng, r)
    thick = _thin(rng, r)
    step = _u(rng, thick * 1.5, thick * 4)
    body = (
        f"p = box(size={vec([w, thick, thick])}, location={vec([0, -step * (count - 1) / 2, 0])})\n"
        f"linear_array(p, count={count}, offset={vec([0, step, 0])})\n"
    )
    return PartProgram("linear_array", body, "slats", {"count": count, "width": w, "step": step})


FAMILIES: dict[str, Family] = {
    "box": _box,
    "cylinder": _cylinder,
    "cone": _cone,
    "sphere": _sphere,
    "torus": _torus,
    "capsule": _capsule,
    "wedge": _wedge,
    "prism": _prism,
    "revolve": _revolve,
    "shell": _shell,
    "extrude": _extrude,
    "sweep": _sweep,
    "loft": _loft,
    "spring": _spring,
    "box_hole": _box_hole,
    "leg_array": _leg_array,
    "radial_array": _radial_array,
    "linear_array": _linear_array,
}

# Families a deformer suits (a tapered torus or twisted spring is noise, not a part).
_MODIFIABLE = {"box", "cylinder", "prism", "extrude", "loft", "revolve", "capsule"}


def _modifier(rng: np.random.Generator, family: str) -> tuple[str, str]:
    choices = ["taper", "twist", "bend"] + (["bevel"] if family in ("box", "prism") else [])
    kind = str(rng.choice(choices))
    if kind == "taper":
        return kind, f"taper(p, factor={num(_u(rng, 0.3, 1.6))})\n"
    if kind == "twist":
        return kind, f"twist(p, angle={int(rng.choice([20, 30, 45, 60, 90]))})\n"
    if kind == "bend":
        return kind, f"bend(p, angle={int(rng.choice([20, 30, 45, 60]))})\n"
    return kind, f"bevel(p, width={num(_u(rng, 0.01, 0.04))}, segments=2)\n"


def generate_part(
    seed: int,
    index: int,
    ranges: Ranges | None = None,
    families: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
) -> PartProgram:
    """The program of sample ``index`` of a run seeded with ``seed`` (deterministic).

    Parameters
    ----------
    seed, index : int
        Together they fix the family, the parameters and the modifier.
    ranges : Ranges, optional
        Parameter ranges (default :class:`Ranges`).
    families : sequence of str, optional
        Families to draw from (default all of :data:`FAMILIES`).
    weights : sequence of float, optional
        Relative weights of ``families`` (default equal).

    Raises
    ------
    ValueError
        For an unknown family name or weights that do not match the families.
    """
    ranges = ranges or Ranges()
    names = list(families) if families else list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown part families {unknown}; known: {', '.join(FAMILIES)}")
    if weights is not None and len(weights) != len(names):
        raise ValueError(f"{len(weights)} weights given for {len(names)} families")
    p = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("family weights must be non-negative with a positive sum")
        p = w / w.sum()
    rng = sample_rng(seed, index)
    family = str(rng.choice(names, p=p))
    part = FAMILIES[family](rng, ranges)
    if family in _MODIFIABLE and rng.random() < ranges.modifier_prob:
        kind, line = _modifier(rng, family)
        return PartProgram(
            part.family, part.body + line, part.label, {**part.params, kind: True}, kind
        )
    return part
