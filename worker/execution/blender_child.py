"""What one forked child of the fork server does (runs inside Blender, never returns).

The child is the only process that runs untrusted code. In order it: leaves the server's
process group for its own (so a timeout kills everything it started), dies with the server,
closes every descriptor of the server, points fd 1/2 at the server's capture pipes, moves
into its empty temporary directory, lowers its rlimits, forbids itself writes outside that
directory and reads outside what it needs (:mod:`worker.sandbox.landlock`), and new processes,
signals to others and the kernel's wider surfaces (:mod:`worker.sandbox.seccomp`), runs the
program with the safe builtins table and the guarded bpy_lib facade, reads the mesh with
``bpy_lib.export.scene_arrays`` and writes one result frame (JSON header + raw array bytes)
to its result pipe, then ``os._exit``\\ s without running Blender's exit handlers.
Whatever the program changed (module state, the scene) dies with the child: the server's own
scene stays empty.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import resource
import signal
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from llm3d.program import PROGRAM_FILENAME, describe_error
from worker.execution.protocol import encode_arrays, encode_frame
from worker.sandbox.landlock import restrict_filesystem
from worker.sandbox.policy import restricted_builtins
from worker.sandbox.privileges import drop_capabilities
from worker.sandbox.seccomp import PreparedFilter, forbid_new_processes

__all__ = ["ChildJob", "ChildRuntime", "name_process", "run_child"]

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
#: What ``ps``/``top`` show for a child running a program (the server is ``llm3d-forksrv``).
CHILD_NAME = b"llm3d-program"
_EXIT_NO_RESULT = 70


@dataclass(frozen=True)
class ChildRuntime:
    """What the server prepares once and every child shares (built before any fork)."""

    allowed_imports: frozenset[str]
    modules: Mapping[str, types.ModuleType]  # name -> module or facade a program may import
    scene_arrays: Callable[[], tuple[np.ndarray, np.ndarray]]
    memory_mb: int
    cpu_seconds: int
    max_open_files: int
    max_file_mb: int
    max_vertices: int
    readable: tuple[str, ...] = ()  # paths a child may read (worker.sandbox.landlock)
    libc: ctypes.CDLL | None = None
    seccomp: PreparedFilter | None = None  # built once, installed by each child
    holds_capabilities: bool = True  # False once the server is known to hold none


@dataclass
class ChildJob:
    """One program and the descriptors the server opened for it."""

    code: str
    workdir: str
    stdout_fd: int
    stderr_fd: int
    result_fd: int
    server_fds: Sequence[int] = field(default_factory=list)
    policy: bool = True
    server_pid: int = 0


def name_process(libc: ctypes.CDLL | None, name: bytes) -> None:
    """Set the name ``ps``, ``top`` and ``perf`` show for this process (15 bytes at most)."""
    if libc is not None:
        libc.prctl(_PR_SET_NAME, name, 0, 0, 0)


def _apply_limits(runtime: ChildRuntime) -> dict[str, str]:
    """Lower the rlimits; return a note for each one the OS refused."""
    notes: dict[str, str] = {}
    mib = 1 << 20
    limits = {
        "RLIMIT_AS": (runtime.memory_mb * mib, runtime.memory_mb * mib),
        "RLIMIT_CPU": (runtime.cpu_seconds, runtime.cpu_seconds + 5),
        "RLIMIT_NOFILE": (runtime.max_open_files, runtime.max_open_files),
        "RLIMIT_FSIZE": (runtime.max_file_mb * mib, runtime.max_file_mb * mib),
        "RLIMIT_CORE": (0, 0),
    }
    for name, (soft, hard) in limits.items():
        which = getattr(resource, name)
        try:
            _, current_hard = resource.getrlimit(which)
            if current_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, current_hard), min(hard, current_hard)
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError) as exc:
            notes[f"rlimit.{name}"] = f"not applied: {exc}"
    return notes


def _write_all(fd: int, pieces: Sequence[bytes]) -> None:
    for piece in pieces:
        view = memoryview(piece)
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _prepare_process(job: ChildJob, runtime: ChildRuntime) -> None:
    os.setpgid(0, 0)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if runtime.libc is not None:
        runtime.libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    name_process(runtime.libc, CHILD_NAME)
    if job.server_pid and os.getppid() != job.server_pid:
        os._exit(_EXIT_NO_RESULT)  # the server died before the death signal was armed
    for fd in job.server_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    os.dup2(job.stdout_fd, 1)
    os.dup2(job.stderr_fd, 2)
    os.close(job.stdout_fd)
    os.close(job.stderr_fd)
    # Line-buffered: what a program printed before a timeout or a crash still reaches the tail.
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace", line_buffering=True
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace", line_buffering=True
    )
    os.chdir(job.workdir)


def _run_program(job: ChildJob, runtime: ChildRuntime) -> tuple[dict[str, Any], list[bytes]]:
    header: dict[str, Any] = {"outcome": "ok"}
    namespace: dict[str, Any] = {"__name__": "__main__"}
    if job.policy:
        namespace["__builtins__"] = restricted_builtins(runtime.modules)
    start = time.perf_counter()
    try:
        compiled = compile(job.code, PROGRAM_FILENAME, "exec", dont_inherit=True)
        exec(compiled, namespace)
    except BaseException as exc:  # the program's failure, whatever it is, is its result
        header["outcome"] = "exception"
        header["error"] = describe_error(exc, memory_mb=runtime.memory_mb)
        header["program_s"] = time.perf_counter() - start
        return header, []
    header["program_s"] = time.perf_counter() - start
    try:
        vertices, faces = runtime.scene_arrays()
        vertices = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
        faces = np.asarray(faces, dtype=np.int32).reshape(-1, 3)
    except BaseException as exc:
        header["outcome"] = "exception"
        header["error"] = "the scene could not be read: " + describe_error(exc)
        return header, []
    header["extract_s"] = time.perf_counter() - start - header["program_s"]
    header["n_vertices"], header["n_faces"] = len(vertices), len(faces)
    if len(vertices) > runtime.max_vertices:
        return header, []  # degenerate: the counts say so, the arrays stay here
    specs, blobs = encode_arrays({"vertices": vertices, "faces": faces})
    header["arrays"] = specs
    return header, blobs


def run_child(job: ChildJob, runtime: ChildRuntime) -> NoReturn:
    """The body of a forked child: never returns, always ``os._exit``\\ s."""
    code = _EXIT_NO_RESULT
    try:
        _prepare_process(job, runtime)
        notes = _apply_limits(runtime)
        if runtime.holds_capabilities:
            kept = drop_capabilities(runtime.libc)
            if kept is not None:
                notes["capabilities"] = kept
        not_confined = restrict_filesystem(job.workdir, runtime.readable, runtime.libc)
        if not_confined is not None:
            notes["landlock"] = not_confined
        refused = forbid_new_processes(runtime.libc, runtime.seccomp)
        if refused is not None:
            notes["seccomp"] = refused
        header, blobs = _run_program(job, runtime)
        header["diagnostics"] = notes
        with contextlib.suppress(BaseException):  # a broken stream must not lose the result
            sys.stdout.flush()
            sys.stderr.flush()
            if runtime.libc is not None:
                runtime.libc.fflush(None)  # Blender's own C-level prints
        _write_all(job.result_fd, encode_frame(header, *blobs))
        code = 0
    finally:
        os._exit(code)
