"""What the add-on costs Blender's main thread (the UI must never freeze).

Usage: ``.venv/bin/python benchmarks/addon_bench.py [--repeat 7]``. Prints two tables and
writes ``benchmarks/results/addon.json``:

1. one timer tick while the model is still thinking (``jobs.drain`` with an empty queue):
   the only main-thread work during a request;
2. for every ``bpy_lib`` example, delivering a result: ``runner.run_program`` (policy check,
   temporary scene, name stash, move into the result collection) against a plain ``exec`` of
   the same program in the scene. The difference is the add-on's overhead.

Medians over ``--repeat`` runs after one warm-up. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import bpy_lib  # noqa: E402
from bpy_lib import examples  # noqa: E402


def _median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def _drain_tick(ticks: int) -> float:
    """Median µs of one drain call while the request is still open."""
    from addon import jobs
    from addon.client import ChatClient

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    scene = bpy.context.scene
    job = jobs.Job(
        client=ChatClient(url, "bench", timeout_s=60),
        system="bench",
        images=[],
        max_attempts=1,
        label="llm3d bench",
    )
    job.messages = [{"role": "user", "content": "hi"}]
    jobs.start_job(scene, job, register_timer=False)
    samples = []
    for _ in range(ticks):
        start = time.perf_counter()
        interval = jobs.drain(scene.name)
        samples.append(time.perf_counter() - start)
        assert interval == jobs.DRAIN_INTERVAL_S
    job.cancel.set()
    jobs.drain(scene.name)
    listener.close()
    return 1e6 * statistics.median(samples)


def _direct(code: str) -> float:
    bpy_lib.clear_scene()
    start = time.perf_counter()
    exec(compile(code, "<program>", "exec"), {"__name__": "__main__"})
    return time.perf_counter() - start


def _addon(code: str, collection: bpy.types.Collection) -> float:
    from addon.runner import run_program

    start = time.perf_counter()
    outcome = run_program(code, collection)
    elapsed = time.perf_counter() - start
    if not outcome.ok:
        raise RuntimeError(outcome.error)
    return elapsed


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "addon.json")
    args = parser.parse_args()
    import addon_utils  # Blender's; importable once bpy is

    addon_utils.enable("addon", default_set=True)
    console = Console()

    tick_us = _drain_tick(args.ticks)
    table = Table(title="Main-thread time while the model thinks")
    table.add_column("what")
    table.add_column("median", justify="right")
    table.add_row(f"one timer tick (drain), {args.ticks} ticks", f"{tick_us:.1f} µs")
    console.print(table)

    rows = []
    collection = bpy.data.collections.new("llm3d bench")
    bpy.context.scene.collection.children.link(collection)
    for path in examples.paths():
        code = path.read_text()
        direct = [_direct(code) for _ in range(args.repeat + 1)][1:]
        bpy_lib.clear_scene()
        addon = [_addon(code, collection) for _ in range(args.repeat + 1)][1:]
        rows.append(
            {
                "example": path.stem,
                "direct_ms": _median_ms(direct),
                "addon_ms": _median_ms(addon),
                "parts": len(collection.all_objects),
            }
        )
    bpy_lib.clear_scene()

    ptable = Table(title=f"Delivering a result (median of {args.repeat}, ms)")
    for column in ("example", "parts", "plain exec", "add-on run", "overhead"):
        ptable.add_column(column, justify="left" if column == "example" else "right")
    for row in rows:
        ptable.add_row(
            row["example"],
            str(row["parts"]),
            f"{row['direct_ms']:.1f}",
            f"{row['addon_ms']:.1f}",
            f"{row['addon_ms'] - row['direct_ms']:+.1f}",
        )
    overheads = [r["addon_ms"] - r["direct_ms"] for r in rows]
    ptable.add_row(
        "median",
        "",
        f"{statistics.median(r['direct_ms'] for r in rows):.1f}",
        f"{statistics.median(r['addon_ms'] for r in rows):.1f}",
        f"{statistics.median(overheads):+.1f}",
    )
    console.print(ptable)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "blender": bpy.app.version_string,
        "repeat": args.repeat,
        "drain_tick_us": tick_us,
        "examples": rows,
        "median_overhead_ms": statistics.median(overheads),
    }
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
