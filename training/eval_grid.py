"""The comparison grid of an evaluation (imports Blender through :mod:`worker.render`).

For each selected case (best, median, worst) the ground truth (the sample's mesh file, or
its reference program run in the sandbox) and the prediction (the completion's program,
run in the sandbox) are rendered with the configured camera rig, composed by
:func:`worker.grid.comparison_grid` and stacked into one ``grid.png``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from environments.blender_3d.dataset import Sample
from llm3d.config import ExecutorConfig, RenderConfig
from llm3d.exceptions import MeshError
from worker.execution.executor import Executor
from worker.grid import comparison_grid
from worker.render import render_pair

__all__ = ["render_cases"]

logger = logging.getLogger(__name__)

SHOWN_METRICS = ("f_score_0.05", "chamfer_l2", "hausdorff_90", "normal_consistency")


def _ground_truth(sample: Sample, executor: Executor) -> tuple[Any, Any] | None:
    if sample.mesh is not None:
        from llm3d.meshio import load_mesh

        return load_mesh(sample.mesh)
    if sample.code:
        result = executor.run(sample.code)
        if result.status == "ok":
            return result.vertices, result.faces
    return None


def render_cases(
    cases: Mapping[str, tuple[Sample, Mapping[str, Any]]],
    out_dir: Path,
    *,
    render: RenderConfig | None = None,
    executor_config: ExecutorConfig | None = None,
) -> Path | None:
    """Render ``{name: (sample, record)}`` into ``out_dir/grid.png`` (None if nothing rendered)."""
    from PIL import Image

    render = render or RenderConfig(resolution=160)
    panels: list[Path] = []
    with (
        tempfile.TemporaryDirectory(prefix="llm3d-eval-grid-") as tmp,
        Executor(executor_config or ExecutorConfig()) as executor,
    ):
        for name, (sample, record) in cases.items():
            gt = _ground_truth(sample, executor)
            if gt is None:
                logger.warning(
                    "grid: no ground truth mesh for %s; case %s skipped", sample.id, name
                )
                continue
            case_dir = Path(tmp) / name
            try:
                pred: tuple[Any, Any] | None = None
                if record["status"] == "ok":
                    result = executor.run(str(record["code"]))
                    if result.status == "ok" and len(np.asarray(result.faces)):
                        pred = (result.vertices, result.faces)
                gt_views, pred_views = render_pair(gt, pred, case_dir, config=render)
            except MeshError as exc:
                logger.warning("grid: case %s (%s) not rendered: %s", name, sample.id, exc)
                continue
            reward = record.get("reward")
            title = (
                f"{name}: {sample.id} ({sample.category}), status {record['status']}, reward "
                + ("-" if reward is None else f"{float(reward):.3f}")
            )
            metrics = {m: record["metrics"].get(m) for m in SHOWN_METRICS}
            panels.append(
                comparison_grid(gt_views, pred_views, metrics, case_dir / "panel.png", title=title)
            )
        if not panels:
            return None
        images = [Image.open(p).convert("RGB") for p in panels]
        width = max(im.width for im in images)
        canvas = Image.new("RGB", (width, sum(im.height for im in images)), (255, 255, 255))
        y = 0
        for image in images:
            canvas.paste(image, (0, y))
            y += image.height
        out = out_dir / "grid.png"
        canvas.save(out, format="PNG")
    return out
