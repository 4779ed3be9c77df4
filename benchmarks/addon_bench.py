"""What the add-on costs Blender's main thread (the UI must never freeze).

Usage: ``.venv/bin/python benchmarks/addon_bench.py [--repeat 7]``. Prints two tables and
writes ``benchmarks/results/addon.json``:

1. one timer tick while the model is still thinking (``jobs.drain`` with an empty queue):
   the only main-thread work during a request; then a streamed answer (Server-Sent Events
   from the tests' local chat-completions server, ``--stream-chars`` characters at
   ``--stream-rate`` chunks/s): each tick copies the text so far into the text block, so
   the table gives the ticks' median and longest (the main thread's longest stall), their
   share of the stream's wall time, and the tick that builds the result; then a Generate
   with ``--candidates`` N (default 4) answers, four ``bpy_lib`` examples against the views
   of the first, rendered from the training rig: the worker thread runs each in the sandbox,
   a background Blender renders and matches them, and the main thread's ticks are timed the
   same way (their longest, and the tick that builds the kept one);
2. the sandbox (a background Blender, out of this process): its start-up (the first run of
   a session), and a loop inside C (``max(iter(int, 1))``) with a 2 s limit: how long until
   it is killed and the error is back;
3. for every ``bpy_lib`` example, a warm run in the sandbox (``runner.run_program``: the
   fork server's policy check, fork, run, mesh over the socket, one object built in the
   result collection; the main thread's share is the build), the same program with
   *Trusted Execution* (in this process: temporary scene, name stash, move into the result
   collection) and a plain ``exec`` in the scene;
4. the renders the add-on makes on the main thread (Blender renders only there): a history
   thumbnail (128 px, rendered, loaded and packed into the .blend), Refine's *Include
   Render* (384 px) of the largest example, and *Use Current View* (the active camera,
   768 px on the longer side, Workbench); the first of a session also starts Blender's GPU
   module, so it is reported apart.

Medians over ``--repeat`` runs after one warm-up. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import tempfile
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


def _stream_ticks(chars: int, rate: float) -> dict[str, float]:
    """Main-thread cost while an answer streams in: every drain call timed, as Blender's
    timer would call it (every ``DRAIN_INTERVAL_S``)."""
    from addon import jobs
    from addon.client import ChatClient
    from tests.addon.conftest import ChatServer, serve

    program = examples.paths()[0].read_text()
    answer = "```python\n" + (program * (chars // len(program) + 1))[:chars] + "\n```"
    state = ChatServer(answers=[answer], chunk_chars=4, chunk_delay_s=1.0 / rate)
    scene = bpy.context.scene
    with serve(state):
        job = jobs.Job(
            client=ChatClient(state.url, "bench", timeout_s=60),
            system="bench",
            images=[],
            max_attempts=1,
            label="llm3d bench stream",
        )
        job.messages = [{"role": "user", "content": "hi"}]
        begin = time.perf_counter()
        jobs.start_job(scene, job, register_timer=False)
        streaming: list[float] = []
        last = 0.0
        while True:
            receiving = job.phase == "model"
            start = time.perf_counter()
            interval = jobs.drain(scene.name)
            elapsed = time.perf_counter() - start
            if interval is None:
                last = elapsed
                break
            if receiving and job.stream.snapshot().receiving:
                streaming.append(elapsed)
            time.sleep(interval)
        wall = time.perf_counter() - begin
    text = bpy.data.texts.get("llm3d bench stream.py")
    if text is not None:
        bpy.data.texts.remove(text)
    return {
        "chars": chars,
        "chunks_per_s": rate,
        "ticks": len(streaming),
        "tick_median_ms": _median_ms(streaming),
        "tick_max_ms": 1000.0 * max(streaming),
        "main_thread_share": sum(streaming) / max(wall, 1e-9),
        "deliver_tick_ms": 1000.0 * last,
        "wall_s": wall,
    }


def _candidate_ticks(n: int, folder: Path) -> dict[str, float]:
    """Main-thread cost of a Generate with ``n`` candidates (each tick timed)."""
    from addon import jobs
    from addon.background import get_sandbox
    from addon.client import ChatClient, build_messages
    from llm3d.config import RenderConfig
    from tests.addon.conftest import ChatServer, serve
    from worker.render import render_views

    codes = [p.read_text() for p in examples.paths()[:n]]
    truth = get_sandbox().run(codes[0], 60)
    views = render_views(truth.vertices, truth.faces, folder, config=RenderConfig())
    state = ChatServer(answers=[f"```python\n{c}```" for c in codes])
    scene = bpy.context.scene
    with serve(state):
        job = jobs.Job(
            client=ChatClient(state.url, "bench", timeout_s=60),
            system="bench",
            images=[str(v) for v in views],
            max_attempts=1,
            label="llm3d bench candidates",
            candidates=n,
        )
        job.messages = build_messages("bench", job.images)
        begin = time.perf_counter()
        jobs.start_job(scene, job, register_timer=False)
        ticks: list[float] = []
        last = 0.0
        while True:
            start = time.perf_counter()
            interval = jobs.drain(scene.name)
            elapsed = time.perf_counter() - start
            if interval is None:
                last = elapsed
                break
            ticks.append(elapsed)
            time.sleep(interval)
        wall = time.perf_counter() - begin
    settings = scene.llm3d  # type: ignore[attr-defined]
    if not settings.status.startswith("Done"):
        raise RuntimeError(f"{settings.status} {settings.error}")
    scores = [round(c.score, 3) for c in settings.candidates if c.has_score]
    collection = settings.collection
    for obj in list(collection.all_objects):
        bpy.data.objects.remove(obj)
    bpy.data.collections.remove(collection)
    return {
        "candidates": n,
        "ticks": len(ticks),
        "tick_median_ms": _median_ms(ticks),
        "tick_max_ms": 1000.0 * max(ticks),
        "main_thread_share": (sum(ticks) + last) / max(wall, 1e-9),
        "deliver_tick_ms": 1000.0 * last,
        "wall_s": wall,
        "kept": next(c.number for c in settings.candidates if c.kept),
        "scores": scores,
    }


def _direct(code: str) -> float:
    bpy_lib.clear_scene()
    start = time.perf_counter()
    exec(compile(code, "<program>", "exec"), {"__name__": "__main__"})
    return time.perf_counter() - start


def _addon(code: str, collection: bpy.types.Collection, *, trusted: bool) -> float:
    from addon.runner import run_program

    start = time.perf_counter()
    outcome = run_program(code, collection, trusted=trusted)
    elapsed = time.perf_counter() - start
    if not outcome.ok:
        raise RuntimeError(outcome.error)
    return elapsed


def _build_only(code: str, collection: bpy.types.Collection) -> tuple[float, float]:
    """(seconds in the sandbox, seconds building the mesh on the main thread)."""
    from addon.background import get_sandbox
    from addon.runner import build_result, result_name

    start = time.perf_counter()
    result = get_sandbox().run(code, 60.0)
    ran = time.perf_counter()
    outcome = build_result(result, collection, result_name(collection))
    if not outcome.ok:
        raise RuntimeError(outcome.error)
    return ran - start, time.perf_counter() - ran


def _sandbox_costs(collection: bpy.types.Collection) -> dict[str, float | str]:
    """Start-up of the background Blender and the time to contain a loop inside C."""
    from addon import background
    from addon.runner import run_program

    cube = "from bpy_lib import *\nbox(size=[1, 1, 1])\n"
    background.shutdown()
    start = time.perf_counter()
    assert run_program(cube, collection).ok
    first = time.perf_counter() - start
    sandbox = background.get_sandbox()
    start = time.perf_counter()
    outcome = run_program("from bpy_lib import *\nmax(iter(int, 1))\n", collection, timeout_s=2)
    contained = time.perf_counter() - start
    assert outcome.error.startswith("TimeoutError"), outcome.error
    return {
        "first_run_s": first,
        "server_start_s": sandbox.started_s or 0.0,
        "c_loop_2s_limit_s": contained,
        "layers": sandbox.layers(),
    }


def _render_costs(collection: bpy.types.Collection, repeat: int) -> dict[str, float]:
    """Main-thread seconds of each render: the session's first, then the median warm one."""
    import shutil
    import tempfile

    from addon import history, snapshots

    names = [o.name for o in collection.all_objects]
    out = Path(tempfile.mkdtemp(prefix="llm3d-bench-"))
    scene = bpy.context.scene
    camera = bpy.data.objects.new("bench camera", bpy.data.cameras.new("bench camera"))
    camera.location = (3.0, -3.0, 2.0)
    camera.rotation_euler = (-camera.location).to_track_quat("-Z", "Y").to_euler()  # type: ignore[operator]
    scene.collection.objects.link(camera)
    scene.camera = camera  # 1920 x 1080 by default: rendered at 768 x 432

    def thumbnail() -> None:
        image = history.make_thumbnail(names)
        assert image is not None
        bpy.data.images.remove(image)

    def refine() -> None:
        _path, folder = snapshots.refine_render(collection, "")
        shutil.rmtree(folder)

    def view() -> None:
        snapshots.render_view(bpy.context, out).unlink()

    costs: dict[str, float] = {}
    for name, fn in (("thumbnail", thumbnail), ("refine_render", refine), ("view", view)):
        samples = []
        for _ in range(repeat + 1):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        costs[f"{name}_first_s"] = samples[0]
        costs[f"{name}_ms"] = _median_ms(samples[1:])
    shutil.rmtree(out)
    bpy.data.objects.remove(camera)
    return costs


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--stream-chars", type=int, default=8000)
    parser.add_argument("--stream-rate", type=float, default=200.0, help="chunks a second")
    parser.add_argument("--candidates", type=int, default=4)
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

    stream = _stream_ticks(args.stream_chars, args.stream_rate)
    stable = Table(
        title=f"Main thread while {stream['chars']} characters stream in "
        f"({stream['chunks_per_s']:.0f} chunks/s, {stream['wall_s']:.1f} s)"
    )
    stable.add_column("what")
    stable.add_column("value", justify="right")
    stable.add_row(f"tick, median of {stream['ticks']}", f"{stream['tick_median_ms']:.2f} ms")
    stable.add_row("longest tick (the longest stall)", f"{stream['tick_max_ms']:.2f} ms")
    stable.add_row("share of the stream's wall time", f"{100 * stream['main_thread_share']:.2f} %")
    stable.add_row("the tick that builds the result", f"{stream['deliver_tick_ms']:.1f} ms")
    console.print(stable)

    with tempfile.TemporaryDirectory(prefix="llm3d-bench-") as tmp:
        picked = _candidate_ticks(args.candidates, Path(tmp))
    ctable = Table(
        title=f"Main thread during a Generate with {picked['candidates']} candidates "
        f"({picked['wall_s']:.1f} s: requests, sandbox runs, render and match off the thread)"
    )
    ctable.add_column("what")
    ctable.add_column("value", justify="right")
    ctable.add_row(f"tick, median of {picked['ticks']}", f"{picked['tick_median_ms']:.3f} ms")
    ctable.add_row("longest tick while they run", f"{picked['tick_max_ms']:.2f} ms")
    ctable.add_row("the tick that builds the kept one", f"{picked['deliver_tick_ms']:.1f} ms")
    ctable.add_row("share of the wall time", f"{100 * picked['main_thread_share']:.2f} %")
    ctable.add_row("kept (match scores)", f"{picked['kept']} ({picked['scores']})")
    console.print(ctable)

    collection = bpy.data.collections.new("llm3d bench")
    bpy.context.scene.collection.children.link(collection)
    costs = _sandbox_costs(collection)
    stable = Table(title="The sandbox (a background Blender)")
    stable.add_column("what")
    stable.add_column("seconds", justify="right")
    stable.add_row(
        "first run of a session (server start + run + build)", f"{costs['first_run_s']:.2f}"
    )
    stable.add_row("  of which the server's start-up", f"{costs['server_start_s']:.2f}")
    stable.add_row(
        "loop inside C, 2 s limit: killed, error back", f"{costs['c_loop_2s_limit_s']:.2f}"
    )
    console.print(stable)
    console.print(str(costs["layers"]))

    rows = []
    for path in examples.paths():
        code = path.read_text()
        direct = [_direct(code) for _ in range(args.repeat + 1)][1:]
        bpy_lib.clear_scene()
        trusted = [_addon(code, collection, trusted=True) for _ in range(args.repeat + 1)][1:]
        sandboxed = [_addon(code, collection, trusted=False) for _ in range(args.repeat + 1)][1:]
        split = [_build_only(code, collection) for _ in range(args.repeat)]
        rows.append(
            {
                "example": path.stem,
                "direct_ms": _median_ms(direct),
                "trusted_ms": _median_ms(trusted),
                "sandbox_ms": _median_ms(sandboxed),
                "sandbox_main_thread_ms": _median_ms([b for _, b in split]),
                "faces": sum(len(o.data.polygons) for o in collection.all_objects),
            }
        )
    biggest = max(
        examples.paths(), key=lambda p: next(r["faces"] for r in rows if r["example"] == p.stem)
    )
    _addon(biggest.read_text(), collection, trusted=False)
    renders = _render_costs(collection, args.repeat)
    rtable = Table(title=f"Renders on the main thread ({biggest.stem}; median of {args.repeat})")
    rtable.add_column("what")
    rtable.add_column("first of a session, s", justify="right")
    rtable.add_column("then, ms", justify="right")
    for key, what in (
        ("thumbnail", "history thumbnail, 128 px (render, load, pack)"),
        ("refine_render", "Refine's Include Render, 384 px"),
        ("view", "Use Current View: the camera, 768 x 432"),
    ):
        rtable.add_row(what, f"{renders[key + '_first_s']:.2f}", f"{renders[key + '_ms']:.0f}")
    bpy_lib.clear_scene()

    ptable = Table(title=f"Delivering a result (median of {args.repeat}, ms)")
    columns = ("example", "faces", "plain exec", "trusted", "sandbox", "of it main thread")
    for column in columns:
        ptable.add_column(column, justify="left" if column == "example" else "right")
    keys = ("direct_ms", "trusted_ms", "sandbox_ms", "sandbox_main_thread_ms")
    for row in rows:
        ptable.add_row(row["example"], str(row["faces"]), *(f"{row[k]:.1f}" for k in keys))
    ptable.add_row("median", "", *(f"{statistics.median(r[k] for r in rows):.1f}" for k in keys))
    console.print(ptable)
    console.print(rtable)
    overheads = [r["sandbox_ms"] - r["direct_ms"] for r in rows]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "blender": bpy.app.version_string,
        "repeat": args.repeat,
        "drain_tick_us": tick_us,
        "stream": stream,
        "candidates": picked,
        "sandbox": costs,
        "examples": rows,
        "renders": renders,
        "median_sandbox_overhead_ms": statistics.median(overheads),
    }
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")
    from addon import background

    background.shutdown()


if __name__ == "__main__":
    main()
