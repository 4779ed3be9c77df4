"""The reward farm's Modal functions; deploy them with the API: ``modal deploy -m api.modal_web``.

Defines the Blender 4.2 image (Debian slim, Python 3.11, the system libraries the ``bpy``
wheel loads, and pyproject.toml's dependencies with the :data:`IMAGE_EXTRAS`, never a copied
list), the app and four functions on it, sized by ``config.modal``:

- ``score(payload)``: one :class:`~worker.scoring.ScoreJob` → its result (what the ``modal``
  backend maps over a batch);
- ``select(payload)``: one :class:`~worker.selection.SelectJob` (a candidate of
  ``POST /select/batch`` and its group's views) → its outcome (what the ``modal`` backend maps
  over the candidates): run, rendered and matched in one container, so the mesh never leaves
  it, the fork server and the render server stay warm, and a group's views are analysed once
  per container (:func:`worker.selection.prepared_views`). Calling ``execute`` then ``render``
  and matching in the caller would cost two calls a candidate, send the mesh out and back in
  again as lists, and put the match on the web container's one core;
- ``execute(code, timeout_s)``: one program through the sandbox → its execution result;
- ``render(vertices, faces)``: the multi-view PNGs of a mesh.

The fifth, ``web`` (the reward API itself), lives next to the API it serves, in
:mod:`api.modal_web`, which registers it on this same :data:`app`: the worker never imports
the API.

Their bodies are the plain functions :func:`score_body`, :func:`select_body`,
:func:`execute_body` and :func:`render_body`, which the tests call directly (no Modal account
is needed for that). Each container keeps one warm fork server
(:class:`~worker.scoring.LocalScorer`); a select container also one render server an input
(:class:`~worker.selection.LocalSelector`).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import modal
import numpy as np

from llm3d.config import ENV_ALIASES, REPO_ROOT, Config, load_config
from worker.farm.celery_app import task_time_limits
from worker.scoring import LocalScorer
from worker.selection import RENDER_BUDGET_S, LocalSelector, SelectJob

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
    "select_body",
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
    truth, then the candidate): its timeout is the Celery task's hard limit plus a margin. A
    ``select`` call runs one program and renders it (starting the container's render server
    on its first call): the same limit plus the render budget of a Celery select task.
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
        "select": {
            **scoring,
            "timeout": int(hard + RENDER_BUDGET_S + 10),
            "max_containers": m.select_max_containers,
            "min_containers": m.select_min_containers,
        },
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
    return {
        "score": m.score_inputs,
        "select": m.score_inputs,
        "execute": m.score_inputs,
        "render": 1,
        "web": m.web_inputs,
    }


# One place for the functions' resources, so that tests can check what is deployed.
FUNCTION_OPTIONS: dict[str, dict[str, Any]] = function_options(_config)
MAX_INPUTS: dict[str, int] = max_inputs(_config)
APP_NAME = _config.modal.app_name

app = modal.App(APP_NAME)

_scorer: LocalScorer | None = None
_selector: LocalSelector | None = None
# concurrent inputs of one container share one fork server and one set of render servers
_state_lock = threading.Lock()


def _local_scorer() -> LocalScorer:
    global _scorer
    with _state_lock:
        if _scorer is None:
            _scorer = LocalScorer(_config)
        return _scorer


def _local_selector() -> LocalSelector:
    global _selector
    scorer = _local_scorer()
    with _state_lock:
        if _selector is None:
            _selector = LocalSelector(
                scorer.run_program, scorer.config.executor, size=MAX_INPUTS["select"]
            )
        return _selector


def score_body(payload: dict[str, Any]) -> dict[str, Any]:
    """Score one job dict (:meth:`ScoreJob.to_dict`) → a :class:`RewardResult` dict."""
    return _local_scorer().score(payload)


def select_body(payload: dict[str, Any]) -> dict[str, Any]:
    """Run, render and match one candidate (:meth:`SelectJob.to_dict`) → its outcome as a
    :class:`RewardResult` dict (:meth:`~worker.selection.CandidateOutcome.to_result`)."""
    return _local_selector().select(SelectJob.from_dict(payload)).model_dump(mode="json")


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


@app.function(**FUNCTION_OPTIONS["select"])
@modal.concurrent(max_inputs=MAX_INPUTS["select"])
def select(payload: dict[str, Any]) -> dict[str, Any]:
    """Modal function: :func:`select_body`."""
    return select_body(payload)


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
