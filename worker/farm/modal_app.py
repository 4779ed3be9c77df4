"""The reward farm's Modal functions; deploy them with the API: ``modal deploy -m api.modal_web``.

Defines the Blender 4.2 image (Debian slim, Python 3.11, the system libraries the ``bpy``
wheel loads, and pyproject.toml's dependencies with the :data:`IMAGE_EXTRAS`, never a copied
list), the app and three functions on it, sized by ``config.modal``:

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

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import modal
import numpy as np

from llm3d.config import ENV_ALIASES, REPO_ROOT, Config, load_config
from worker.farm.celery_app import task_time_limits
from worker.scoring import LocalScorer

__all__ = [
    "APP_NAME",
    "BPY_APT_PACKAGES",
    "FUNCTION_OPTIONS",
    "IMAGE_EXTRAS",
    "MAX_INPUTS",
    "app",
    "deploy_environment",
    "execute_body",
    "function_options",
    "image",
    "max_inputs",
    "render_body",
    "score_body",
]

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
#: The extras of pyproject.toml the image installs (with the core dependencies): the same
#: as docker/worker.Dockerfile; tests/docker/test_image_env.py scores the hard cases in a
#: venv made from exactly these, so a dependency missing from pyproject.toml fails there.
IMAGE_EXTRAS = ("blender", "metrics", "farm")
PYPROJECT = REPO_ROOT / "pyproject.toml"


def deploy_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``LLM3D_`` settings of the deploying shell, which the containers must share.

    A container loads its configuration again (timeouts, points, limits); it sees the same
    values only if they travel in the image. The API token never does: it is the Secret's.
    """
    keep = {
        k: v
        for k, v in environ.items()
        if k.upper().startswith("LLM3D_") and k.upper() not in ENV_ALIASES
    }
    return {**keep, "LLM3D_API__BACKEND": "modal", "OMP_NUM_THREADS": "1"}


image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install(*BPY_APT_PACKAGES)
    .pip_install_from_pyproject(str(PYPROJECT), optional_dependencies=list(IMAGE_EXTRAS))
    .env(deploy_environment(os.environ))
    .add_local_dir(REPO_ROOT / "configs", remote_path="/root/configs")
    .add_local_python_source("llm3d", "bpy_lib", "worker", "api")
)

_config: Config = load_config()


def function_options(config: Config) -> dict[str, dict[str, Any]]:
    """The resources of each function, from ``config.modal`` (and the executor's timeouts).

    A ``score`` call may run two programs (the reference once per container and ground
    truth, then the candidate): its timeout is the Celery task's hard limit plus a margin.
    """
    m = config.modal
    _, hard = task_time_limits(config)
    scoring = {
        "image": image,
        "cpu": m.score_cpu,
        "memory": m.score_memory_mb,
        "timeout": int(hard + 10),
        "max_containers": m.score_max_containers,
        "min_containers": m.score_min_containers,
    }
    return {
        "score": dict(scoring),
        "execute": {**scoring, "min_containers": 0},
        "render": {
            "image": image,
            "cpu": m.score_cpu,
            "memory": m.score_memory_mb,
            "timeout": m.render_timeout_s,
            "max_containers": m.render_max_containers,
        },
        "web": {
            "image": image,
            "cpu": 1.0,
            "memory": 1024,
            "timeout": m.web_timeout_s,
            "max_containers": m.web_max_containers,
            "scaledown_window": m.web_scaledown_s,
            # LLM3D_API_TOKEN for the Bearer check (scripts/deploy_reward_api.sh makes it)
            "secrets": [modal.Secret.from_name(m.secret_name)],
        },
    }


def max_inputs(config: Config) -> dict[str, int]:
    """Inputs one container of each function takes at once."""
    m = config.modal
    return {"score": m.score_inputs, "execute": m.score_inputs, "render": 1, "web": m.web_inputs}


# One place for the functions' resources, so that tests can check what is deployed.
FUNCTION_OPTIONS: dict[str, dict[str, Any]] = function_options(_config)
MAX_INPUTS: dict[str, int] = max_inputs(_config)
APP_NAME = _config.modal.app_name

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
