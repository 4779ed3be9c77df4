"""``llm3d score PRED GT``: compare a prediction with a ground truth (DESIGN §3, §4).

PRED and GT are each a mesh file (.obj .ply .stl .glb .gltf .off) or a ``bpy_lib`` program
(.py), which runs through the sandboxed executor exactly as for a reward. A program PRED gets
the full reward (status, reward, components, metrics); a mesh PRED has no code to give a
format score, so it gets the metrics and the gated part only (``reward`` is null).

Exit status: 0 when PRED was scored (whatever its gate), 2 for usage errors and unusable
ground truths, 3 when the executor itself failed (``infra_error``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy.typing as npt
import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from worker.execution.executor import Executor
    from worker.types import ExecResult

from llm3d.commands.common import ConfigOption, JsonOption

__all__ = ["LoadedInput", "load_input", "score_command"]


@dataclass
class LoadedInput:
    """A mesh file read, or a program run: what the commands score or render."""

    path: Path
    is_program: bool
    code: str | None
    result: ExecResult | None
    vertices: npt.NDArray[Any]
    faces: npt.NDArray[Any]


def _fail(message: str, code: int = 2) -> typer.Exit:
    from llm3d.commands.common import err_console

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def load_input(path: Path, executor: Callable[[], Executor]) -> LoadedInput:
    """Read a mesh file, or run a program through the executor.

    Args:
        path: a mesh file or a ``.py`` program.
        executor: returns the (lazily started) executor; only called for programs.

    Raises:
        typer.Exit: with status 2 when the file is missing, unreadable or of another kind.
    """
    from llm3d.exceptions import MeshError
    from llm3d.meshio import MESH_SUFFIXES, load_mesh

    if not path.is_file():
        raise _fail(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".py":
        try:
            code = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"cannot read {path}: {exc}") from exc
        result = executor().run(code)
        return LoadedInput(path, True, code, result, result.vertices, result.faces)
    if suffix not in MESH_SUFFIXES:
        raise _fail(
            f"{path}: give a bpy_lib program (.py) or a mesh file "
            f"({', '.join(sorted(MESH_SUFFIXES))})"
        )
    try:
        vertices, faces = load_mesh(path)
    except MeshError as exc:
        raise _fail(str(exc)) from exc
    return LoadedInput(path, False, None, None, vertices, faces)


class LazyExecutor:
    """Starts one :class:`~worker.execution.executor.Executor` on first use, closed by the ExitStack."""

    def __init__(self, stack: ExitStack, config: Any) -> None:
        self._stack = stack
        self._config = config
        self._executor: Executor | None = None

    def __call__(self) -> Executor:
        if self._executor is None:
            from worker.execution.executor import Executor

            self._executor = self._stack.enter_context(Executor(self._config))
        return self._executor


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _score(pred: LoadedInput, gt: Any, *, points: int, seed: int, cfg: Any) -> dict[str, Any]:
    from llm3d.schemas import ExecStatus
    from worker.metrics import compute_metrics
    from worker.reward import F_SCORE_KEY, compute_reward, gated_reward, geometry_status
    from worker.types import ExecResult

    # One comparison by hand: every metric, the unit-cube Chamfer too unless it is "never"
    # (the reward service leaves it out of training rewards; see wants_unit_chamfer).
    unit_chamfer = cfg.metrics.unit_chamfer != "never"
    if pred.is_program:
        assert pred.result is not None and pred.code is not None
        breakdown = compute_reward(
            pred.code,
            pred.result,
            gt,
            metrics_config=cfg.metrics,
            points=points,
            seed=seed,
            executor_config=cfg.executor,
            unit_chamfer=unit_chamfer,
        )
        out = breakdown.to_dict()
        out["seconds"] = round(pred.result.seconds, 4)
        return out
    # A mesh: the geometry gates and the metrics, no format score, so no reward.
    result = ExecResult(status=ExecStatus.OK, vertices=pred.vertices, faces=pred.faces)
    status, error = geometry_status(result, cfg.executor)
    metrics: dict[str, float] = {}
    if status is None:
        status = ExecStatus.OK
        metrics = compute_metrics(
            pred.vertices,
            pred.faces,
            gt,
            points=points,
            seed=seed,
            thresholds=cfg.metrics.fscore_thresholds,
            unit_chamfer=unit_chamfer,
        )
    gate, gated = gated_reward(status, metrics.get(F_SCORE_KEY))
    return {
        "status": status.value,
        "reward": None,
        "components": {"gated": gated, "gate": float(gate)},
        "metrics": metrics,
        "error": error,
        "note": "PRED is a mesh: no code, so no format score and no reward",
    }


def score_command(
    pred: Annotated[
        Path,
        typer.Argument(
            metavar="PRED", help="The prediction: a mesh file or a bpy_lib program (.py)."
        ),
    ],
    gt: Annotated[
        Path,
        typer.Argument(
            metavar="GT", help="The ground truth: a mesh file or a bpy_lib program (.py)."
        ),
    ],
    points: Annotated[
        int | None,
        typer.Option("--points", min=100, help="Surface samples (default: config, reward.points)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Sampling seed (default: config seed).")
    ] = None,
    grid: Annotated[
        Path | None,
        typer.Option("--grid", help="Also render both and write the comparison grid (PNG) here."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score PRED against GT: status, reward, components and every metric."""
    from llm3d.commands.common import console, emit_json, load
    from llm3d.exceptions import MeshError
    from llm3d.schemas import ExecStatus
    from worker.metrics import metrics_config_points, prepare_ground_truth

    cfg = load(config)
    n_points = points or metrics_config_points(cfg.metrics, cfg.reward.points)
    sample_seed = cfg.seed if seed is None else seed
    with ExitStack() as stack:
        executor = LazyExecutor(stack, cfg.executor)
        gt_input = load_input(gt, executor)
        if gt_input.result is not None and gt_input.result.status is not ExecStatus.OK:
            status = gt_input.result.status
            raise _fail(
                f"the ground-truth program {gt} did not build a mesh ({status.value}: "
                f"{gt_input.result.error or 'no error message'})",
                3 if status is ExecStatus.INFRA_ERROR else 2,
            )
        try:
            ground_truth = prepare_ground_truth(
                gt_input.vertices,
                gt_input.faces,
                points=n_points,
                seed=sample_seed,
                unit_cube_points=cfg.metrics.unit_cube_points,
            )
        except MeshError as exc:
            raise _fail(f"the ground truth {gt} is unusable: {exc}") from exc
        pred_input = load_input(pred, executor)
    out = _score(pred_input, ground_truth, points=n_points, seed=sample_seed, cfg=cfg)
    out = {"pred": str(pred), "gt": str(gt), "points": n_points, "seed": sample_seed, **out}
    if grid is not None:
        out["grid"] = str(_write_grid(gt_input, pred_input, out, grid, cfg))
    if as_json:
        emit_json(_json_safe(out))
    else:
        _print_table(out, console)
    if out["status"] == ExecStatus.INFRA_ERROR.value:
        raise typer.Exit(3)


def _write_grid(
    gt_input: LoadedInput, pred_input: LoadedInput, out: dict[str, Any], path: Path, cfg: Any
) -> Path:
    import tempfile

    from worker.render import comparison_grid, render_pair

    with tempfile.TemporaryDirectory(prefix="llm3d-grid-") as tmp:
        pred = (pred_input.vertices, pred_input.faces) if out["status"] == "ok" else None
        gt_views, pred_views = render_pair(
            (gt_input.vertices, gt_input.faces), pred, tmp, config=cfg.render
        )
        reward = out.get("reward")
        title = f"{out['pred']} vs {out['gt']}: status {out['status']}, reward " + (
            "-" if reward is None else f"{reward:.4f}"
        )
        return comparison_grid(gt_views, pred_views, out["metrics"], path, title=title)


def _print_table(out: dict[str, Any], console: Any) -> None:
    from worker.grid import format_metric

    table = Table(
        title=f"llm3d score {escape(out['pred'])} vs {escape(out['gt'])}", show_header=False
    )
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column("value")
    colour = "green" if out["status"] == "ok" else "bold red"
    table.add_row("status", f"[{colour}]{out['status']}[/]")
    reward = out.get("reward")
    table.add_row("reward", "-" if reward is None else f"{reward:.4f}")
    if out.get("error"):
        table.add_row("error", escape(str(out["error"])))
    for name, value in out["components"].items():
        table.add_row(f"component {name}", format_metric(float(value)))
    for name, value in out["metrics"].items():
        table.add_row(name, format_metric(float(value)))
    table.add_row("points / seed", f"{out['points']} / {out['seed']}")
    if out.get("note"):
        table.add_row("note", escape(out["note"]))
    if out.get("grid"):
        table.add_row("grid", escape(out["grid"]))
    console.print(table)
