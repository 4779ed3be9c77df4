"""The fork server's loop: one thread, one ``selectors`` loop (plain Python, no ``bpy``).

:class:`ForkServer` serves the executor's frames on a socket for :mod:`worker.execution.blender_server`,
which imports Blender, builds the children's runtime and then hands over to it. It never
runs untrusted code:

* requests queue in arrival order; at most ``executor.children_per_server`` children run at
  once; a ``cancel`` drops a queued request or kills a running child;
* each child has three pipes (stdout, stderr, result) and a pidfd; stdout/stderr are read as
  they come and only their last ``executor.output_tail_bytes`` are kept (a print flood costs
  CPU, not memory);
* the wall-clock deadline is enforced here by ``killpg(SIGKILL)`` of the child's process
  group (and the child itself); when a child exits, its group is killed too (nothing it
  started survives), it is reaped and its temporary directory removed;
* a crash of a child (segfault, ``os._exit``, a limit) is that program's ``exec_failed``.

When the socket closes (the executor went away), every child is killed and the loop ends.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import selectors
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from llm3d.config import ExecutorConfig
from worker.execution.blender_child import ChildJob, ChildRuntime, run_child
from worker.execution.hugepages import Recollapse
from worker.execution.outcome import classify_child
from worker.execution.protocol import FrameDecoder, ProtocolError, encode_frame, frame_complete
from worker.sandbox.policy import check_policy

logger = logging.getLogger("llm3d.blender_server")

#: Largest request (code is at most max_code_bytes; this bounds a broken client).
MAX_REQUEST_BYTES = 4 << 20
#: Largest result frame a child may send (100k vertices need ~1.2 MB; this is generous).
MAX_RESULT_BYTES = 256 << 20


class OutputTail:
    """The last ``limit`` bytes of a stream, and how many bytes it carried in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._buf = bytearray()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        if len(self._buf) > 2 * self.limit:
            del self._buf[: len(self._buf) - self.limit]

    def text(self) -> str:
        """The tail as text (at most ``limit`` bytes before decoding)."""
        return bytes(self._buf[-self.limit :]).decode("utf-8", errors="replace")

    @property
    def dropped(self) -> int:
        return max(0, self.total - self.limit)


@dataclass
class Request:
    """A ``run`` request as received."""

    id: str
    code: str
    timeout_s: float
    policy: bool
    queued: bool = False


@dataclass
class Running:
    """A forked child and everything the server holds for it."""

    request: Request
    pid: int
    pidfd: int
    workdir: str
    started: float
    deadline: float
    fds: dict[str, int]  # "stdout" / "stderr" / "result" -> read end, removed at EOF
    stdout: OutputTail
    stderr: OutputTail
    result: bytearray = field(default_factory=bytearray)
    result_overflow: bool = False
    timed_out: bool = False
    answered: bool = False


class ForkServer:
    """The selector loop; see the module docstring."""

    def __init__(
        self,
        sock: socket.socket,
        config: ExecutorConfig,
        runtime: ChildRuntime,
        bpy_lib_names: list[str],
        *,
        allow_unsafe: bool = False,
        diagnostics: dict[str, str] | None = None,
    ) -> None:
        self.sock = sock
        self.config = config
        self.runtime = runtime
        self.bpy_lib_names = bpy_lib_names
        self.allow_unsafe = allow_unsafe
        self.diagnostics = dict(diagnostics or {})
        self.capacity = config.children_per_server or (os.cpu_count() or 1)
        self.selector = selectors.DefaultSelector()
        self.decoder = FrameDecoder(max_payload=MAX_REQUEST_BYTES)
        self.queue: deque[Request] = deque()
        self.running: dict[int, Running] = {}
        self.root = tempfile.mkdtemp(prefix="llm3d-exec-")
        self.closing = False
        self.recollapse = Recollapse(runtime.libc, enabled=config.huge_pages)

    # -- the loop --------------------------------------------------------------------

    def serve(self) -> None:
        """Serve until the socket closes; kill and reap every child on the way out."""
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ, None)
        try:
            while not self.closing or self.running:
                if self.closing:
                    self._kill_all()
                self._start_queued()
                self._maybe_recollapse()
                for key, _ in self.selector.select(self._next_wakeup()):
                    if key.data is None:
                        self._read_control()
                    else:
                        running, kind = key.data
                        self._on_child_event(running, kind)
                self._enforce_deadlines()
        finally:
            self._kill_all()
            for running in list(self.running.values()):
                self._reap(running, block=True)
            shutil.rmtree(self.root, ignore_errors=True)

    def _maybe_recollapse(self) -> None:
        """Rebuild the huge pages forks have split, between programs (worker/execution/hugepages.py)."""
        report = self.recollapse.maybe(idle=not self.running and not self.queue)
        if report is not None:
            logger.debug("huge pages: %s", report.describe())

    def _next_wakeup(self) -> float:
        deadlines = [r.deadline for r in self.running.values() if not (r.timed_out or r.answered)]
        if not deadlines:
            return 1.0  # idle, or only killed children whose pidfds will fire
        return max(0.0, min(1.0, min(deadlines) - time.monotonic()))

    def _read_control(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            logger.warning("control socket failed (%s); shutting down", exc)
            data = b""
        if not data:
            self.closing = True
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.sock)
            return
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            logger.error("malformed request (%s); shutting down", exc)
            self.closing = True
            return
        for header, payload in frames:
            self._on_request(header, payload)

    def _on_request(self, header: dict[str, Any], payload: bytearray) -> None:
        op = header.get("op")
        if op == "ping":
            self._send({"op": "pong", "id": header.get("id"), "running": len(self.running)})
            return
        if op == "cancel":
            self._cancel(str(header.get("id")))
            return
        if op != "run":
            logger.error("unknown op %r ignored", op)
            return
        rid = str(header.get("id"))
        try:
            timeout = float(header.get("timeout_s") or self.config.timeout_s)
        except (TypeError, ValueError):
            timeout = self.config.timeout_s
        if not (math.isfinite(timeout) and timeout > 0):
            timeout = self.config.timeout_s
        policy = bool(header.get("policy", True)) or not self.allow_unsafe
        try:
            code = payload.decode("utf-8")
        except UnicodeDecodeError:
            code = payload.decode("utf-8", errors="replace")
        request = Request(rid, code, timeout, policy)
        answer = self._precheck(request)  # refusals are answered at once, not queued
        if answer is not None:
            self._send(answer)
            return
        if len(self.running) + len(self.queue) >= self.capacity:
            # it must wait for a child: say so, and say again when it starts, so that the
            # executor's watchdog counts its timeout from then (one frame only when queued)
            request.queued = True
            self._send({"op": "queued", "id": rid})
        self.queue.append(request)

    def _cancel(self, rid: str) -> None:
        """Drop program ``rid`` if it is queued, kill its child's group if it runs, and answer
        it at once as ``infra_error`` (cancelled: never the program's fault, never cached).
        An id already answered is ignored: its result is on its way."""
        answer: dict[str, Any] = {
            "op": "result",
            "id": rid,
            "status": "infra_error",
            "error": "cancelled by the caller before it finished",
            "seconds": 0.0,
            "diagnostics": {"cancelled": "true"},
        }
        for request in self.queue:
            if request.id == rid:
                self.queue.remove(request)
                self._send(answer)
                return
        for running in self.running.values():
            if running.request.id == rid and not running.answered:
                running.answered = True  # reaped later (pidfd), without a second answer
                _kill_group(running.pid)
                self._send({**answer, "seconds": time.monotonic() - running.started})
                return

    # -- starting children -------------------------------------------------------------

    def _start_queued(self) -> None:
        while self.queue and len(self.running) < self.capacity and not self.closing:
            request = self.queue.popleft()
            try:
                self._fork(request)
            except OSError as exc:  # fork or pipe failed: the server's problem, not the program's
                logger.exception("could not start a child")
                self._send(
                    {
                        "op": "result",
                        "id": request.id,
                        "status": "infra_error",
                        "error": f"the fork server could not start a child: {exc}",
                    }
                )

    def _precheck(self, request: Request) -> dict[str, Any] | None:
        """The answer for a program that must not run (empty, refused, broken), or None."""
        base: dict[str, Any] = {"op": "result", "id": request.id, "seconds": 0.0}
        if not request.code.strip():
            return {**base, "status": "empty", "error": "the program is empty"}
        if not request.policy:
            return None
        verdict = check_policy(
            request.code,
            self.config.allowed_imports,
            module_names={"bpy_lib": self.bpy_lib_names},
            max_code_bytes=self.config.max_code_bytes,
        )
        if not verdict.imports_bpy_lib:
            return {
                **base,
                "status": "empty",
                "error": "the program does not import bpy_lib; start with 'from bpy_lib import *'",
            }
        if verdict.ok:
            return None
        status = "exec_failed" if verdict.rule == "syntax" else "refused"
        return {
            **base,
            "status": status,
            "error": verdict.describe(),
            "diagnostics": {"policy_rule": verdict.rule or ""},
        }

    def _server_fds(self) -> list[int]:
        fds = [self.sock.fileno()]
        with contextlib.suppress(AttributeError, OSError):
            fds.append(self.selector.fileno())
        for running in self.running.values():
            fds.append(running.pidfd)
            fds.extend(running.fds.values())
        return fds

    def _fork(self, request: Request) -> None:
        workdir = tempfile.mkdtemp(prefix="run-", dir=self.root)
        pipes: dict[str, tuple[int, int]] = {}
        server_pid = os.getpid()
        try:
            for name in ("stdout", "stderr", "result"):
                pipes[name] = os.pipe()
            pid = os.fork()
            self.recollapse.forked()
        except OSError:
            for read_end, write_end in pipes.values():
                os.close(read_end)
                os.close(write_end)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        if pid == 0:  # the child: never returns
            job = ChildJob(
                code=request.code,
                workdir=workdir,
                stdout_fd=pipes["stdout"][1],
                stderr_fd=pipes["stderr"][1],
                result_fd=pipes["result"][1],
                server_fds=[*self._server_fds(), *(r for r, _ in pipes.values())],
                policy=request.policy,
                server_pid=server_pid,
            )
            run_child(job, self.runtime)
        started = time.monotonic()
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
        for read_end, write_end in pipes.values():
            os.close(write_end)
            os.set_blocking(read_end, False)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # cannot watch it: do not let it run unwatched
            _kill_group(pid)
            os.waitpid(pid, 0)
            for read_end, _ in pipes.values():
                os.close(read_end)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        tail = self.config.output_tail_bytes
        running = Running(
            request=request,
            pid=pid,
            pidfd=pidfd,
            workdir=workdir,
            started=started,
            deadline=started + request.timeout_s,
            fds={name: r for name, (r, _) in pipes.items()},
            stdout=OutputTail(tail),
            stderr=OutputTail(tail),
        )
        self.running[pid] = running
        if request.queued:
            self._send({"op": "started", "id": request.id, "pid": pid})
        for name, fd in running.fds.items():
            self.selector.register(fd, selectors.EVENT_READ, (running, name))
        self.selector.register(pidfd, selectors.EVENT_READ, (running, "exit"))

    # -- children's events -------------------------------------------------------------

    def _on_child_event(self, running: Running, kind: str) -> None:
        if running.pid not in self.running:
            return
        if kind == "exit":
            self._reap(running, block=False)
        else:
            self._drain(running, kind)

    def _drain(self, running: Running, kind: str) -> None:
        """Read what the pipe ``kind`` holds now; close it at EOF."""
        fd = running.fds.get(kind)
        if fd is None:
            return
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                data = b""
            if not data:
                self.selector.unregister(fd)
                os.close(fd)
                del running.fds[kind]
                return
            if kind == "stdout":
                running.stdout.add(data)
            elif kind == "stderr":
                running.stderr.add(data)
            elif len(running.result) + len(data) <= MAX_RESULT_BYTES:
                running.result += data
                self._answer_if_complete(running)
            else:
                running.result_overflow = True

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for running in self.running.values():
            if not (running.timed_out or running.answered) and now >= running.deadline:
                running.timed_out = True
                _kill_group(running.pid)

    def _kill_all(self) -> None:
        for running in self.running.values():
            _kill_group(running.pid)

    def _reap(self, running: Running, *, block: bool) -> None:
        # The child is a zombie now, so its pid (= its group id) cannot be reused yet: kill
        # whatever it left in its group before reaping it.
        _kill_group(running.pid)
        try:
            _, wait_status = os.waitpid(running.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            wait_status = 0
        for kind in list(running.fds):
            self._drain(running, kind)
        for kind, fd in list(running.fds.items()):
            self.selector.unregister(fd)
            os.close(fd)
            del running.fds[kind]
        self.selector.unregister(running.pidfd)
        os.close(running.pidfd)
        del self.running[running.pid]
        shutil.rmtree(running.workdir, ignore_errors=True)
        if not running.answered:
            self._answer(running, wait_status)

    def _answer(self, running: Running, wait_status: int) -> None:
        """Classify what the child left and send the result frame (once per program)."""
        running.answered = True
        if self.closing:
            return
        header, blobs = classify_child(
            running.request.id,
            wait_status=wait_status,
            timed_out=running.timed_out,
            timeout_s=running.request.timeout_s,
            result=running.result,
            result_overflow=running.result_overflow,
            config=self.config,
        )
        diagnostics = {**self.diagnostics, **header.get("diagnostics", {})}
        for name, tail in (("stdout", running.stdout), ("stderr", running.stderr)):
            header[name] = tail.text()
            if tail.dropped:
                diagnostics[f"{name}_dropped_bytes"] = str(tail.dropped)
        header["seconds"] = time.monotonic() - running.started
        header["diagnostics"] = diagnostics
        self._send(header, *blobs)

    def _answer_if_complete(self, running: Running) -> None:
        """Answer as soon as the child's result frame is whole, without waiting for its exit.

        The child writes its result last (after flushing stdout/stderr, whose pipes are
        drained here first), then only calls ``os._exit``; tearing down a copy of Blender
        takes a millisecond or two that the caller need not wait for. The exit is still
        reaped (and its group killed) when the pidfd fires.
        """
        if running.answered or running.timed_out or not frame_complete(running.result):
            return
        for kind in ("stdout", "stderr"):
            self._drain(running, kind)
        self._answer(running, wait_status=0)
        _kill_group(running.pid)  # nothing of the program may outlive its answer

    def _send(self, header: dict[str, Any], *blobs: bytes) -> None:
        if self.closing:
            return
        self.sock.setblocking(True)
        try:
            for piece in encode_frame(header, *blobs):
                self.sock.sendall(piece)
        except OSError as exc:
            logger.warning("could not answer the executor (%s); shutting down", exc)
            self.closing = True
        finally:
            self.sock.setblocking(False)


def _kill_group(pgid: int) -> None:
    """Kill a child's process group, and the child itself should it have left the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pgid, signal.SIGKILL)
