"""Score the hard cases with what is importable here: run inside an image's environment.

``python tests/docker/image_check.py [--render] [--programs|--meshes]`` prints one JSON object
``{"results": {case: RewardResult dict}, "render": {...}, "python": ...}`` and exits 0; the
caller (tests/docker/test_image_env.py) decides what is right. Nothing here imports pytest or
the test suite: the fresh venv of an image has only the image's packages.

The cases are the ones that exercise the scorer beyond an exact copy: a wrong object, one far
off (every sample point is far: the direction tree, numba), a small one inside the ground
truth (queries near its centre of curvature), plus an exact copy and a render of a mesh.
``--programs`` runs them as ``bpy_lib`` programs in the sandbox (the worker and Modal
images); ``--meshes`` gives the meshes directly (images without Blender).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

UNIT_BOX = "from bpy_lib import *\n# part_1: cube\nbox(size=[1.0, 1.0, 1.0])\nexport_scene()\n"
BIG_SPHERE = "from bpy_lib import *\n# part_1: ball\nsphere(radius=1.0)\nexport_scene()\n"
FAR_BOX = (
    "from bpy_lib import *\n# part_1: cube, far away\n"
    "box(size=[0.6, 0.6, 0.6], location=[2.0, 2.0, 0.0])\nexport_scene()\n"
)
SMALL_INSIDE = "from bpy_lib import *\n# part_1: pebble\nsphere(radius=0.05)\nexport_scene()\n"

#: case -> (ground truth program, prediction program); the wrong object uses demo programs
CASES: dict[str, tuple[str, str]] = {
    "exact": (UNIT_BOX, UNIT_BOX),
    "far_off": (UNIT_BOX, FAR_BOX),
    "inside": (BIG_SPHERE, SMALL_INSIDE),
}


def cases() -> dict[str, tuple[str, str]]:
    """Every case as (ground truth program, prediction program)."""
    from worker.demo_programs import OBJECTS

    return {**CASES, "wrong_object": (OBJECTS["table"], OBJECTS["snowman"])}


def score_programs(points: int) -> dict[str, Any]:
    """Each case through :class:`worker.scoring.LocalScorer` (the Celery/Modal body)."""
    from llm3d.config import load_config
    from llm3d.schemas import ReferencePayload, reference_key
    from worker.scoring import LocalScorer, ScoreJob, ScoreSettings

    config = load_config()
    settings = ScoreSettings.from_config(config, points=points, timeout_s=60)
    scorer = LocalScorer(config)
    try:
        out = {}
        for name, (gt, pred) in cases().items():
            ref = ReferencePayload(code=gt)
            job = ScoreJob(name, pred, reference_key(ref), settings, ref)
            out[name] = scorer.score(job.to_dict())
        return out
    finally:
        scorer.close()


def _box(centre: tuple[float, float, float], size: float) -> tuple[Any, Any]:
    import numpy as np

    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    faces = [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ]  # fmt: skip
    vertices = (corners - 0.5) * size + np.asarray(centre)
    return vertices.astype(np.float32), np.asarray(faces, dtype=np.int32)


def score_meshes(points: int) -> dict[str, Any]:
    """The mesh cases through :func:`worker.scoring.score_job` with mesh references (no Blender)."""
    import numpy as np

    from llm3d.config import load_config
    from llm3d.schemas import ExecStatus, ReferencePayload, reference_key
    from worker.metrics import GroundTruthCache
    from worker.scoring import ScoreJob, ScoreSettings, score_job
    from worker.types import ExecResult

    config = load_config()
    settings = ScoreSettings.from_config(config, points=points, timeout_s=60)
    gt_v, gt_f = _box((0, 0, 0), 1.0)
    preds = {
        "exact": (gt_v, gt_f),
        "far_off": _box((9, 4, 0), 1.0),
        "inside": _box((0, 0, 0), 0.05),
        "wrong_object": _box((0.3, 0, 0), 0.4),
    }
    ref = ReferencePayload(vertices=gt_v.tolist(), faces=gt_f.tolist())
    out = {}
    for name, (v, f) in preds.items():
        mesh = ExecResult(status=ExecStatus.OK, vertices=v, faces=f)

        def runner(code: str, timeout_s: float, mesh: ExecResult = mesh) -> ExecResult:
            return mesh

        job = ScoreJob(name, UNIT_BOX, reference_key(ref), settings, ref)
        result = score_job(job, runner=runner, gt_cache=GroundTruthCache(4))
        out[name] = result.model_dump(mode="json")
    del np
    return out


def render() -> dict[str, int]:
    """The configured views of a box: file name -> PNG size in bytes."""
    from llm3d.config import load_config
    from worker.render import render_views

    v, f = _box((0, 0, 0), 1.0)
    with tempfile.TemporaryDirectory(prefix="llm3d-image-check-") as tmp:
        paths = render_views(v, f, Path(tmp), config=load_config().render)
        return {p.name: p.stat().st_size for p in paths}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", action="store_true", help="run the cases as programs")
    parser.add_argument("--render", action="store_true", help="also render a mesh")
    parser.add_argument("--points", type=int, default=10_000)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"python": sys.executable}
    report["results"] = score_programs(args.points) if args.programs else score_meshes(args.points)
    if args.render:
        report["render"] = render()
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
