"""The part fitter over a folder of parts (generated or from Infinigen), resumable (no Blender).

:func:`fit_parts` reads a folder in the part generator's layout (``parts.jsonl`` + npz
shards: ``llm3d data parts`` or ``llm3d data infinigen`` output), fits every part with
:func:`datagen.part_fitter.fit_mesh` (verified in Blender when a runner is given) and
appends one row a part to ``fitted.jsonl``: the program, its family and F@0.05. A rerun
skips parts already fitted. This is the path that turns meshes nobody wrote programs for
into training code.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from datagen.part_fitter import Runner, fit_mesh
from datagen.part_generator import iter_parts
from datagen.progress import progress_bar
from llm3d.exceptions import MeshError

__all__ = ["fit_parts"]

logger = logging.getLogger(__name__)


def fit_parts(
    parts_dir: str | Path,
    out_path: str | Path | None = None,
    *,
    runner: Runner | None = None,
    limit: int | None = None,
    show_progress: bool = True,
    **fit_options: Any,
) -> dict[str, Any]:
    """Fit every part of ``parts_dir``; returns counts, median F@0.05 and the share above 0.9.

    Parameters
    ----------
    parts_dir : str or Path
        A folder with ``parts.jsonl`` and ``shards/``.
    out_path : str or Path, optional
        Where rows are appended (default ``parts_dir/fitted.jsonl``).
    runner : Executor-like, optional
        Verifies each winning program in Blender.
    limit : int, optional
        Fit at most this many parts (in order), counting those already fitted.
    **fit_options
        Passed to :func:`~datagen.part_fitter.fit_mesh`.
    """
    folder = Path(parts_dir)
    out = Path(out_path) if out_path else folder / "fitted.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if out.is_file():
        for line in out.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["id"]] = row
    total = sum(1 for line in (folder / "parts.jsonl").read_text().splitlines() if line.strip())
    if limit is not None:
        total = min(total, limit)
    started = time.perf_counter()
    fitted_now = 0
    with (
        out.open("a", encoding="utf-8") as fh,
        progress_bar("fit", total=total, completed=min(len(done), total),
                     enabled=show_progress) as bar,
    ):  # fmt: skip
        for position, (row, vertices, faces) in enumerate(iter_parts(folder)):
            if position >= total:
                break
            if row["id"] in done:
                continue
            result: dict[str, Any] = {"id": row["id"], "label": row.get("label")}
            result["source"] = row.get("family") or row.get("factory")
            try:
                fit = fit_mesh(vertices, faces, runner=runner, **fit_options)
                result.update(
                    family=fit.family,
                    f_score=round(fit.f_score, 5),
                    verified=fit.verified,
                    program=fit.program,
                    seconds=round(fit.seconds, 3),
                    transform=fit.transform.as_dict(),
                )
            except (MeshError, RuntimeError, ValueError) as exc:
                result.update(family=None, f_score=0.0, error=f"{type(exc).__name__}: {exc}")
                logger.warning("%s: %s", row["id"], result["error"])
            fh.write(json.dumps(result) + "\n")
            fh.flush()
            done[row["id"]] = result
            fitted_now += 1
            bar.advance(1)
    scores = [float(r["f_score"]) for r in done.values()]
    return {
        "out": str(out),
        "parts": len(done),
        "fitted_this_run": fitted_now,
        "median_f_score_0.05": round(statistics.median(scores), 4) if scores else None,
        "share_above_0.9": round(sum(s > 0.9 for s in scores) / len(scores), 4) if scores else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
