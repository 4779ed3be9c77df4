"""The add-on's sandbox: generated programs run out of the artist's process (no ``bpy`` here).

Untrusted programs never run inside the artist's Blender. :class:`Sandbox` runs each one in a
**separate, background Blender** and hands back only its mesh (:class:`worker.types.ExecResult`:
vertices and triangles), which :mod:`addon.runner` builds into the scene on the main thread.

On Linux it is the reward farm's own sandbox (DESIGN §2): one fork server
(:class:`worker.execution.executor.Executor`) per Blender session, started lazily at the first run,
jailed by bubblewrap where it works here (own PID, network, IPC and mount namespaces,
read-only binds of Blender/Python and the add-on's code only, a private ``/tmp``, an
allow-listed environment), dropping root, and forking one child per program with seccomp,
Landlock and rlimits. The time limit is enforced by killing the child's process group, so a
loop inside C (``10**(10**9)``) cannot hold Blender, and every program starts from the warm
server's state: whatever it changes (``math.pi = 3``) dies with its child.

Elsewhere (Windows, macOS: no fork server there) each program gets a Blender process of its
own (``_oneshot.py``), with the same policy and safe builtins, an allow-listed environment and
a hard kill of its process group at the time limit, but no jail: :meth:`Sandbox.layers` and
the panel say so.

How the background Blender is started (:func:`server_runner`): with the ``bpy`` wheel
(tests, scripts) ``bpy.app.binary_path`` is empty and ``python -m`` works; inside the Blender
application ``sys.executable`` cannot ``import bpy``, so Blender itself is started in
background mode with ``_server_boot.py``, which runs the module named after ``--``.

:meth:`Sandbox.run` blocks: call it from a worker thread (:mod:`addon.jobs` does), never from
Blender's main thread.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llm3d.config import ExecutorConfig
from llm3d.schemas import ExecStatus
from worker.execution.executor import Executor
from worker.sandbox.jail import server_environment
from worker.types import ExecResult

from ._bundle import VENDOR

__all__ = [
    "BOOTSTRAP",
    "ONESHOT",
    "Sandbox",
    "describe_layers",
    "get_sandbox",
    "kill_tree",
    "script_runner",
    "server_runner",
    "shutdown",
    "start_background",
]

logger = logging.getLogger(__name__)

ADDON_DIR = Path(__file__).resolve().parent
#: The ``--python`` script that runs a module by name inside a background Blender.
BOOTSTRAP = ADDON_DIR / "_server_boot.py"
#: The one-program runner of the fallback (no fork server on this platform).
ONESHOT = ADDON_DIR / "_oneshot.py"
#: The largest time limit the preferences allow; the CPU-seconds rlimit sits above it, so the
#: wall-clock limit is what stops a program.
MAX_TIMEOUT_S = 3600
#: How long a background Blender may take to start (import Blender, reset the scene).
STARTUP_TIMEOUT_S = 120.0
#: How often a waiting run looks at its cancel event.
CANCEL_POLL_S = 0.1
#: Top-level modules the fork server imports beside Blender's own (``llm3d.config``'s stack).
SERVER_DEPENDENCIES = (
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "typing_extensions",
    "annotated_types",
    "typing_inspection",
    "dotenv",
)

Mode = Literal["auto", "fork_server", "subprocess"]


def fork_server_works_here() -> bool:
    """True where the fork server can run: Linux (``fork`` and ``pidfd_open``)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(os, "pidfd_open")


def blender_binary() -> str:
    """``bpy.app.binary_path``: the Blender application, empty for the ``bpy`` wheel."""
    try:
        import bpy
    except ImportError:  # plain Python (a unit test of this module)
        return ""
    return str(bpy.app.binary_path or "")


def server_runner(binary_path: str, executable: str = sys.executable) -> list[str]:
    """The command prefix that runs a Python module by name in a background Blender.

    Parameters
    ----------
    binary_path : str
        ``bpy.app.binary_path``; empty with the ``bpy`` wheel, whose Python imports ``bpy``.
    executable : str
        ``sys.executable`` (used only with the wheel).
    """
    if not binary_path:
        return [executable, "-m"]
    return [
        binary_path,
        "-b",  # background: no window
        "--factory-startup",  # none of the artist's preferences, add-ons or startup file
        "--disable-autoexec",
        "--offline-mode",
        "--python",
        str(BOOTSTRAP),
        "--",
    ]


def script_runner(binary_path: str, executable: str = sys.executable) -> list[str]:
    """The command prefix that runs a Python *script* (``_oneshot.py``) in a background Blender."""
    if not binary_path:
        return [executable]
    return server_runner(binary_path, executable)  # the bootstrap runs a ``.py`` as a script


def _site_dirs(modules: Sequence[str]) -> list[str]:
    """Directories holding ``modules`` that are not part of this Python's installation.

    Inside the Blender application ``pydantic`` comes from the extension wheels' site
    directory, which a background Blender started with ``--factory-startup`` does not search.
    """
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found: list[str] = []
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
            continue
        origin = Path(spec.origin).resolve()
        site = origin.parent.parent if origin.name == "__init__.py" else origin.parent
        if any(site == p or site.is_relative_to(p) for p in prefixes):
            continue
        if str(site) not in found:
            found.append(str(site))
    return found


def code_paths() -> list[str] | None:
    """What the fork server gets on ``PYTHONPATH`` (and the jail binds).

    The built extension: its ``vendor/`` folder (``bpy_lib``, the ``worker`` modules of the
    sandbox, ``llm3d.config``) and the site directory of the bundled wheels. A source
    checkout: None, the repository's packages ``worker``/``bpy_lib``/``llm3d`` only.
    """
    if not VENDOR.is_dir():
        return None
    return [str(VENDOR), *_site_dirs(SERVER_DEPENDENCIES)]


def sandbox_config(**overrides: Any) -> ExecutorConfig:
    """The executor settings of the add-on: the farm's limits, two programs at a time."""
    values: dict[str, Any] = {
        "timeout_s": 60.0,
        "servers": 1,
        "children_per_server": 2,  # a Generate in one scene and a Run in another
        "queue_size": 8,
        "cpu_seconds": MAX_TIMEOUT_S + 5,
        "jail": "auto",
        "huge_pages": False,  # one program at a time: a faster start beats cheaper forks
    }
    values.update(overrides)
    return ExecutorConfig(**values)


def _infra(error: str, seconds: float = 0.0) -> ExecResult:
    return ExecResult(status=ExecStatus.INFRA_ERROR, error=error, seconds=seconds)


class Sandbox:
    """Runs programs out of this process; one per Blender session (see :func:`get_sandbox`).

    Parameters
    ----------
    mode : str
        ``fork_server`` (Linux: the farm's sandbox), ``subprocess`` (a Blender per program)
        or ``auto`` (the first where it works).
    config : ExecutorConfig, optional
        Limits; :func:`sandbox_config` when omitted.
    policy : bool
        **Tests only.** False runs programs without the AST policy and with full builtins,
        standing for a program that escaped the language layer: the process layers must
        still hold. Never exposed to artists.
    runner : list of str, optional
        The fork server's command prefix; :func:`server_runner` when omitted.
    """

    def __init__(
        self,
        *,
        mode: Mode = "auto",
        config: ExecutorConfig | None = None,
        policy: bool = True,
        runner: Sequence[str] | None = None,
    ) -> None:
        if mode == "auto":
            mode = "fork_server" if fork_server_works_here() else "subprocess"
        self.mode: Literal["fork_server", "subprocess"] = mode
        self.config = config if config is not None else sandbox_config()
        self.policy = policy
        binary = blender_binary()
        self.binary = binary
        self.runner = list(runner) if runner is not None else server_runner(binary)
        self.code_paths = code_paths()
        self._lock = threading.Lock()
        self._executor: Executor | None = None
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self.started_s: float | None = None  # how long the last server start took

    # -- state ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran; a closed sandbox runs nothing more."""
        return self._closed

    @property
    def running(self) -> bool:
        """A background server is up (always False for ``subprocess``)."""
        executor = self._executor
        return executor is not None and executor.server_pid is not None

    def pids(self) -> list[int]:
        """Every process of this sandbox on this machine (server, jail, children, one-shots)."""
        found: list[int] = []
        executor = self._executor
        server = getattr(executor, "_server", None) if executor is not None else None
        proc = getattr(server, "proc", None)
        if proc is not None and proc.poll() is None:
            found.extend(_descendants(proc.pid))
        for one in list(self._procs):
            if one.poll() is None:
                found.extend(_descendants(one.pid))
        return found

    def layers(self) -> str:
        """One line for the panel: where programs run and which isolation layers hold."""
        if self.mode == "subprocess":
            return (
                f"Sandbox: a background Blender per program, killed at the time limit "
                f"(no jail: the fork server needs Linux, this is {sys.platform})"
            )
        executor = self._executor
        info = executor.server_info.get("diagnostics", {}) if executor is not None else {}
        if not info:
            return "Sandbox: background Blender, separate process (starts at the first run)"
        if info.get("jail") == "bubblewrap":
            return "Sandbox: bubblewrap jail, separate process, no network, unprivileged"
        network = "no network" if "isolated" in str(info.get("network", "")) else "network open"
        return f"Sandbox: separate process, no jail (bubblewrap unavailable), {network}"

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background server now (blocks: a worker thread only). No-op without one."""
        if self.mode == "fork_server":
            self._fork_server().start()

    def _fork_server(self) -> Executor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the sandbox is closed (the add-on was disabled)")
            if self._executor is None:
                self._executor = Executor(
                    self.config,
                    policy=self.policy,
                    runner=self.runner,
                    code_paths=self.code_paths,
                    # the bootstrap, when the server starts through it (the Blender application)
                    extra_readable=[str(BOOTSTRAP)] if str(BOOTSTRAP) in self.runner else (),
                )
            return self._executor

    def run(
        self, code: str, timeout_s: float, *, cancel: threading.Event | None = None
    ) -> ExecResult:
        """Run one program out of this process and wait for its result (never raises).

        Call from a worker thread: it blocks for the program's run (and, the first time, the
        server's start-up, about a second or two). Setting ``cancel`` kills the program
        within a tenth of a second (its result is then ``infra_error``, "cancelled"); the
        server stays up for the next run.
        """
        timeout = min(max(float(timeout_s), 0.1), float(MAX_TIMEOUT_S))
        if self._closed:
            return _infra("the sandbox is closed (the add-on was disabled); run again")
        if self.mode == "subprocess":
            return self._run_subprocess(code, timeout, cancel)
        try:
            executor = self._fork_server()
            if not self.running:
                begin = time.perf_counter()
                executor.start()
                self.started_s = time.perf_counter() - begin
        except (RuntimeError, TimeoutError, OSError) as exc:
            return _infra(f"the background Blender could not start: {exc}")
        future = executor.submit(code, timeout_s=timeout)
        while True:
            try:
                return future.result(timeout=CANCEL_POLL_S)
            except FutureTimeout:
                if cancel is not None and cancel.is_set():
                    executor.cancel(future)  # kills its process group; answers at once
                    cancel = None  # ask once, then wait for that answer

    def _run_subprocess(
        self, code: str, timeout_s: float, cancel: threading.Event | None = None
    ) -> ExecResult:
        """The fallback: one background Blender for this program, killed at the limit."""
        begin = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="llm3d-run-") as tmp:
            run_dir = Path(tmp)
            (run_dir / "program.py").write_text(code, encoding="utf-8", errors="surrogatepass")
            options = {
                "allowed_imports": list(self.config.allowed_imports),
                "max_code_bytes": self.config.max_code_bytes,
                "policy": self.policy,
            }
            command = [*script_runner(self.binary), str(ONESHOT), tmp, json.dumps(options)]
            env = server_environment(self.code_paths or [str(_repo_root())], tmpdir=tmp)
            with (run_dir / "output.log").open("wb") as log:
                try:
                    proc = start_background(command, cwd=tmp, env=env, log=log)
                except OSError as exc:
                    return _infra(f"the background Blender could not start: {exc}")
                with self._lock:
                    if self._closed:
                        kill_tree(proc)
                        return _infra("the sandbox is closed (the add-on was disabled)")
                    self._procs.add(proc)
                try:
                    status = _wait_program(proc, run_dir / "started", timeout_s, cancel)
                finally:
                    kill_tree(proc)
                    with self._lock:
                        self._procs.discard(proc)
            seconds = time.monotonic() - begin
            output = (run_dir / "output.log").read_bytes()[-self.config.output_tail_bytes :]
            tail = output.decode("utf-8", errors="replace")
            if status == "timeout":
                return ExecResult(
                    status=ExecStatus.TIMEOUT,
                    error=f"the program did not finish within {timeout_s:g} s and was killed",
                    seconds=seconds,
                    stdout=tail,
                )
            if status == "no_start":
                return _infra(f"the background Blender did not start: {tail[-300:]}", seconds)
            if status == "cancelled":
                return _infra("cancelled by the caller before it finished", seconds)
            return _read_oneshot(run_dir, self.config, seconds, tail)

    # -- shutting down -------------------------------------------------------------------

    def close(self, *, wait: bool = True) -> None:
        """Stop the background server and every program still running (idempotent).

        A program in flight then comes back as ``infra_error``. Called on unregister and when
        Blender exits (``wait``: returns once the processes are gone; a server still starting
        is waited for first, about a second); ``wait=False`` stops them from a thread.
        """
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            procs = list(self._procs)
        if not wait:
            thread = threading.Thread(
                target=_stop, args=(executor, procs), name="llm3d-sandbox-stop", daemon=True
            )
            thread.start()
            return
        _stop(executor, procs)


def _stop(executor: Executor | None, procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        kill_tree(proc)
    if executor is not None:
        executor.close()


def _repo_root() -> Path:
    return ADDON_DIR.parent


def _new_group() -> dict[str, Any]:
    """``Popen`` arguments that start a process in a group of its own (killed as one)."""
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def start_background(
    command: list[str], *, cwd: str, env: dict[str, str], log: Any
) -> subprocess.Popen[bytes]:
    """A background Blender (or helper) in a group of its own, no stdin, output to ``log``.

    Raises
    ------
    OSError
        When it cannot be started (no Blender binary).
    """
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd, env=env, **_new_group()
    )


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` and its process group (POSIX); reap it."""
    if proc.poll() is None:
        if os.name == "posix":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _wait_program(
    proc: subprocess.Popen[bytes],
    started: Path,
    timeout_s: float,
    cancel: threading.Event | None = None,
) -> Literal["exited", "timeout", "no_start", "cancelled"]:
    """Wait for the start-up (``started`` appears), then for the program's time limit."""
    start_deadline = time.monotonic() + STARTUP_TIMEOUT_S
    deadline: float | None = None
    while True:
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if proc.poll() is not None:
            return "exited"
        now = time.monotonic()
        if deadline is None and started.exists():
            deadline = now + timeout_s  # the limit counts the program, not the start-up
        if deadline is None and now > start_deadline:
            return "no_start"
        if deadline is not None and now > deadline:
            return "timeout"
        time.sleep(0.02)


def _read_oneshot(run_dir: Path, config: ExecutorConfig, seconds: float, tail: str) -> ExecResult:
    """Turn what ``_oneshot.py`` left in ``run_dir`` into an :class:`ExecResult`."""
    try:
        header = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ExecResult(
            status=ExecStatus.EXEC_FAILED,
            error="the program ended its Blender before it finished",
            seconds=seconds,
            stdout=tail,
        )
    status = ExecStatus(str(header.get("status", "exec_failed")))
    error = header.get("error")
    if status is not ExecStatus.OK:
        return ExecResult(status=status, error=str(error), seconds=seconds, stdout=tail)
    try:
        vertices = np.load(run_dir / "vertices.npy", allow_pickle=False)
        faces = np.load(run_dir / "faces.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return _infra(f"the program's mesh could not be read back ({exc})", seconds)
    if len(faces) < config.min_faces:
        status, error = ExecStatus.NO_GEOMETRY, f"the program made {len(faces)} faces"
    elif len(vertices) > config.max_vertices:
        status = ExecStatus.DEGENERATE
        error = f"the program made {len(vertices)} vertices (at most {config.max_vertices})"
    return ExecResult(
        status=status,
        vertices=vertices.astype(np.float32, copy=False).reshape(-1, 3),
        faces=faces.astype(np.int32, copy=False).reshape(-1, 3),
        error=error,
        seconds=seconds,
        stdout=tail,
    )


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux ``/proc``; just ``pid`` elsewhere)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        current = queue.pop(0)
        found.append(current)
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{current}/task").iterdir():
                queue.extend(int(c) for c in (task / "children").read_text().split())
    return found


# -- the session's sandbox -------------------------------------------------------------------

_SANDBOX: list[Sandbox] = []
_SANDBOX_LOCK = threading.Lock()


def get_sandbox() -> Sandbox:
    """This Blender session's sandbox (a new one after :func:`shutdown`); starts nothing."""
    with _SANDBOX_LOCK:
        if not _SANDBOX or _SANDBOX[0].closed:
            _SANDBOX[:] = [Sandbox()]
        return _SANDBOX[0]


def current_sandbox() -> Sandbox | None:
    """The session's sandbox if one exists and is open (for the panel: creates nothing)."""
    return _SANDBOX[0] if _SANDBOX and not _SANDBOX[0].closed else None


def shutdown() -> None:
    """Stop the session's sandbox and its processes (unregister, Blender exit)."""
    with _SANDBOX_LOCK:
        sandboxes, _SANDBOX[:] = list(_SANDBOX), []
    for sandbox in sandboxes:
        sandbox.close()


def describe_layers(trusted: bool) -> str:
    """The panel's line: which layers stand between a program and the artist's Blender."""
    if trusted:
        return "Trusted: programs run inside Blender, unchecked"
    sandbox = current_sandbox()
    if sandbox is not None:
        return sandbox.layers()
    if not fork_server_works_here():
        return Sandbox(mode="subprocess").layers()
    return "Sandbox: background Blender, separate process (starts at the first run)"


atexit.register(shutdown)
