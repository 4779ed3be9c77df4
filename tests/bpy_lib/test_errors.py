"""Every function refuses bad arguments with a message naming itself, the argument and the range."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import bpy_lib as bl

pytestmark = pytest.mark.blender

P, C, OPEN = "p", "c", "o"  # a part, a closed curve, an open curve (made by the fixture)

E = ValueError
T = TypeError
CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    (
        "box size negative",
        lambda: bl.box(size=[1, -1, 1]),
        E,
        r"box\(size\): expected a list of 3 numbers in \(0, 2\]",
    ),
    ("box size short", lambda: bl.box(size=[1, 1]), T, r"box\(size\): expected a list of 3"),
    (
        "box round too big",
        lambda: bl.box(size=0.2, round=0.2),
        E,
        r"box\(round\): expected a number in \[0, 0.1\]",
    ),
    (
        "box location far",
        lambda: bl.box(size=1, location=[0, 0, 3]),
        E,
        r"box\(location\): .* in \[-2, 2\]",
    ),
    (
        "box rotation text",
        lambda: bl.box(size=1, rotation="up"),
        T,
        r"box\(rotation\): expected a list of 3",
    ),
    (
        "box name bad",
        lambda: bl.box(size=1, name="a/b"),
        E,
        r"box\(name\): expected 1 to 60 letters",
    ),
    ("box name type", lambda: bl.box(size=1, name=3), T, r"box\(name\): expected a string or None"),
    (
        "cylinder radius str",
        lambda: bl.cylinder(radius="a", depth=1),
        T,
        r"cylinder\(radius\): expected a number in \(0, 1\]",
    ),
    ("cylinder nan", lambda: bl.cylinder(radius=float("nan"), depth=1), E, r"cylinder\(radius\)"),
    ("cylinder bool", lambda: bl.cylinder(radius=True, depth=1), T, r"cylinder\(radius\)"),
    (
        "cylinder segments",
        lambda: bl.cylinder(radius=0.1, depth=1, segments=2),
        E,
        r"cylinder\(segments\): expected a whole number in \[3, 256\]",
    ),
    (
        "cylinder segments float",
        lambda: bl.cylinder(radius=0.1, depth=1, segments=8.5),
        T,
        r"cylinder\(segments\)",
    ),
    (
        "cone radii zero",
        lambda: bl.cone(radius1=0, depth=1),
        E,
        r"cone\(radius1, radius2\): at least one radius",
    ),
    (
        "cone depth",
        lambda: bl.cone(radius1=0.2, depth=0),
        E,
        r"cone\(depth\): expected a number in \(0, 2\]",
    ),
    (
        "sphere rings",
        lambda: bl.sphere(radius=0.2, rings=1),
        E,
        r"sphere\(rings\): expected a whole number in \[2, 256\]",
    ),
    (
        "torus minor",
        lambda: bl.torus(major_radius=0.2, minor_radius=0.3),
        E,
        r"torus\(minor_radius\)",
    ),
    (
        "capsule short",
        lambda: bl.capsule(radius=0.3, depth=0.4),
        E,
        r"capsule\(depth\): must be at least 2 \* radius",
    ),
    ("wedge size", lambda: bl.wedge(size=0), E, r"wedge\(size\): expected a number in \(0, 2\]"),
    (
        "prism sides",
        lambda: bl.prism(sides=2, radius=0.1, depth=0.1),
        E,
        r"prism\(sides\): expected a whole number in \[3, 64\]",
    ),
    (
        "plane size",
        lambda: bl.plane(size=[1, 2, 3]),
        T,
        r"plane\(size\): expected a list of 2 numbers",
    ),
    (
        "polyline one point",
        lambda: bl.polyline(points=[[0, 0]]),
        E,
        r"polyline\(points\): expected a list of 2 to 512 points",
    ),
    (
        "polyline ragged",
        lambda: bl.polyline(points=[[0, 0], [1, 0, 0]]),
        E,
        r"polyline\(points\): all points need the same",
    ),
    (
        "polyline repeated",
        lambda: bl.polyline(points=[[0, 0], [0, 0], [1, 0]]),
        E,
        r"polyline\(points\): points 0 and 1 are the same",
    ),
    (
        "polyline plane",
        lambda: bl.polyline(points=[[0, 0], [1, 0]], plane="XW"),
        E,
        r"polyline\(plane\): expected one of 'XY', 'XZ', 'YZ'",
    ),
    (
        "polyline closed flag",
        lambda: bl.polyline(points=[[0, 0], [1, 0]], closed=1),
        T,
        r"polyline\(closed\): expected True or False",
    ),
    (
        "polyline closed 2 points",
        lambda: bl.polyline(points=[[0, 0], [1, 0]], closed=True),
        E,
        r"polyline\(points\): a closed curve needs at least 3",
    ),
    (
        "bezier too many",
        lambda: bl.bezier(points=[[i / 10, 0] for i in range(9)]),
        E,
        r"bezier\(points\): expected 2 to 8 control points",
    ),
    (
        "arc same angles",
        lambda: bl.arc(radius=0.2, start_angle=10, end_angle=10),
        E,
        r"arc\(end_angle\): must differ",
    ),
    (
        "circle center",
        lambda: bl.circle(radius=0.2, center=[0, 0]),
        T,
        r"circle\(center\): expected a list of 3 numbers",
    ),
    ("rectangle width", lambda: bl.rectangle(width=-1, height=1), E, r"rectangle\(width\)"),
    (
        "rounded_rectangle radius",
        lambda: bl.rounded_rectangle(width=0.4, height=0.2, radius=0.2),
        E,
        r"rounded_rectangle\(radius\): expected a number in \(0, 0.1\]",
    ),
    ("polygon sides", lambda: bl.polygon(sides=100, radius=0.2), E, r"polygon\(sides\)"),
    (
        "helix too tall",
        lambda: bl.helix(radius=0.2, pitch=0.5, turns=10),
        E,
        r"helix\(turns\): pitch \* turns must be at most 4",
    ),
    (
        "helix turns",
        lambda: bl.helix(radius=0.2, pitch=0.1, turns=0),
        E,
        r"helix\(turns\): expected a number in \(0, 50\]",
    ),
    (
        "extrude part not curve",
        lambda: bl.extrude(P, depth=0.1),
        E,
        r"extrude\(profile\): no curve named 'p'; existing: 'c', 'o'",
    ),
    (
        "extrude depth zero",
        lambda: bl.extrude(C, depth=0),
        E,
        r"extrude\(depth\): expected a number in \[-2, 2\], not 0",
    ),
    (
        "extrude direction zero",
        lambda: bl.extrude(C, depth=0.1, direction=[0, 0, 0]),
        E,
        r"extrude\(direction\): expected a non-zero direction",
    ),
    (
        "revolve axis",
        lambda: bl.revolve(OPEN, axis="W"),
        E,
        r"revolve\(axis\): expected one of 'X', 'Y', 'Z'",
    ),
    ("revolve angle", lambda: bl.revolve(OPEN, angle=0), E, r"revolve\(angle\)"),
    ("sweep path unknown", lambda: bl.sweep("nope"), E, r"sweep\(path\): no curve named 'nope'"),
    (
        "sweep scales",
        lambda: bl.sweep(OPEN, scales=[1, 0]),
        E,
        r"sweep\(scales\): expected a list of 2 numbers in \(0, 10\]",
    ),
    (
        "sweep profile part",
        lambda: bl.sweep(OPEN, profile=P),
        E,
        r"sweep\(profile\): no curve named 'p'",
    ),
    ("loft one", lambda: bl.loft([C]), E, r"loft\(profiles\): expected 2 to 16 curves"),
    ("loft string", lambda: bl.loft(C), T, r"loft\(profiles\): expected a list"),
    ("union curve", lambda: bl.union(P, C), E, r"union\(parts\[1\]\): no part named 'c'"),
    (
        "difference alone",
        lambda: bl.difference(P),
        T,
        r"difference: expected at least one other part",
    ),
    (
        "intersection twice",
        lambda: bl.intersection(P, P),
        E,
        r"intersection: the part 'p' is given twice",
    ),
    (
        "move offset",
        lambda: bl.move(P, offset=[0, 0]),
        T,
        r"move\(offset\): expected a list of 3 numbers",
    ),
    (
        "move unknown",
        lambda: bl.move("ghost", offset=[0, 0, 0]),
        E,
        r"move\(part\): no part or curve named 'ghost'",
    ),
    (
        "move handle type",
        lambda: bl.move(3, offset=[0, 0, 0]),
        T,
        r"move\(part\): expected the name of a part or curve",
    ),
    (
        "rotate quaternion zero",
        lambda: bl.rotate(P, quaternion=[0, 0, 0, 0]),
        E,
        r"rotate\(quaternion\): expected a non-zero",
    ),
    (
        "rotate angles big",
        lambda: bl.rotate(P, angles=[400, 0, 0]),
        E,
        r"rotate\(angles\): .* in \[-360, 360\]",
    ),
    (
        "scale zero",
        lambda: bl.scale(P, factor=0),
        E,
        r"scale\(factor\): expected a number in \(0, 10\]",
    ),
    ("scale pivot", lambda: bl.scale(P, factor=2, pivot=[0]), T, r"scale\(pivot\)"),
    ("mirror axis", lambda: bl.mirror(P, axis="Q"), E, r"mirror\(axis\): expected one of"),
    (
        "align anchor",
        lambda: bl.align(P, point=[0, 0, 0], anchor="left"),
        E,
        r"align\(anchor\): expected one of 'center', 'bottom'",
    ),
    (
        "align_axis zero",
        lambda: bl.align_axis(P, direction=[0, 0, 0]),
        E,
        r"align_axis\(direction\): expected a non-zero",
    ),
    (
        "linear_array count",
        lambda: bl.linear_array(P, count=101, offset=[0, 0, 0.1]),
        E,
        r"linear_array\(count\)",
    ),
    (
        "grid_array counts",
        lambda: bl.grid_array(P, counts=[2], spacing=[0.1]),
        T,
        r"grid_array\(counts\): expected 2 or 3",
    ),
    (
        "grid_array spacing",
        lambda: bl.grid_array(P, counts=[2, 2], spacing=[0.1, 0.1, 0.1]),
        T,
        r"grid_array\(spacing\): expected a list of 2",
    ),
    (
        "radial_array angle",
        lambda: bl.radial_array(P, count=3, angle=0),
        E,
        r"radial_array\(angle\)",
    ),
    (
        "bevel width",
        lambda: bl.bevel(P, width=1),
        E,
        r"bevel\(width\): expected a number in \(0, 0.5\]",
    ),
    ("bevel curve", lambda: bl.bevel(C, width=0.1), E, r"bevel\(part\): no part named 'c'"),
    (
        "solidify offset",
        lambda: bl.solidify(P, thickness=0.1, offset=2),
        E,
        r"solidify\(offset\): expected a number in \[-1, 1\]",
    ),
    (
        "subdivide levels",
        lambda: bl.subdivide(P, levels=4),
        E,
        r"subdivide\(levels\): expected a whole number in \[1, 3\]",
    ),
    (
        "taper factor",
        lambda: bl.taper(P, factor=-1),
        E,
        r"taper\(factor\): expected a number in \[0, 10\]",
    ),
    ("twist axis", lambda: bl.twist(P, angle=10, axis="z2"), E, r"twist\(axis\)"),
    ("bend zero", lambda: bl.bend(P, angle=0), E, r"bend\(angle\): .* not 0"),
    (
        "simple_deform method",
        lambda: bl.simple_deform(P, method="melt", amount=1),
        E,
        r"simple_deform\(method\)",
    ),
    ("join twice", lambda: bl.join([P, P]), E, r"join\(parts\): a part is listed twice"),
    (
        "join name used",
        lambda: bl.join([P, bl.box(size=0.1)], name="c"),
        E,
        r"join\(name\): the name 'c' is already used",
    ),
    (
        "duplicate name used",
        lambda: bl.duplicate(P, name="o"),
        E,
        r"duplicate\(name\): the name 'o' is already used",
    ),
    (
        "delete unknown",
        lambda: bl.delete("ghost"),
        E,
        r"delete\(part\): no part or curve named 'ghost'",
    ),
    ("bounds curve", lambda: bl.bounds(C), E, r"bounds\(part\): no part named 'c'"),
    ("export_scene path type", lambda: bl.export_scene(path=3), T, r"export_scene\(path\)"),
]


@pytest.mark.parametrize(("label", "call", "kind", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_argument_is_named(
    label: str, call: Callable[[], object], kind: type[Exception], pattern: str
) -> None:
    bl.box(size=0.5, name=P)
    bl.circle(radius=0.2, name=C)
    bl.polyline(points=[[0.1, 0], [0.3, 0.5]], plane="XZ", name=OPEN)
    with pytest.raises(kind, match=pattern):
        call()


def test_every_public_function_has_an_error_case() -> None:
    names = {n for n in bl.__all__ if callable(getattr(bl, n)) and n[0].islower()}
    names -= {"clear_scene", "parts", "reference"}  # take no arguments
    covered = {c[0].split()[0] for c in CASES}
    assert names <= covered, sorted(names - covered)


def test_numpy_values_are_accepted() -> None:
    h = bl.box(size=np.array([0.5, 0.5, 0.5]), location=np.zeros(3))
    assert bl.bounds(h)[1] == [0.25, 0.25, 0.25]
    bl.cylinder(radius=np.float32(0.1), depth=np.int64(1), segments=np.int32(8))
