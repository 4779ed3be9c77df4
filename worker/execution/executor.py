"""Run untrusted programs in warm Blender: the client side (plain Python, no ``bpy``).

:class:`Executor` owns one fork server (``python -m worker.execution.blender_server``, see that module)
and talks to it over a socketpair with length-prefixed frames (:mod:`worker.execution.protocol`).
:meth:`Executor.run` is thread-safe; many programs may be in flight at once (the server runs
``executor.children_per_server`` of them in parallel and queues the rest; callers block once
``executor.queue_size`` are waiting). :class:`ExecutorPool` spreads programs over several
servers side by side (one per core by default).

If the server dies (or stops answering), every program in flight gets
``ExecStatus.INFRA_ERROR`` (never the program's fault) and the next call starts a new one.

``ExecResult.diagnostics`` may hold: ``program_s`` / ``extract_s`` (the program's own run and
the mesh read, timed in the child), ``policy_rule`` (why it was refused),
``stdout_dropped_bytes`` / ``stderr_dropped_bytes`` (output beyond the kept tails), and one
entry per isolation layer the OS refused (``network``, ``rlimit.*``, ``landlock``,
``seccomp``) — absent when every layer is in place. ``Executor.server_info`` has the
server's own notes (Blender version, network, processes, its work directory).

Example
-------
>>> with Executor() as ex:  # doctest: +SKIP
...     result = ex.run("from bpy_lib import *\\nbox(size=[1, 1, 1])\\nexport_scene()")
...     result.status, result.vertices.shape
(<ExecStatus.OK: 'ok'>, (8, 3))
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import select
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from llm3d.config import REPO_ROOT, ExecutorConfig, load_config
from llm3d.schemas import ExecStatus
from worker.execution.protocol import ProtocolError, decode_arrays, recv_frame, send_frame
from worker.sandbox.jail import SPAWNER, Launch, jailed_server_pid, plan_launch
from worker.types import ExecResult

__all__ = ["Executor", "ExecutorPool"]

logger = logging.getLogger(__name__)

#: How long a fork server may take to import Blender and say hello.
STARTUP_TIMEOUT_S = 120.0
#: A program whose answer is this late past its own timeout means the server is stuck.
ANSWER_GRACE_S = 30.0
_MAX_ANSWER_BYTES = 300 << 20
_FRAME_READ_TIMEOUT_S = 60.0
#: The module run as the fork server (``python -m``).
SERVER_MODULE = "worker.execution.blender_server"


def _infra(error: str, seconds: float = 0.0, **diagnostics: str) -> ExecResult:
    return ExecResult(
        status=ExecStatus.INFRA_ERROR, error=error, seconds=seconds, diagnostics=diagnostics
    )


def _too_large(size: int, limit: int) -> ExecResult:
    return ExecResult(
        status=ExecStatus.REFUSED,
        error=(
            f"the program is {size:,} bytes; the limit is {limit:,} bytes "
            "(executor.max_code_bytes): write a shorter program"
        ),
        diagnostics={"policy_rule": "size"},
    )


class _Pending:
    """A program sent to the server.

    The server says ``queued`` when a program must wait for a free child, and ``started``
    when such a program is forked; a program never queued started when it was submitted.
    """

    __slots__ = ("cancel_asked", "future", "queued", "sent", "started", "submitted", "timeout_s")

    def __init__(self, future: Future[ExecResult], timeout_s: float) -> None:
        self.future = future
        self.timeout_s = timeout_s
        self.submitted = time.monotonic()
        self.queued = False
        self.started: float | None = None
        self.sent = False  # the run frame is out (a cancel may follow it)
        self.cancel_asked = False  # cancelled before its run frame was out: send after it

    @property
    def running_since(self) -> float | None:
        if self.started is not None:
            return self.started
        return None if self.queued else self.submitted


class _Server:
    """One running fork server process and the thread that reads its answers."""

    def __init__(
        self, config: ExecutorConfig, *, policy: bool, on_exit: Any, launch: Launch
    ) -> None:
        self.config = config
        self.capacity = config.children_per_server or (os.cpu_count() or 1)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent
        self.log: IO[bytes] = tempfile.TemporaryFile(prefix="llm3d-server-")  # noqa: SIM115
        self.jail = launch.jail
        cmd = [
            *launch.jail.prefix,
            *launch.runner,
            SERVER_MODULE,
            "--fd",
            str(child.fileno()),
            "--config-json",
            config.model_dump_json(),
            "--readable-json",
            json.dumps(launch.readable),
        ]
        if launch.jail.mode != "none":
            cmd.append("--jailed")
        if not policy:
            cmd.append("--allow-unsafe")
        self.proc = SPAWNER.popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            pass_fds=(child.fileno(),),
            cwd=launch.jail.tmpdir if launch.jail.mode == "none" else "/",
            env=launch.env,  # an allow-list: no secret of the caller reaches the server
            start_new_session=True,  # a Ctrl-C in the caller's terminal is the caller's
        )
        child.close()
        self.pending: dict[str, _Pending] = {}
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.dead = False
        self.on_exit = on_exit
        self.hello: dict[str, Any] = {}
        self._hello_event = threading.Event()
        self._hello_error: str | None = None
        self.reader = threading.Thread(target=self._read_loop, name="llm3d-executor", daemon=True)
        self.reader.start()

    def wait_ready(self) -> None:
        if not self._hello_event.wait(STARTUP_TIMEOUT_S):
            self.kill()
            raise TimeoutError(f"the fork server did not start within {STARTUP_TIMEOUT_S:g} s")
        if self._hello_error is not None:
            raise RuntimeError(self._hello_error)

    def log_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(0, size - limit))
            return self.log.read().decode("utf-8", errors="replace")
        return ""

    def submit(self, rid: str, code: str, timeout_s: float, policy: bool) -> Future[ExecResult]:
        future: Future[ExecResult] = Future()
        future.set_running_or_notify_cancel()
        payload = code.encode("utf-8", errors="surrogatepass")
        if len(payload) > self.config.max_code_bytes:
            # refused here: a frame past the server's limit would break it for every program
            future.set_result(_too_large(len(payload), self.config.max_code_bytes))
            return future
        with self.lock:
            if self.dead:
                future.set_result(_infra("the fork server is not running"))
                return future
            pending = self.pending[rid] = _Pending(future, timeout_s)
        header = {"op": "run", "id": rid, "timeout_s": timeout_s, "policy": policy}
        try:
            with self.send_lock:
                send_frame(self.sock, header, payload)
                pending.sent = True
                if pending.cancel_asked:
                    send_frame(self.sock, {"op": "cancel", "id": rid})
        except OSError as exc:
            self._fail_all(f"the fork server stopped accepting programs ({exc})")
        return future

    def cancel(self, future: Future[ExecResult]) -> bool:
        """Ask the server to drop or kill the program of ``future``; False when not pending.

        The future then resolves to ``infra_error`` (cancelled: never scored nor cached).
        """
        with self.lock:
            found = [(rid, p) for rid, p in self.pending.items() if p.future is future]
        if not found:
            return False
        rid, pending = found[0]
        try:
            with self.send_lock:
                if pending.sent:
                    send_frame(self.sock, {"op": "cancel", "id": rid})
                else:
                    pending.cancel_asked = True
        except OSError as exc:
            self._fail_all(f"the fork server stopped accepting requests ({exc})")
        return True

    def _read_loop(self) -> None:
        # A frame is read whole once its first byte is there (a timeout inside a frame would
        # desynchronise the stream); between frames the loop wakes every second to notice a
        # server that stopped answering.
        self.sock.settimeout(_FRAME_READ_TIMEOUT_S)
        poller = select.poll()  # not select(): callers may hold more than 1024 descriptors
        poller.register(self.sock, select.POLLIN)
        reason = "the fork server closed its connection"
        try:
            while True:
                if not poller.poll(1000):
                    self._check_deadlines()
                    continue
                header, payload = recv_frame(self.sock, max_payload=_MAX_ANSWER_BYTES)
                op = header.get("op")
                if op == "hello":
                    self.hello = header
                    self._hello_error = header.get("error")
                    self._hello_event.set()
                elif op in ("queued", "started"):
                    self._mark(str(header.get("id")), op)
                elif op == "result":
                    self._deliver(header, payload)
        except (EOFError, OSError, ProtocolError) as exc:
            reason = f"the fork server was lost ({type(exc).__name__}: {exc})"
        finally:
            code = self.proc.poll()
            if code is None:
                self.kill()
                code = self.proc.poll()
            if not self._hello_event.is_set():
                self._hello_error = f"the fork server exited during start-up: {self.log_tail()}"
                self._hello_event.set()
            self._fail_all(f"{reason}; exit status {code}")
            self.on_exit(self)

    def _check_deadlines(self) -> None:
        """Kill a server that stopped answering (its programs then get INFRA_ERROR).

        Stuck means: a running program is well past its own timeout, or a queued program has
        waited to start while the server had a free child slot. Programs queued behind long
        ones are not counted against the server: their clock starts when it forks them.
        """
        now = time.monotonic()
        with self.lock:
            items = list(self.pending.values())
        running = [(p, p.running_since) for p in items if p.running_since is not None]
        late = any(now > since + p.timeout_s + ANSWER_GRACE_S for p, since in running)
        stalled = len(running) < self.capacity and any(
            p.running_since is None and now > p.submitted + ANSWER_GRACE_S for p in items
        )
        if late or stalled:
            logger.error("fork server %d stopped answering; killing it", self.proc.pid)
            self.kill()

    def _mark(self, rid: str, op: str) -> None:
        with self.lock:
            pending = self.pending.get(rid)
            if pending is None:
                return
            if op == "queued":
                pending.queued = True
            else:
                pending.started = time.monotonic()

    def _deliver(self, header: dict[str, Any], payload: bytearray) -> None:
        rid = str(header.get("id"))
        with self.lock:
            pending = self.pending.pop(rid, None)
        if pending is None:
            logger.warning("answer for an unknown program %s ignored", rid)
            return
        try:
            result = _decode_result(header, payload)
        except (ProtocolError, KeyError, ValueError) as exc:
            result = _infra(f"the fork server sent a malformed answer ({exc})")
        pending.future.set_result(result)

    def _fail_all(self, reason: str) -> None:
        with self.lock:
            self.dead = True
            pending, self.pending = self.pending, {}
        now = time.monotonic()
        for item in pending.values():
            if not item.future.done():
                item.future.set_result(_infra(reason, seconds=now - item.submitted))

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def close(self) -> None:
        """Close the socket (the server then kills its children and exits) and wait."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
        self.reader.join(5)
        self.sock.close()
        self.log.close()


def _decode_result(header: dict[str, Any], payload: bytearray) -> ExecResult:
    arrays = decode_arrays(header.get("arrays") or [], payload)
    vertices = arrays.get("vertices", np.zeros((0, 3), dtype=np.float32))
    faces = arrays.get("faces", np.zeros((0, 3), dtype=np.int32))
    diagnostics = {str(k): str(v) for k, v in dict(header.get("diagnostics") or {}).items()}
    return ExecResult(
        status=ExecStatus(header["status"]),
        vertices=vertices.astype(np.float32, copy=False),
        faces=faces.astype(np.int32, copy=False),
        # left None: nobody needs them on every result, and the caller's CPU is the farm's
        # bottleneck; worker.geometry.sampling.face_areas_normals computes them on demand
        face_normals=None,
        stdout=str(header.get("stdout") or ""),
        stderr=str(header.get("stderr") or ""),
        seconds=float(header.get("seconds") or 0.0),
        error=header.get("error"),
        diagnostics=diagnostics,
    )


class Executor:
    """A warm Blender fork server that runs programs in sandboxed children.

    Parameters
    ----------
    config : ExecutorConfig, optional
        Limits and policy; ``load_config().executor`` when omitted.
    policy : bool
        **Tests only.** ``False`` runs programs without the AST policy and with the full
        builtins (to make a child crash on purpose). Never expose it to users.

    Use as a context manager, or call :meth:`close`. The server starts on :meth:`start` (the
    context manager calls it) or on the first :meth:`run`.
    """

    def __init__(
        self,
        config: ExecutorConfig | None = None,
        *,
        policy: bool = True,
        runner: Sequence[str] | None = None,
        code_paths: Sequence[str] | None = None,
        extra_readable: Sequence[str] = (),
    ) -> None:
        self.config = config if config is not None else load_config().executor
        self.policy = policy
        self._runner = runner
        self._code_paths = code_paths
        self._extra_readable = tuple(extra_readable)
        self._launch: Launch | None = None
        self._server: _Server | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._slots = threading.BoundedSemaphore(self._max_in_flight())
        self._closed = False
        self.restarts = 0

    def _max_in_flight(self) -> int:
        children = self.config.children_per_server or (os.cpu_count() or 1)
        return children + self.config.queue_size

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the fork server now (blocks until Blender is imported, about a second)."""
        self._ensure_server()

    def _ensure_server(self) -> _Server:
        with self._lock:
            if self._closed:
                raise RuntimeError("this Executor is closed")
            if self._server is not None and not self._server.dead:
                return self._server
            if self._server is not None:
                self.restarts += 1
                logger.warning("restarting the fork server (restart %d)", self.restarts)
                self._server.close()
            if self._launch is None:
                self._launch = plan_launch(
                    self.config, REPO_ROOT, self._runner, self._code_paths, self._extra_readable
                )
            server = _Server(
                self.config, policy=self.policy, on_exit=self._on_server_exit, launch=self._launch
            )
            try:
                server.wait_ready()
            except (TimeoutError, RuntimeError):
                server.close()
                raise
            self._server = server
            logger.info("fork server %d ready: %s", server.proc.pid, server.hello)
            return server

    def _on_server_exit(self, server: _Server) -> None:
        if not self._closed:
            logger.warning("fork server %d exited", server.proc.pid)

    @property
    def server_pid(self) -> int | None:
        """The fork server's process id on this machine (None before it starts).

        For a jailed server this is the Python process inside bubblewrap, not bubblewrap.
        """
        server = self._server
        if server is None:
            return None
        if server.jail.mode == "none":
            return server.proc.pid
        return jailed_server_pid(server.proc.pid) or server.proc.pid

    @property
    def jail(self) -> str:
        """``bwrap`` or ``none``: how the server is jailed (see :mod:`worker.sandbox.jail`)."""
        return self._server.jail.mode if self._server is not None else "none"

    def host_path(self, path: str) -> Path:
        """Where a path the server names (``workdir_root``) lies as seen from this machine."""
        server = self._server
        if server is None or server.jail.mode == "none":
            return Path(path)
        return Path(f"/proc/{self.server_pid}/root{path}")

    @property
    def server_info(self) -> dict[str, Any]:
        """The server's hello: ``bpy_lib`` names and sandbox ``diagnostics``."""
        return dict(self._server.hello) if self._server is not None else {}

    @property
    def in_flight(self) -> int:
        """Programs sent and not yet answered."""
        server = self._server
        return server.in_flight if server is not None else 0

    def close(self) -> None:
        """Stop the server (its running children are killed). Idempotent."""
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            server.close()

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- running -----------------------------------------------------------------------

    def submit(self, code: str, *, timeout_s: float | None = None) -> Future[ExecResult]:
        """Send a program; the future resolves to its :class:`ExecResult` (never raises).

        Blocks while ``queue_size`` programs are already waiting (back-pressure).
        """
        timeout = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        if not timeout > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self._slots.acquire()
        try:
            server = self._ensure_server()
        except (TimeoutError, RuntimeError) as exc:
            self._slots.release()
            done: Future[ExecResult] = Future()
            done.set_result(_infra(f"the fork server could not start: {exc}"))
            return done
        future = server.submit(f"{os.getpid()}-{next(self._ids)}", code, timeout, self.policy)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def cancel(self, future: Future[ExecResult]) -> bool:
        """Stop the program of ``future`` (from :meth:`submit`): dropped if it still waits for
        a child, its process group killed if it runs. The future resolves to ``infra_error``
        with a "cancelled" error. False when it is already answered (or not this server's).
        """
        server = self._server
        return server.cancel(future) if server is not None else False

    def run(self, code: str, *, timeout_s: float | None = None) -> ExecResult:
        """Run one program and wait for its result (thread-safe)."""
        return self.submit(code, timeout_s=timeout_s).result()

    def run_many(self, codes: Iterable[str], *, timeout_s: float | None = None) -> list[ExecResult]:
        """Run programs concurrently on this server; results in input order."""
        futures = [self.submit(code, timeout_s=timeout_s) for code in codes]
        return [f.result() for f in futures]


class ExecutorPool:
    """Several fork servers side by side; programs go to the least busy one.

    Parameters
    ----------
    config : ExecutorConfig, optional
        As for :class:`Executor`.
    size : int, optional
        Servers; default ``config.servers``, or one per core when that is 0.
    """

    def __init__(self, config: ExecutorConfig | None = None, size: int | None = None) -> None:
        self.config = config if config is not None else load_config().executor
        count = size or self.config.servers or (os.cpu_count() or 1)
        if count < 1:
            raise ValueError(f"size must be at least 1, got {size!r}")
        self.executors = [Executor(self.config) for _ in range(count)]
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start every server now, in parallel."""
        threads = [threading.Thread(target=ex.start) for ex in self.executors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def submit(self, code: str, *, timeout_s: float | None = None) -> Future[ExecResult]:
        """Send a program to the server with the fewest programs in flight."""
        with self._lock:  # held while sending, so the next pick sees this program counted
            executor = min(self.executors, key=lambda ex: ex.in_flight)
            return executor.submit(code, timeout_s=timeout_s)

    def cancel(self, future: Future[ExecResult]) -> bool:
        """Stop the program of ``future`` wherever it runs (see :meth:`Executor.cancel`)."""
        return any(executor.cancel(future) for executor in self.executors)

    def run(self, code: str, *, timeout_s: float | None = None) -> ExecResult:
        """Run one program and wait for it."""
        return self.submit(code, timeout_s=timeout_s).result()

    def run_many(self, codes: Sequence[str], *, timeout_s: float | None = None) -> list[ExecResult]:
        """Run programs on all servers concurrently; results in input order."""
        futures = [self.submit(code, timeout_s=timeout_s) for code in codes]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop every server."""
        for executor in self.executors:
            executor.close()

    def __enter__(self) -> ExecutorPool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
