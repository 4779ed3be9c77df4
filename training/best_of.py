"""Best-of-N at test time: keep one of a task's N candidate programs (needs Blender for
``render``: it renders candidates through :mod:`worker.render`).

Three ways to choose, reported side by side by the evaluation runner
(``llm3d eval --best-of N --select first,render,oracle``):

- ``first``: the first candidate (what k = 1 gets);
- ``render``: the candidate whose renders look most like the views the model was given
  (:func:`worker.render_match.match_views`). No ground truth is used, so the same choice
  serves an artist, a trainer's filter and an honest evaluation. Each candidate is run in the
  local sandbox (:class:`~worker.execution.executor.Executor`) and rendered from the
  dataset's cameras (``render.views`` of the config, which rendered the split);
- ``oracle``: the candidate with the best F@0.05 against the ground truth (the upper bound).

Candidates that do not execute, or whose views cannot be matched, are never chosen by
``render`` over one that can; with none usable, ``render`` keeps the first.
"""

from __future__ import annotations

import hashlib
import logging
import math
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from environments.blender_3d.dataset import Sample
from llm3d.config import ExecutorConfig, RenderConfig
from training.eval_report import record_f_score

__all__ = ["SELECTIONS", "STEPS", "choose", "render_match_scores", "selection_table"]

logger = logging.getLogger(__name__)

SELECTIONS = ("first", "render", "oracle")
#: The timed steps of a candidate (:class:`worker.selection.CandidateOutcome`).
STEPS = ("execute_s", "render_s", "match_s")

Ident = tuple[str, int]
Progress = Callable[[str, int, int], None]


def _views_digest(sample: Sample, render: RenderConfig) -> bytes:
    """What a candidate's match depends on besides its code: the rig and the input views."""
    digest = hashlib.sha256(render.model_dump_json().encode())
    for image in sample.images:
        digest.update(str(image).encode("utf-8", "surrogatepass") + b"\0")
        digest.update(hashlib.sha256(Path(image).read_bytes()).digest())
    return digest.digest()


def _match_key(code: str, views: bytes) -> str:
    digest = hashlib.sha256(views)
    digest.update(code.encode("utf-8", "surrogatepass"))
    return "match:" + digest.hexdigest()


def render_match_scores(
    samples: Sequence[Sample],
    codes: Mapping[Ident, str],
    *,
    render: RenderConfig,
    executor_config: ExecutorConfig | None = None,
    cache: Any = None,
    progress: Progress | None = None,
) -> dict[Ident, dict[str, Any]]:
    """``(task_id, index) → {"score", "views", "error", "seconds"}`` for every candidate.

    ``score`` is the render match in [0, 1], ``None`` when the candidate did not execute or
    could not be matched (``error`` says why); ``views`` each view's ``iou``, ``edges`` and
    ``score``; ``seconds`` is what the candidate cost (``execute_s`` + ``render_s`` +
    ``match_s``, also given). The steps are :func:`worker.selection.match_candidate`'s, the
    reward service's ``POST /select/batch`` runs the same. ``cache`` (a
    :class:`training.eval_runner.JsonlCache`) makes a rerun reuse earlier matches.
    """
    from worker.execution.executor import Executor
    from worker.render import render_views
    from worker.selection import match_candidate

    by_id = {s.id: s for s in samples}
    wanted = {task for task, _ in codes}
    views_of = {s.id: _views_digest(s, render) for s in samples if s.id in wanted}
    keys = {ident: _match_key(code, views_of[ident[0]]) for ident, code in codes.items()}
    out: dict[Ident, dict[str, Any]] = {}
    todo = []
    for ident in codes:
        row = cache.get(keys[ident]) if cache is not None else None
        if row is not None:
            out[ident] = dict(row["match"])
        else:
            todo.append(ident)
    views = list(render.views)

    def draw(vertices: Any, faces: Any, folder: Path) -> list[Path]:
        return render_views(vertices, faces, folder, config=render)

    with (
        Executor(executor_config or ExecutorConfig()) as executor,
        tempfile.TemporaryDirectory(prefix="llm3d-best-of-") as tmp,
    ):
        for done, ident in enumerate(todo, 1):
            sample = by_id[ident[0]]
            entry: dict[str, Any]
            if len(sample.images) != len(views):
                entry = {
                    "score": None,
                    "error": f"task {sample.id} has {len(sample.images)} views, render.views "
                    f"has {len(views)}: render with the configuration that made the split",
                    "seconds": 0.0,
                }
            else:
                start = time.perf_counter()
                result = executor.run(codes[ident])
                outcome = match_candidate(
                    result,
                    list(sample.images),
                    draw,
                    Path(tmp) / f"{done}",
                    executor_config=executor_config,
                    execute_s=time.perf_counter() - start,
                )
                entry = outcome.as_dict()
            out[ident] = entry
            if cache is not None:
                row = {"key": keys[ident], "task_id": ident[0], "index": ident[1], "match": entry}
                cache.add([row])
            if progress is not None:
                progress("render match", done, len(todo))
    return out


def _match(matches: Mapping[Ident, Mapping[str, Any]], record: Mapping[str, Any]) -> float:
    """A candidate's render match; -1 when it has none (never preferred to one that has)."""
    score = matches.get((str(record["task_id"]), int(record["index"])), {}).get("score")
    return float(score) if score is not None else -1.0


def choose(
    records: Sequence[Mapping[str, Any]],
    by: str,
    matches: Mapping[Ident, Mapping[str, Any]] | None = None,
) -> dict[str, Mapping[str, Any]]:
    """The record each task keeps under the selection ``by`` (one of :data:`SELECTIONS`).

    Raises:
        ValueError: for an unknown selection, or ``render`` without match scores.
    """
    if by not in SELECTIONS:
        raise ValueError(f"unknown selection {by!r}; use one of {', '.join(SELECTIONS)}")
    if by == "render" and matches is None:
        raise ValueError("the render selection needs the candidates' match scores")
    tasks: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        tasks[str(record["task_id"])].append(record)
    chosen: dict[str, Mapping[str, Any]] = {}
    for task, candidates in tasks.items():
        ordered = sorted(candidates, key=lambda r: int(r["index"]))
        if by == "first":
            chosen[task] = ordered[0]
        elif by == "oracle":
            chosen[task] = max(ordered, key=lambda r: (record_f_score(r), -int(r["index"])))
        else:
            assert matches is not None

            chosen[task] = max(ordered, key=lambda r: (_match(matches, r), -int(r["index"])))
    return chosen


def selection_table(
    records: Sequence[Mapping[str, Any]],
    selections: Sequence[str],
    *,
    matches: Mapping[Ident, Mapping[str, Any]] | None = None,
    pass_threshold: float = 0.9,
) -> dict[str, Any]:
    """Each selection's kept candidates, summarised: tasks, mean F@0.05, execution rate,
    pass rate, median unit-cube Chamfer (×1000), and the seconds a candidate cost to match."""
    table: dict[str, Any] = {}
    for by in selections:
        kept = list(choose(records, by, matches).values())
        chamfers = [
            float(c)
            for r in kept
            if isinstance(c := (r.get("metrics") or {}).get("chamfer_unit_x1000"), int | float)
            and math.isfinite(c)
        ]
        table[by] = {
            "tasks": len(kept),
            "f_score_0.05": round(statistics.fmean(record_f_score(r) for r in kept), 4)
            if kept
            else 0.0,
            "execution_rate": round(
                sum(r["status"] == "ok" for r in kept) / len(kept) if kept else 0.0, 4
            ),
            "pass_rate": round(
                sum(record_f_score(r) >= pass_threshold for r in kept) / len(kept) if kept else 0.0,
                4,
            ),
            "chamfer_unit_x1000_median": round(statistics.median(chamfers), 4)
            if chamfers
            else None,
            "picked_index_mean": round(statistics.fmean(int(r["index"]) for r in kept), 3)
            if kept
            else 0.0,
        }
    if matches:
        seconds = [float(m["seconds"]) for m in matches.values() if "seconds" in m]
        table["seconds_per_candidate"] = round(statistics.fmean(seconds), 4) if seconds else None
        # the split (matches from before it was recorded have none): where the time goes
        for step in STEPS:
            spent = [float(m[step]) for m in matches.values() if step in m]
            table[f"{step}_per_candidate"] = round(statistics.fmean(spent), 4) if spent else None
        table["matched_candidates"] = sum(m.get("score") is not None for m in matches.values())
    return table


def markdown_table(table: Mapping[str, Any]) -> str:
    """The selection table as Markdown (for ``report.md``)."""
    rows = [
        "| selection | tasks | F@0.05 | execution rate | pass rate | unit Chamfer ×1000 (median) |",
        "|---|---|---|---|---|---|",
    ]
    for by in SELECTIONS:
        if by in table:
            r = table[by]
            chamfer = r["chamfer_unit_x1000_median"]
            rows.append(
                f"| {by} | {r['tasks']} | {r['f_score_0.05']:.4f} | {r['execution_rate']:.2%} "
                f"| {r['pass_rate']:.2%} | {'–' if chamfer is None else f'{chamfer:.4f}'} |"
            )
    if table.get("seconds_per_candidate") is not None:
        rows.append("")
        rows.append(
            f"Render match: {table['matched_candidates']} candidates matched, "
            f"{table['seconds_per_candidate']:.3f} s a candidate (execute + render + match"
            + (
                f": {table['execute_s_per_candidate']:.3f} + {table['render_s_per_candidate']:.3f}"
                f" + {table['match_s_per_candidate']:.3f}"
                if all(table.get(f"{step}_per_candidate") is not None for step in STEPS)
                else ""
            )
            + ")."
        )
    return "\n".join(rows) + "\n"
