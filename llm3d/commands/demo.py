"""``llm3d demo``: the reward farm end to end, as a new user first sees it.

1. builds ground truths by running a few ``bpy_lib/examples`` programs in the sandbox;
2. starts ``llm3d serve`` on the ``inline`` backend (unless ``--url`` names a running one)
   and registers them with ``POST /tasks``;
3. sends one batch of candidates through :class:`~llm3d.client.RewardClient`: exact copies,
   perturbed copies, another object, broken programs, hostile programs and a busy loop;
4. prints a table of statuses and rewards, sends the batch again (all from the cache);
5. writes comparison PNGs (ground truth above, perturbed candidate below, the metrics);
6. stops the server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llm3d.commands.common import ConfigOption, JsonOption, console, emit_json, err_console, load
from llm3d.config import Config

__all__ = ["demo_command"]

EXAMPLES = ("table", "chair", "mug", "desk_lamp")
# shrink (bpy_lib bounds sizes to (0, 2]): a small and a large change of every number
PERTURBATIONS = (0.9, 0.75)
BATCH_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class DemoItem:
    """One candidate of the demo batch and what it is meant to show."""

    id: str
    task: str
    kind: str
    code: str


def example_programs(names: tuple[str, ...] = EXAMPLES) -> dict[str, str]:
    """Source of the ``bpy_lib/examples`` programs (the farm's samples if one is missing)."""
    from worker.demo_programs import OBJECTS

    folder = Path(__file__).resolve().parents[2] / "bpy_lib" / "examples"
    out: dict[str, str] = {}
    for name in names:
        path = folder / f"{name}.py"
        out[name] = path.read_text(encoding="utf-8") if path.is_file() else ""
    fallback = iter(OBJECTS.items())
    return {n: code or next(fallback)[1] for n, code in out.items()}


def candidates(programs: dict[str, str]) -> list[DemoItem]:
    """The batch: per object exact, perturbed, wrong, broken, hostile; one busy loop."""
    from worker.demo_programs import BROKEN, HOSTILE, TIMEOUT, perturb

    names = list(programs)
    items: list[DemoItem] = []
    broken = [c for c in BROKEN if c.name in {"bad_argument", "unknown_verb", "syntax_error"}]
    for i, (name, code) in enumerate(programs.items()):
        items.append(DemoItem(f"{name}/exact", name, "exact copy", code))
        for factor in PERTURBATIONS:
            items.append(
                DemoItem(f"{name}/x{factor}", name, f"scaled ×{factor}", perturb(code, factor))
            )
        other = names[(i + 1) % len(names)]
        items.append(DemoItem(f"{name}/wrong", name, f"a {other} instead", programs[other]))
        b = broken[i % len(broken)]
        items.append(DemoItem(f"{name}/{b.name}", name, f"broken: {b.name}", b.code))
        h = HOSTILE[i % len(HOSTILE)]
        items.append(DemoItem(f"{name}/{h.name}", name, f"hostile: {h.name}", h.code))
    items.append(DemoItem("busy_loop", names[0], "never finishes", TIMEOUT.code))
    return items


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_server(config_path: Path | None, log: Path) -> Iterator[str]:
    """``llm3d serve --backend inline`` on a free port, stopped on exit."""
    import httpx

    port = free_port()
    argv = [str(Path(sys.executable).with_name("llm3d")), "serve", "--backend", "inline"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llm3d serve exited ({proc.returncode}); see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"llm3d serve did not become healthy in 120 s; see {log}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def build_ground_truths(programs: dict[str, str], config: Config) -> dict[str, tuple[Any, Any]]:
    """Run each program in the sandbox; its mesh is the ground truth."""
    from worker.execution.executor import Executor

    meshes: dict[str, tuple[Any, Any]] = {}
    with Executor(config.executor) as executor:
        for name, code in programs.items():
            result = executor.run(code)
            if not result.ok:
                raise RuntimeError(f"example {name} did not build: {result.status} {result.error}")
            meshes[name] = (result.vertices, result.faces)
    return meshes


def results_table(items: list[DemoItem], results: list[Any], title: str, *, width: int) -> Table:
    """Statuses and rewards; the error column only when the terminal is wide enough."""
    wide = width >= 110
    table = Table(title=title, title_justify="left")
    for name in ("task", "candidate", "status", "reward", "F@.05", "s"):
        numeric = name in {"reward", "F@.05", "s"}
        table.add_column(name, no_wrap=True, justify="right" if numeric else "left")
    if wide:
        table.add_column("error", overflow="ellipsis", no_wrap=True, max_width=width - 90)
    colour = {"ok": "green", "refused": "magenta", "timeout": "yellow", "infra_error": "bold red"}
    for item, r in zip(items, results, strict=True):
        f = r.metrics.get("f_score_0.05")
        row = [
            item.task,
            item.kind,
            f"[{colour.get(r.status.value, 'red')}]{r.status.value}[/]",
            "null" if r.reward is None else f"{r.reward:.3f}",
            "" if f is None else f"{f:.3f}",
            f"{r.seconds:.2f}",
        ]
        table.add_row(*row, *([escape(r.error or "")] if wide else []))
    return table


def error_lines(items: list[DemoItem], results: list[Any]) -> list[str]:
    """``id: error`` of every item that has one, whole (the console wraps long lines)."""
    return [escape(f"{i.id}: {r.error}") for i, r in zip(items, results, strict=True) if r.error]


def write_comparisons(
    items: list[DemoItem],
    results: list[Any],
    gts: dict[str, tuple[Any, Any]],
    config: Config,
    out: Path,
) -> list[Path]:
    """One PNG per object: its ground truth over its most perturbed candidate."""
    from worker.execution.executor import Executor
    from worker.render import comparison_grid, render_pair

    written: list[Path] = []
    picks = [
        (i, r)
        for i, r in zip(items, results, strict=True)
        if i.kind.endswith(f"×{PERTURBATIONS[-1]}")
    ]
    with Executor(config.executor) as executor, tempfile.TemporaryDirectory() as tmp:
        for item, result in picks:
            v, f = gts[item.task]
            run = executor.run(item.code)
            gt_views, pred_views = render_pair(
                (v, f),
                (run.vertices, run.faces) if run.ok else None,
                Path(tmp) / item.task,
                config=config.render,
            )
            kind = item.kind.replace("×", "x")  # the grid's font is ASCII-safe only
            title = f"{item.task}: {kind} - reward {result.reward:.3f} (top: ground truth)"
            written.append(
                comparison_grid(
                    gt_views, pred_views, result.metrics, out / f"{item.task}.png", title=title
                )
            )
    return written


def demo_command(
    config: ConfigOption = None,
    out: Annotated[Path, typer.Option(help="Where the comparison PNGs go.")] = Path("runs/demo"),
    url: Annotated[
        str | None, typer.Option(help="Use a running service instead of starting one.")
    ] = None,
    images: Annotated[bool, typer.Option(help="Write the comparison PNGs.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Run the reward farm demo: ground truths, a mixed batch, a table, comparison PNGs."""
    from llm3d.client import RewardClient

    cfg = load(config)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    programs = example_programs()

    def say(message: str) -> None:
        if not as_json:
            console.print(message)

    say(f"[bold]1.[/] building {len(programs)} ground truths from bpy_lib/examples …")
    gts = build_ground_truths(programs, cfg)
    server = contextlib.nullcontext(url) if url else local_server(config, out / "server.log")
    say(
        "[bold]2.[/] starting the reward service (inline backend) …"
        if not url
        else f"[bold]2.[/] using {url}"
    )
    try:
        with server as base_url, RewardClient(str(base_url), retries=2) as client:
            for name, (v, f) in gts.items():
                client.add_task(
                    f"demo/{name}",
                    {"vertices": v.tolist(), "faces": f.tolist()},
                    replace=True,  # the demo's own ids: its ground truths of this Blender
                    source="bpy_lib/examples",
                )
            items = candidates(programs)
            payload = [{"id": i.id, "code": i.code, "task_id": f"demo/{i.task}"} for i in items]
            say(f"[bold]3.[/] scoring {len(items)} candidates through RewardClient …")
            t0 = time.perf_counter()
            first = client.score_batch(payload, timeout_s=BATCH_TIMEOUT_S)
            first_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            second = client.score_batch(payload, timeout_s=BATCH_TIMEOUT_S)
            second_s = time.perf_counter() - t0
    except Exception as exc:
        err_console.print(f"[bold red]demo failed:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    pngs = write_comparisons(items, first.results, gts, cfg, out) if images else []
    cached = sum(r.cached for r in second.results)
    if as_json:
        emit_json(
            {
                "reward_version": first.reward_version,
                "results": [r.model_dump(mode="json") for r in first.results],
                "seconds": round(first_s, 3),
                "cached_second_pass": cached,
                "images": [str(p) for p in pngs],
            }
        )
        return
    title = f"reward {first.reward_version}: {len(items)} candidates in {first_s:.1f}s"
    console.print(results_table(items, first.results, title, width=console.width))
    if console.width < 110:
        console.print("[bold]errors[/] (what each failing program is told):")
        for line in error_lines(items, first.results):
            console.print("  " + line, highlight=False)
    console.print(
        f"[bold]4.[/] same batch again: {cached}/{len(items)} from the cache in {second_s:.2f}s"
    )
    for path in pngs:
        console.print(f"[bold]5.[/] wrote {path}")
    console.print(
        f"[green]demo finished in {time.perf_counter() - started:.0f}s[/] (server stopped)"
    )
