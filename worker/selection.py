"""Best-of-N by render match, the worker's side: execute a candidate, render it, match it.

The same steps serve the evaluation runner (``llm3d eval --best-of N``, through
:func:`match_candidate`) and the reward service (``POST /select/batch``, through
:func:`select_job`, on the ``inline`` backend and on Celery workers alike):

1. the candidate runs in the sandbox (a ``runner(code, timeout_s) -> ExecResult``, as for
   scoring) and passes the geometry gates of :func:`worker.reward.geometry_status`;
2. its mesh is rendered from the cameras of ``render.views`` by a Blender process that only
   renders (:class:`Renderer`, :mod:`worker.blender_renderer`): never in the caller, which
   may be the API, and never in the sandbox, whose output is only a mesh;
3. the renders are compared with the input views (:func:`worker.render_match.match_views`).

No ground truth takes part. Each step's seconds are kept (``execute_s``, ``render_s``,
``match_s``). A candidate that does not execute keeps its :class:`~llm3d.schemas.ExecStatus`
and gets no score; a failure of the renderer is ``infra_error``, never the program's fault.

Between the farm and the service a candidate's outcome travels as a
:class:`~llm3d.schemas.RewardResult` (:meth:`CandidateOutcome.to_result`), so that the
backends gather, retry and cancel it exactly like a score: ``reward`` is always ``None``,
``metrics`` holds ``match`` and each view's ``view{i}_iou`` / ``view{i}_edges`` /
``view{i}_score``, ``components`` the seconds of each step.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from llm3d.config import REPO_ROOT, ExecutorConfig, RenderConfig
from llm3d.exceptions import InfraError
from llm3d.schemas import ExecStatus, RewardResult
from worker.execution.protocol import encode_arrays, recv_frame, send_frame
from worker.render_match import (
    MatchUnavailableError,
    PreparedView,
    ViewMatch,
    decode_png,
    match_views,
    prepare_view,
)
from worker.reward import geometry_status
from worker.scoring import Runner, ScoreJob, infra_result
from worker.types import ExecResult

__all__ = [
    "RENDER_BUDGET_S",
    "RENDER_TIMEOUT_S",
    "CandidateOutcome",
    "FarmJob",
    "LocalSelector",
    "RenderError",
    "RenderFn",
    "Renderer",
    "RendererPool",
    "SelectJob",
    "SelectSettings",
    "match_candidate",
    "prepared_views",
    "select_cache_key",
    "select_job",
    "views_digest",
]

logger = logging.getLogger(__name__)

#: The longest one mesh's views may take to render before the renderer counts as hung.
RENDER_TIMEOUT_S = 120.0
#: How long the render server may take to import Blender and say hello.
STARTUP_TIMEOUT_S = 120.0
SERVER_MODULE = "worker.blender_renderer"
#: What a candidate's task may take beyond its program's limit: starting a render server
#: (importing Blender) and rendering its views.
RENDER_BUDGET_S = 60.0
#: Groups whose analysed views a process keeps (about 1.3 MB a group of four 256² views).
PREPARED_GROUPS = 16

RenderFn = Callable[[npt.NDArray[np.float32], npt.NDArray[np.int32], Path], list[Path]]
"""Renders a mesh's views into a folder: ``render(vertices, faces, out_dir) -> paths``."""

View = str | Path | npt.NDArray[np.float32] | PreparedView


class RenderError(InfraError):
    """The renderer failed or went away (never the program's fault)."""


@dataclass(frozen=True)
class CandidateOutcome:
    """What became of one candidate: its status, its match (``None`` when it has none) and
    the seconds of each step."""

    status: ExecStatus
    score: float | None = None
    views: tuple[ViewMatch, ...] = ()
    error: str | None = None
    execute_s: float = 0.0
    render_s: float = 0.0
    match_s: float = 0.0

    @property
    def seconds(self) -> float:
        return self.execute_s + self.render_s + self.match_s

    def as_dict(self) -> dict[str, Any]:
        """The evaluation runner's record: ``score``, ``views``, ``error`` and the seconds."""
        return {
            "status": self.status.value,
            "score": None if self.score is None else round(self.score, 6),
            "views": [
                {"iou": round(v.iou, 6), "edges": round(v.edges, 6), "score": round(v.score, 6)}
                for v in self.views
            ],
            "error": self.error,
            "execute_s": round(self.execute_s, 4),
            "render_s": round(self.render_s, 4),
            "match_s": round(self.match_s, 4),
            "seconds": round(self.seconds, 4),
        }

    def to_result(self, item_id: str) -> RewardResult:
        """The farm's carrier (see the module docstring)."""
        metrics: dict[str, float] = {}
        if self.score is not None:
            metrics["match"] = self.score
        for i, v in enumerate(self.views):
            metrics.update({f"view{i}_iou": v.iou, f"view{i}_edges": v.edges})
        return RewardResult(
            id=item_id,
            status=self.status,
            reward=None,
            components={
                "execute_s": self.execute_s,
                "render_s": self.render_s,
                "match_s": self.match_s,
            },
            metrics=metrics,
            error=self.error,
            seconds=round(self.seconds, 6),
        )

    @classmethod
    def from_result(cls, result: RewardResult) -> CandidateOutcome:
        """Read back :meth:`to_result` (an ``infra_error`` of any backend reads as one too)."""
        m, c = result.metrics, result.components
        views: list[ViewMatch] = []
        while f"view{len(views)}_iou" in m:
            i = len(views)
            views.append(ViewMatch(m[f"view{i}_iou"], m[f"view{i}_edges"]))
        return cls(
            status=result.status,
            score=m.get("match"),
            views=tuple(views),
            error=result.error,
            execute_s=c.get("execute_s", result.seconds),
            render_s=c.get("render_s", 0.0),
            match_s=c.get("match_s", 0.0),
        )


def match_candidate(
    result: ExecResult,
    views: Sequence[View],
    render: RenderFn,
    out_dir: Path,
    *,
    executor_config: ExecutorConfig | None = None,
    execute_s: float | None = None,
) -> CandidateOutcome:
    """Render an executed candidate and match its renders with the input ``views``.

    Args:
        result: the candidate's run in the sandbox.
        views: the views the model was given (files or RGBA arrays), in camera order.
        render: renders a mesh's views (:meth:`Renderer.render`, or
            :func:`worker.render.render_views` in a process that has Blender).
        out_dir: where the renders go (created).
        executor_config: the geometry gates' limits (default: built-in).
        execute_s: the seconds the run cost the caller (default ``result.seconds``).

    Returns:
        The outcome; ``score`` is ``None`` (and ``error`` says why) when the candidate did
        not make a usable mesh or the views cannot be matched. Raises only for the renderer's
        own failure (:class:`RenderError`).
    """
    spent = result.seconds if execute_s is None else execute_s
    status, error = result.status, result.error
    if status is ExecStatus.OK:
        gate, reason = geometry_status(result, executor_config or ExecutorConfig())
        if gate is not None:
            status, error = gate, reason
    if status is not ExecStatus.OK:
        return CandidateOutcome(status, error=error or status.value, execute_s=spent)
    start = time.perf_counter()
    paths = render(result.vertices, result.faces, out_dir)
    rendered = time.perf_counter()
    try:
        match = match_views(paths, list(views))
    except MatchUnavailableError as exc:
        return CandidateOutcome(
            status,
            error=str(exc),
            execute_s=spent,
            render_s=rendered - start,
            match_s=time.perf_counter() - rendered,
        )
    return CandidateOutcome(
        status,
        match.score,
        match.views,
        None,
        spent,
        rendered - start,
        time.perf_counter() - rendered,
    )


@dataclass(frozen=True)
class SelectSettings:
    """Besides the program and the views, what changes a candidate's match."""

    timeout_s: float
    render: RenderConfig = field(default_factory=RenderConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s, "render": self.render.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectSettings:
        return cls(float(data["timeout_s"]), RenderConfig.model_validate(data["render"]))


@dataclass(frozen=True)
class SelectJob:
    """One candidate for a backend: run ``code``, render it, match it with ``views`` (PNG).

    ``views_key`` names the group's views (:func:`views_digest`): the Celery backend stores
    them once per group under it and sends the candidates without them (``views`` empty),
    as it does with mesh references; the worker reads them back by that key.
    """

    item_id: str
    code: str
    views: tuple[bytes, ...]
    settings: SelectSettings
    views_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "code": self.code,
            "views": [base64.b64encode(v).decode("ascii") for v in self.views],
            "settings": self.settings.to_dict(),
            "views_key": self.views_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectJob:
        key = data.get("views_key")
        return cls(
            item_id=str(data["item_id"]),
            code=str(data["code"]),
            views=tuple(base64.b64decode(v) for v in data.get("views") or ()),
            settings=SelectSettings.from_dict(data["settings"]),
            views_key=None if key is None else str(key),
        )


def views_digest(views: Sequence[bytes], settings: SelectSettings) -> str:
    """What a candidate's match depends on besides its code: the views and the camera rig."""
    digest = hashlib.sha256(settings.render.model_dump_json().encode())
    for view in views:
        digest.update(hashlib.sha256(view).digest())
    return digest.hexdigest()


def select_cache_key(code: str, views_key: str, settings: SelectSettings) -> str:
    """The result-cache key of one candidate (a namespace of its own beside the scores')."""
    digest = hashlib.sha256(f"{views_key}\0{settings.timeout_s}\0".encode())
    digest.update(code.encode("utf-8", "surrogatepass"))
    return "select:" + digest.hexdigest()


@functools.lru_cache(maxsize=PREPARED_GROUPS)
def prepared_views(views: tuple[bytes, ...]) -> tuple[PreparedView, ...]:
    """The input views (PNG) decoded and analysed, once for all the candidates of a group that
    reach this process (the last :data:`PREPARED_GROUPS` groups' views are kept).

    Raises:
        MatchUnavailableError: a view cannot be read or has no usable background.
    """
    return tuple(prepare_view(decode_png(v, f"view {i}"), f"view {i}") for i, v in enumerate(views))


def select_job(
    job: SelectJob,
    *,
    runner: Runner,
    renderer: Renderer | RendererPool,
    executor_config: ExecutorConfig | None = None,
) -> RewardResult:
    """Run, render and match one candidate; its outcome as the farm's carrier.

    The runner's or the renderer's failure is the candidate's ``infra_error``.
    """
    start = time.perf_counter()
    try:
        views = prepared_views(job.views)
        result = runner(job.code, job.settings.timeout_s)
        execute_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory(prefix="llm3d-select-") as tmp:
            outcome = match_candidate(
                result,
                views,
                renderer.render,
                Path(tmp),
                executor_config=executor_config,
                execute_s=execute_s,
            )
    except (InfraError, MatchUnavailableError) as exc:
        logger.warning("candidate %s: %s", job.item_id, exc)
        return infra_result(job.item_id, str(exc), time.perf_counter() - start)
    except Exception as exc:  # the runner or the renderer broke: infrastructure
        logger.exception("candidate %s: selection failed", job.item_id)
        return infra_result(
            job.item_id,
            f"the worker failed: {type(exc).__name__}: {exc}",
            time.perf_counter() - start,
        )
    return outcome.to_result(job.item_id)


class Renderer:
    """A render server (:mod:`worker.blender_renderer`) of this process, started on first use
    and again after it died; one mesh at a time.

    Args:
        config: the camera rig, resolution and engine.
    """

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._log: IO[bytes] | None = None
        self._next = 0

    @property
    def pid(self) -> int | None:
        """The render server's process id (None until the first render)."""
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> socket.socket:
        from worker.sandbox.jail import SPAWNER, server_environment

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._log = tempfile.TemporaryFile(prefix="llm3d-renderer-")  # noqa: SIM115
        tmp = tempfile.gettempdir()
        self._proc = SPAWNER.popen(
            [
                sys.executable,
                "-m",
                SERVER_MODULE,
                "--fd",
                str(child.fileno()),
                "--config-json",
                self.config.model_dump_json(),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            pass_fds=(child.fileno(),),
            cwd=tmp,
            env=server_environment([REPO_ROOT], tmpdir=tmp),
            start_new_session=True,
        )
        child.close()
        parent.settimeout(STARTUP_TIMEOUT_S)
        self._sock = parent
        try:
            header, _ = recv_frame(parent, max_payload=0)
        except (OSError, EOFError, ValueError) as exc:
            self._stop()
            raise RenderError(f"the render server did not start: {exc}") from exc
        if header.get("op") != "hello":
            self._stop()
            raise RenderError(f"the render server said {header!r} instead of hello")
        parent.settimeout(RENDER_TIMEOUT_S)
        return parent

    def render(self, vertices: npt.ArrayLike, faces: npt.ArrayLike, out_dir: Path) -> list[Path]:
        """Render the views of a mesh into ``out_dir``; one PNG a view, in camera order.

        Raises:
            RenderError: the server could not render it, or died.
        """
        specs, blobs = encode_arrays(
            {
                "vertices": np.asarray(vertices, dtype=np.float32).reshape(-1, 3),
                "faces": np.asarray(faces, dtype=np.int32).reshape(-1, 3),
            }
        )
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with self._lock:
            sock = self._sock or self._start()
            self._next += 1
            header = {"op": "render", "id": self._next, "out_dir": str(out_dir), "arrays": specs}
            try:
                send_frame(sock, header, *blobs)
                answer, _ = recv_frame(sock, max_payload=0)
            except (OSError, EOFError, ValueError) as exc:
                tail = self._stop()
                raise RenderError(f"the render server failed ({exc}); its log: {tail}") from exc
            except BaseException:  # interrupted (a task's time limit): its answer would be stale
                self._stop()
                raise
        if answer.get("op") != "rendered":
            raise RenderError(f"rendering failed: {answer.get('error') or answer!r}")
        return [Path(p) for p in answer["paths"]]

    def _stop(self) -> str:
        """Kill the server (the next render starts a new one); the tail of its log."""
        sock, proc, log = self._sock, self._proc, self._log
        self._sock = self._proc = self._log = None
        if sock is not None:
            sock.close()
        if proc is not None:
            proc.kill()
            proc.wait()
        tail = ""
        if log is not None:
            log.seek(0)
            tail = log.read()[-1000:].decode("utf-8", "replace")
            log.close()
        return tail

    def close(self) -> None:
        """Stop the server (it also exits by itself when this process goes away)."""
        with self._lock:
            self._stop()


class RendererPool:
    """``size`` :class:`Renderer` s side by side (each started on first use); a render takes
    whichever is free."""

    def __init__(self, config: RenderConfig, size: int = 1) -> None:
        self.config = config
        self._all = [Renderer(config) for _ in range(max(1, size))]
        self._free: queue.SimpleQueue[Renderer] = queue.SimpleQueue()
        for renderer in self._all:
            self._free.put(renderer)

    def render(self, vertices: npt.ArrayLike, faces: npt.ArrayLike, out_dir: Path) -> list[Path]:
        """:meth:`Renderer.render` on a free server (waits for one)."""
        renderer = self._free.get()
        try:
            return renderer.render(vertices, faces, out_dir)
        finally:
            self._free.put(renderer)

    def close(self) -> None:
        for renderer in self._all:
            renderer.close()


class LocalSelector:
    """One process's render servers (a :class:`RendererPool` a camera rig, started on first
    use) and the body of the farm's select task: what the inline backend, a Celery worker
    process and a Modal container keep between candidates.

    Args:
        runner: runs a program in this process's sandbox (``runner(code, timeout_s)``).
        executor_config: the geometry gates' limits.
        size: render servers side by side for each camera rig.
    """

    def __init__(self, runner: Runner, executor_config: ExecutorConfig, size: int = 1) -> None:
        self.runner = runner
        self.executor_config = executor_config
        self.size = size
        self._pools: dict[str, RendererPool] = {}
        self._lock = threading.Lock()

    def renderer(self, config: RenderConfig) -> RendererPool:
        """The render servers of a camera rig (the same pool for the same rig)."""
        key = config.model_dump_json()
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = RendererPool(config, self.size)
            return pool

    def select(self, job: SelectJob) -> RewardResult:
        """Run, render and match one candidate (:func:`select_job`) with this process's
        runner and render servers."""
        return select_job(
            job,
            runner=self.runner,
            renderer=self.renderer(job.settings.render),
            executor_config=self.executor_config,
        )

    def close(self) -> None:
        """Stop every render server."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


FarmJob = ScoreJob | SelectJob
"""What a backend runs: a score (:class:`~worker.scoring.ScoreJob`) or a candidate to match."""
