"""The reward farm's Modal functions; deploy them with the API: ``modal deploy -m api.modal_web``.

Defines the Blender 4.2 image (Debian slim, Python 3.11, the system libraries and the
``bpy`` wheel, our packages), the app and three functions on it:

- ``score(payload)``: one :class:`~worker.scoring.ScoreJob` → its result (what the ``modal``
  backend maps over a batch);
- ``execute(code, timeout_s)``: one program through the sandbox → its execution result;
- ``render(vertices, faces)``: the multi-view PNGs of a mesh.

The fourth, ``web`` (the reward API itself), lives next to the API it serves, in
:mod:`api.modal_web`, which registers it on this same :data:`app`: the worker never imports
the API.

Their bodies are the plain functions :func:`score_body`, :func:`execute_body` and
:func:`render_body`, which the tests call directly (no Modal account is needed for that).
Each container keeps one warm fork server (:class:`~worker.scoring.LocalScorer`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import modal
import numpy as np

from llm3d.config import REPO_ROOT, Config, load_config
from worker.scoring import LocalScorer

__all__ = [
    "APP_NAME",
    "BPY_APT_PACKAGES",
    "FUNCTION_OPTIONS",
    "app",
    "execute_body",
    "image",
    "render_body",
    "score_body",
]

APP_NAME = "llm3d-reward"

# The shared libraries the bpy 4.2 wheel loads on Debian bookworm; the same list as
# docker/worker.Dockerfile and .github/workflows/ci.yml (a test keeps the three equal).
BPY_APT_PACKAGES = (
    "libx11-6",
    "libxrender1",
    "libxxf86vm1",
    "libxfixes3",
    "libxi6",
    "libxkbcommon0",
    "libsm6",
    "libgl1",
    "libegl1",
    "libgomp1",
)
PYTHON_PACKAGES = (
    "bpy==4.2.0",
    "numpy>=1.26",
    "pydantic>=2.7,<3",
    "pydantic-settings>=2.3,<3",
    "pyyaml>=6",
    "typer>=0.12",
    "rich>=13",
    "trimesh>=4.4",
    "pykdtree>=1.3.12",
    "scipy>=1.11",
    "pillow>=10",
    "fastapi>=0.115",
    "httpx>=0.27",
    "redis>=5",
    "prometheus-client>=0.20",
)

image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install(*BPY_APT_PACKAGES)
    .uv_pip_install(*PYTHON_PACKAGES)
    .env({"LLM3D_API__BACKEND": "modal", "OMP_NUM_THREADS": "1"})
    .add_local_dir(REPO_ROOT / "configs", remote_path="/root/configs")
    .add_local_python_source("llm3d", "bpy_lib", "worker", "api")
)

_config: Config = load_config()
_task_timeout_s = int(2 * _config.executor.timeout_s + _config.farm.task_margin_s + 10)

# One place for the functions' resources, so that tests can check what is deployed.
FUNCTION_OPTIONS: dict[str, dict[str, Any]] = {
    # one warm fork server per container, two programs at a time on its two cores
    "score": {
        "image": image,
        "cpu": 2.0,
        "memory": 4096,
        "timeout": _task_timeout_s,
        "max_containers": 64,
    },
    "execute": {
        "image": image,
        "cpu": 2.0,
        "memory": 4096,
        "timeout": _task_timeout_s,
        "max_containers": 64,
    },
    "render": {"image": image, "cpu": 2.0, "memory": 4096, "timeout": 300, "max_containers": 16},
    "web": {"image": image, "cpu": 1.0, "memory": 1024, "timeout": 3600, "max_containers": 4},
}
MAX_INPUTS: dict[str, int] = {"score": 2, "execute": 2, "render": 1, "web": 100}

app = modal.App(APP_NAME)

_scorer: LocalScorer | None = None


def _local_scorer() -> LocalScorer:
    global _scorer
    if _scorer is None:
        _scorer = LocalScorer(_config)
    return _scorer


def score_body(payload: dict[str, Any]) -> dict[str, Any]:
    """Score one job dict (:meth:`ScoreJob.to_dict`) → a :class:`RewardResult` dict."""
    return _local_scorer().score(payload)


def execute_body(code: str, timeout_s: float | None = None) -> dict[str, Any]:
    """Run one program; the :class:`~worker.types.ExecResult` as plain lists."""
    scorer = _local_scorer()
    result = scorer.run_program(code, timeout_s or scorer.config.executor.timeout_s)
    return {
        "status": result.status.value,
        "vertices": result.vertices.tolist(),
        "faces": result.faces.tolist(),
        "stdout": result.stdout,
        "stderr": result.stderr,
        "seconds": result.seconds,
        "error": result.error,
    }


def render_body(vertices: list[list[float]], faces: list[list[int]]) -> dict[str, bytes]:
    """The configured views of a mesh as PNG bytes, by file name."""
    from worker.render import render_views

    with tempfile.TemporaryDirectory(prefix="llm3d-render-") as tmp:
        paths = render_views(
            np.asarray(vertices, dtype=np.float32),
            np.asarray(faces, dtype=np.int32),
            Path(tmp),
            config=_config.render,
        )
        return {p.name: p.read_bytes() for p in paths}


@app.function(**FUNCTION_OPTIONS["score"])
@modal.concurrent(max_inputs=MAX_INPUTS["score"])
def score(payload: dict[str, Any]) -> dict[str, Any]:
    """Modal function: :func:`score_body`."""
    return score_body(payload)


@app.function(**FUNCTION_OPTIONS["execute"])
@modal.concurrent(max_inputs=MAX_INPUTS["execute"])
def execute(code: str, timeout_s: float | None = None) -> dict[str, Any]:
    """Modal function: :func:`execute_body`."""
    return execute_body(code, timeout_s)


@app.function(**FUNCTION_OPTIONS["render"])
@modal.concurrent(max_inputs=MAX_INPUTS["render"])
def render(vertices: list[list[float]], faces: list[list[int]]) -> dict[str, bytes]:
    """Modal function: :func:`render_body`."""
    return render_body(vertices, faces)
