"""bpy_lib speed in a warm Blender process: every function, and every example program.

Usage: ``.venv/bin/python benchmarks/bpy_lib_bench.py [--repeat 15]``. Prints a table and
writes ``benchmarks/results/bpy_lib.json``. Targets (issue 4): a typical call under 5 ms;
a 10-part program under 100 ms warm. Each row is the median over ``--repeat`` runs (after
two warm-up runs) of the call alone: the inputs it needs are built untimed, in a scene
cleared before every run. Timings on a shared machine are noisy; the median resists that.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import bpy_lib as bl  # noqa: E402
from bpy_lib import examples  # noqa: E402

Setup = Callable[[], dict[str, str]]
Call = Callable[[dict[str, str]], object]


def _part(**kw: str) -> Setup:
    return lambda: {"p": bl.box(size=[0.4, 0.3, 0.6]), **kw}


def _dense() -> dict[str, str]:
    p = bl.box(size=[0.3, 0.3, 1.0])
    bl.subdivide(p, levels=2, smooth=False)
    return {"p": p}


def _two() -> dict[str, str]:
    return {"a": bl.cylinder(radius=0.3, depth=0.5), "b": bl.box(size=0.4, location=[0.3, 0, 0])}


def _none() -> dict[str, str]:
    return {}


CASES: list[tuple[str, Setup, Call]] = [
    ("box", _none, lambda h: bl.box(size=[0.5, 0.4, 0.3])),
    ("box(round)", _none, lambda h: bl.box(size=[0.5, 0.4, 0.3], round=0.03)),
    ("cylinder", _none, lambda h: bl.cylinder(radius=0.2, depth=0.5)),
    ("cone", _none, lambda h: bl.cone(radius1=0.2, radius2=0.1, depth=0.5)),
    ("sphere", _none, lambda h: bl.sphere(radius=0.3)),
    ("torus", _none, lambda h: bl.torus(major_radius=0.4, minor_radius=0.1)),
    ("capsule", _none, lambda h: bl.capsule(radius=0.1, depth=0.6)),
    ("wedge", _none, lambda h: bl.wedge(size=[0.4, 0.3, 0.2])),
    ("prism", _none, lambda h: bl.prism(sides=6, radius=0.2, depth=0.4)),
    ("plane", _none, lambda h: bl.plane(size=[0.5, 0.5])),
    ("polyline", _none, lambda h: bl.polyline(points=[[0, 0], [0.3, 0.1], [0.2, 0.5]], plane="XZ")),
    ("bezier", _none, lambda h: bl.bezier(points=[[0, 0, 0], [0.3, 0, 0.2], [0, 0, 0.5]])),
    ("arc", _none, lambda h: bl.arc(radius=0.3)),
    ("circle", _none, lambda h: bl.circle(radius=0.3)),
    ("rectangle", _none, lambda h: bl.rectangle(width=0.3, height=0.2)),
    (
        "rounded_rectangle",
        _none,
        lambda h: bl.rounded_rectangle(width=0.3, height=0.2, radius=0.05),
    ),
    ("polygon", _none, lambda h: bl.polygon(sides=6, radius=0.3)),
    ("helix", _none, lambda h: bl.helix(radius=0.3, pitch=0.1, turns=5)),
    ("extrude", lambda: {"c": bl.circle(radius=0.3)}, lambda h: bl.extrude(h["c"], depth=0.4)),
    (
        "revolve",
        lambda: {"c": bl.polyline(points=[[0, 0], [0.3, 0], [0.2, 0.6], [0, 0.6]], plane="XZ")},
        lambda h: bl.revolve(h["c"]),
    ),
    (
        "sweep",
        lambda: {"c": bl.bezier(points=[[0, 0, 0], [0.4, 0, 0.2], [0.4, 0, 0.6], [0, 0, 0.8]])},
        lambda h: bl.sweep(h["c"], radius=0.03),
    ),
    (
        "loft",
        lambda: {
            "a": bl.circle(radius=0.3),
            "b": bl.rectangle(width=0.4, height=0.4, center=[0, 0, 0.5]),
            "c": bl.circle(radius=0.1, center=[0, 0, 1]),
        },
        lambda h: bl.loft([h["a"], h["b"], h["c"]]),
    ),
    ("union", _two, lambda h: bl.union(h["a"], h["b"])),
    ("difference", _two, lambda h: bl.difference(h["a"], h["b"])),
    ("intersection", _two, lambda h: bl.intersection(h["a"], h["b"])),
    ("move", _part(), lambda h: bl.move(h["p"], offset=[0.1, 0, 0])),
    ("rotate", _part(), lambda h: bl.rotate(h["p"], angles=[30, 0, 45])),
    ("scale", _part(), lambda h: bl.scale(h["p"], factor=[1, 1, 0.5])),
    ("mirror", _part(), lambda h: bl.mirror(h["p"], axis="X")),
    ("align", _part(), lambda h: bl.align(h["p"], point=[0, 0, 0], anchor="bottom")),
    ("align_axis", _part(), lambda h: bl.align_axis(h["p"], direction=[1, 1, 0])),
    ("linear_array", _part(), lambda h: bl.linear_array(h["p"], count=5, offset=[0.1, 0, 0])),
    ("grid_array", _part(), lambda h: bl.grid_array(h["p"], counts=[3, 3], spacing=[0.1, 0.1])),
    ("radial_array", _part(), lambda h: bl.radial_array(h["p"], count=12)),
    ("bevel", _part(), lambda h: bl.bevel(h["p"], width=0.03)),
    ("solidify", lambda: {"p": bl.plane(size=0.5)}, lambda h: bl.solidify(h["p"], thickness=0.02)),
    ("subdivide", _part(), lambda h: bl.subdivide(h["p"], levels=2)),
    ("taper", _dense, lambda h: bl.taper(h["p"], factor=0.5)),
    ("twist", _dense, lambda h: bl.twist(h["p"], angle=90)),
    ("bend", _dense, lambda h: bl.bend(h["p"], angle=90)),
    ("simple_deform", _dense, lambda h: bl.simple_deform(h["p"], method="twist", amount=45)),
    (
        "join",
        lambda: {"a": bl.box(size=0.2), "b": bl.sphere(radius=0.1)},
        lambda h: bl.join([h["a"], h["b"]]),
    ),
    ("duplicate", _part(), lambda h: bl.duplicate(h["p"])),
    ("delete", _part(), lambda h: bl.delete(h["p"])),
    ("bounds", _part(), lambda h: bl.bounds(h["p"])),
    ("clear_scene", _part(), lambda h: bl.clear_scene()),
    (
        "export_scene",
        lambda: {"a": bl.sphere(radius=0.3), "b": bl.box(size=0.3, location=[0.5, 0, 0])},
        lambda h: bl.export_scene(),
    ),
]


def time_call(setup: Setup, call: Call, repeat: int) -> float:
    """Median milliseconds of ``call`` after ``setup`` in a cleared scene."""
    times = []
    for i in range(repeat + 2):
        bl.clear_scene()
        handles = setup()
        t0 = time.perf_counter()
        call(handles)
        dt = (time.perf_counter() - t0) * 1000
        if i >= 2:
            times.append(dt)
    return statistics.median(times)


def time_example(path: Path, repeat: int) -> tuple[float, int, int]:
    """Median milliseconds of a whole example (clear, run, export), its parts and faces."""
    times = []
    faces = 0
    for i in range(repeat + 2):
        t0 = time.perf_counter()
        _, f = examples.run(path)
        dt = (time.perf_counter() - t0) * 1000
        faces = len(f)
        if i >= 2:
            times.append(dt)
    n_parts = path.read_text(encoding="utf-8").count("# part_")
    return statistics.median(times), n_parts, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bpy_lib.json"
    )
    args = parser.parse_args()
    console = Console()

    functions = {}
    table = Table(title=f"bpy_lib calls, warm (median of {args.repeat}, ms)")
    table.add_column("function")
    table.add_column("ms", justify="right")
    table.add_column("< 5 ms", justify="center")
    for label, setup, call in CASES:
        ms = time_call(setup, call, args.repeat)
        functions[label] = round(ms, 3)
        table.add_row(label, f"{ms:.2f}", "yes" if ms < 5 else "NO")
    console.print(table)

    programs = {}
    ptable = Table(
        title=f"example programs, warm, clear + run + export (median of {args.repeat}, ms)"
    )
    for col in ("example", "parts", "faces", "ms", "ms/part"):
        ptable.add_column(col, justify="left" if col == "example" else "right")
    for path in examples.paths():
        ms, n_parts, faces = time_example(path, args.repeat)
        programs[path.stem] = {"ms": round(ms, 3), "parts": n_parts, "faces": faces}
        ptable.add_row(path.stem, str(n_parts), str(faces), f"{ms:.1f}", f"{ms / n_parts:.1f}")
    console.print(ptable)

    calls = sorted(functions.values())
    typical = statistics.median(calls)
    ten = [v["ms"] for v in programs.values() if v["parts"] >= 10]
    summary = {
        "typical_call_ms": round(typical, 3),
        "calls_under_5ms": sum(v < 5 for v in calls),
        "calls": len(calls),
        "ten_part_program_ms": max(ten) if ten else None,
        "slowest_program": max(programs, key=lambda k: programs[k]["ms"]),
        "slowest_program_ms": max(v["ms"] for v in programs.values()),
    }
    console.print(
        f"typical call {typical:.2f} ms (target < 5); {summary['calls_under_5ms']}/{len(calls)} "
        f"calls under 5 ms; 10-part program {summary['ten_part_program_ms']} ms (target < 100)"
    )
    result = {
        "blender": bpy.app.version_string,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeat": args.repeat,
        "summary": summary,
        "functions_ms": functions,
        "programs": programs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
