"""The operating-system jail around the whole fork server (DESIGN §2), plain Python.

The fork server is started *inside* the jail once, so every child it forks inherits it, and
nothing that knows a ground truth or a secret (metrics, reward, API, Celery) is ever inside.
This module decides how the server is launched; the server and each child then add their
own layers (an unprivileged uid, seccomp, Landlock, rlimits: :mod:`worker.execution.blender_server`,
:mod:`worker.execution.blender_child`).

The jail is bubblewrap (Debian ``bubblewrap``), chosen by ``executor.jail``:

``auto`` (default)
    bubblewrap when it is installed and can make a sandbox on this machine (it is probed once
    per process), otherwise no jail, and every result and ``/healthz`` say so.
``bwrap``
    bubblewrap or nothing: a server that cannot be jailed does not start (``infra_error``).
``none``
    no jail (tests of the layers behind it, or a container that is the jail itself).

What a jailed server sees: its own PID, network, IPC, UTS and cgroup namespaces; a
filesystem of read-only binds of exactly :func:`readable_paths` (the system libraries, the
Python installation and virtual environment, the directories on the server's
``PYTHONPATH``: for this repository only the packages ``worker``, ``bpy_lib`` and ``llm3d``,
never ``data/``, ``runs/`` or ``configs/``), a private ``/tmp`` (a tmpfs of
``executor.memory_mb``: files there are memory), a fresh ``/proc``
of its own namespace and a minimal ``/dev``. Started as root, it keeps only the
capabilities to change its uid, and the server drops to ``executor.sandbox_uid`` before it
imports Blender. The environment is an allow-list (:func:`server_environment`): no token,
key or password ever reaches it.

:func:`plan_launch` gathers all of it for an :class:`~worker.execution.executor.Executor` (jail,
interpreter, environment, readable paths), and :data:`SPAWNER` starts the servers from one
long-lived thread (see :class:`Spawner` for why).
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm3d.config import ExecutorConfig

__all__ = [
    "ENV_ALLOWED",
    "REPO_PACKAGES",
    "SERVER_PROCESS_NAME",
    "SPAWNER",
    "JailPlan",
    "Launch",
    "Spawner",
    "bwrap_arguments",
    "jailed_server_pid",
    "plan_jail",
    "plan_launch",
    "readable_paths",
    "server_environment",
]

logger = logging.getLogger(__name__)

#: Environment variables the server may inherit (locale, thread counts, numeric libraries).
ENV_ALLOWED: frozenset[str] = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "LC_NUMERIC",
        "TZ",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
        "PYTHONHASHSEED",
    }
)

#: The packages of this repository the fork server imports (and so the only ones it sees).
REPO_PACKAGES: tuple[str, ...] = ("worker", "bpy_lib", "llm3d")

#: System paths a jailed Blender needs to load: libraries and the loader's cache.
_SYSTEM_PATHS: tuple[str, ...] = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/localtime",
    # read by the huge-page set-up (worker/execution/hugepages.py) and for the CPU count
    "/sys/kernel/mm/transparent_hugepage",
    "/sys/devices/system/cpu",
)


@dataclass(frozen=True)
class JailPlan:
    """How the fork server is launched.

    Attributes
    ----------
    prefix : list of str
        Put before the server's own command (empty without a jail).
    mode : str
        ``bwrap`` or ``none``.
    note : str
        One line for diagnostics: what is in place, or why nothing is.
    tmpdir : str
        The temporary directory the server will see (``/tmp`` inside the jail).
    """

    prefix: list[str]
    mode: str
    note: str
    tmpdir: str


def _package_dirs(path: Path, repo_root: Path) -> list[Path]:
    if path.resolve() == repo_root.resolve():
        return [repo_root / name for name in REPO_PACKAGES if (repo_root / name).is_dir()]
    return [path]


def readable_paths(
    code_paths: Sequence[str | os.PathLike[str]],
    *,
    repo_root: str | os.PathLike[str],
    interpreter: Sequence[str] = (),
    extra: Iterable[str | os.PathLike[str]] = (),
) -> list[str]:
    """Every path the fork server and its children may read, absolute, existing, deduplicated.

    Parameters
    ----------
    code_paths : sequence of path
        What the server puts on ``PYTHONPATH``. ``repo_root`` itself stands for its packages
        (:data:`REPO_PACKAGES`) only, so ``data/`` beside them stays unreadable.
    repo_root : path
        This repository's root.
    interpreter : sequence of str
        The command prefix that runs the server; the installation of its program is readable.
    extra : iterable of path
        More directories (a Blender installation the add-on runs).
    """
    root = Path(repo_root)
    found: list[Path] = []
    for prefix in (sys.base_prefix, sys.prefix, sys.exec_prefix):
        found.append(Path(prefix))
    if interpreter:
        program = Path(shutil.which(interpreter[0]) or interpreter[0])
        for candidate in (program, program.resolve()):
            # <prefix>/bin/python -> <prefix>
            found.append(
                candidate.parent.parent if candidate.parent.name == "bin" else candidate.parent
            )
    for entry in code_paths:
        found.extend(_package_dirs(Path(entry), root))
    found.extend(Path(p) for p in extra)
    found.extend(Path(p) for p in _SYSTEM_PATHS)
    result: list[str] = []
    for path in found:
        if not path.is_absolute() or not os.path.lexists(path):
            continue
        # a readable subtree already covers what lies below it
        text = os.path.normpath(str(path))
        if text not in result:
            result.append(text)
    return _drop_covered(result)


def _drop_covered(paths: list[str]) -> list[str]:
    kept: list[str] = []
    for path in sorted(paths, key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def server_environment(
    code_paths: Sequence[str | os.PathLike[str]],
    *,
    tmpdir: str,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The fork server's whole environment: :data:`ENV_ALLOWED` and what Python needs.

    Secrets (``LLM3D_API_TOKEN``, cloud keys, passwords) never pass: the server is started
    with this mapping, not a copy of the caller's, so they are not in its memory either.
    """
    source = os.environ if environ is None else environ
    env = {key: value for key, value in source.items() if key in ENV_ALLOWED}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in code_paths)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["HOME"] = tmpdir
    env["TMPDIR"] = tmpdir
    return env


def bwrap_arguments(
    bwrap: str, readable: Sequence[str], *, as_root: bool, tmp_mb: int = 1024
) -> list[str]:
    """The bubblewrap command line that jails the server (see the module docstring)."""
    args = [
        bwrap,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "llm3d-sandbox",
        "--die-with-parent",
        "--new-session",  # no controlling terminal: no TIOCSTI into the caller's shell
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        # files are RAM here: bound them, or a program fills half the machine's memory
        "--size",
        str(tmp_mb << 20),
        "--tmpfs",
        "/tmp",
        "--chdir",
        "/tmp",
    ]
    if as_root:
        # the server keeps only what it needs to become sandbox_uid; it drops them itself
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    # bubblewrap makes missing parents of a bind 0700, which the sandbox user cannot cross
    parents = sorted(
        {str(p) for path in readable for p in Path(path).parents if str(p) != "/"},
        key=lambda p: p.count("/"),
    )
    for parent in parents:
        if not any(parent == r or parent.startswith(r + "/") for r in readable):
            args += ["--perms", "0755", "--dir", parent]
    args += ["--symlink", "/proc/self/mounts", "/etc/mtab"]
    for path in readable:
        if Path(path).is_symlink() and path in ("/lib", "/lib64", "/lib32", "/bin", "/sbin"):
            args += ["--symlink", str(Path(path).readlink()), path]  # merged /usr
        else:
            args += ["--ro-bind", path, path]
    args.append("--")
    return args


@functools.cache
def _probe(command: tuple[str, ...]) -> str | None:
    """Run ``command`` + ``true``-like Python once; None when the jail works, else why not."""
    try:
        done = subprocess.run(
            [*command, sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not run ({exc})"
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).decode("utf-8", errors="replace").strip()
        return f"bubblewrap failed here: {detail.splitlines()[-1] if detail else done.returncode}"
    return None


def plan_jail(mode: str, readable: Sequence[str], *, tmp_mb: int = 1024) -> JailPlan:
    """Choose how to launch the server for ``executor.jail`` = ``mode``.

    Raises
    ------
    RuntimeError
        ``mode`` is ``bwrap`` and bubblewrap is missing or cannot make a sandbox here.
    """
    host_tmp = tempfile.gettempdir()
    if mode == "none":
        return JailPlan([], "none", "no jail (executor.jail is none)", host_tmp)
    if not sys.platform.startswith("linux"):
        note = f"no jail: bubblewrap needs Linux, this is {sys.platform}"
        if mode == "bwrap":
            raise RuntimeError(note)
        return JailPlan([], "none", note, host_tmp)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        note = "no jail: bubblewrap is not installed (apt-get install bubblewrap)"
        if mode == "bwrap":
            raise RuntimeError(note)
        return JailPlan([], "none", note, host_tmp)
    prefix = bwrap_arguments(bwrap, readable, as_root=os.geteuid() == 0, tmp_mb=tmp_mb)
    failure = _probe(tuple(prefix))
    if failure is not None:
        note = f"no jail: {failure}"
        if mode == "bwrap":
            raise RuntimeError(note)
        logger.warning("%s; the fork server runs without it", note)
        return JailPlan([], "none", note, host_tmp)
    note = "bubblewrap: own PID, network, IPC and mount namespaces, read-only binds, private /tmp"
    return JailPlan(prefix, "bwrap", note, "/tmp")


# -- launching ---------------------------------------------------------------------------

#: What the fork server calls itself in /proc/<pid>/comm (worker.execution.blender_server.SERVER_NAME).
SERVER_PROCESS_NAME = b"llm3d-forksrv"


@dataclass(frozen=True)
class Launch:
    """How an Executor starts its servers: jail, interpreter, environment, readable paths."""

    jail: JailPlan
    runner: list[str]
    env: dict[str, str]
    readable: list[str]


def plan_launch(
    config: ExecutorConfig,
    repo_root: Path,
    runner: Sequence[str] | None,
    code_paths: Sequence[str] | None,
    extra_readable: Sequence[str],
) -> Launch:
    runner = list(runner) if runner is not None else [sys.executable, "-m"]
    paths = [str(p) for p in (code_paths if code_paths is not None else [repo_root])]
    readable = readable_paths(paths, repo_root=repo_root, interpreter=runner, extra=extra_readable)
    # what the programs of one server write counts against one program's memory budget
    jail = plan_jail(config.jail, readable, tmp_mb=config.memory_mb)
    env = server_environment(paths, tmpdir=jail.tmpdir)
    return Launch(jail, runner, env, readable)


class Spawner:
    """Starts fork servers from one long-lived thread.

    bubblewrap's ``--die-with-parent`` arms ``PR_SET_PDEATHSIG``, which fires when the
    *thread* that started it ends: a server started from a request's worker thread would be
    killed when that thread retires. This thread lives as long as the process, so a jail dies
    with the process that owns it, and only then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[
            tuple[Future[subprocess.Popen[bytes]], list[str], dict[str, Any]]
        ]
        self._pid = -1

    def _loop(self) -> None:
        while True:
            future, args, kwargs = self._queue.get()
            try:
                future.set_result(subprocess.Popen(args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked copy of this process
                self._queue = queue.SimpleQueue()
                threading.Thread(target=self._loop, name="llm3d-spawner", daemon=True).start()
                self._pid = os.getpid()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._queue.put((future, args, kwargs))
        return future.result()


SPAWNER = Spawner()


def jailed_server_pid(outer: int) -> int | None:
    """The fork server's host pid below a bubblewrap process (found by its process name)."""
    queue = [outer]
    while queue:
        pid = queue.pop(0)
        try:
            with open(f"/proc/{pid}/comm", "rb") as comm:
                if comm.read().strip() == SERVER_PROCESS_NAME:
                    return pid
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                queue.extend(int(c) for c in children.read().split())
        except (OSError, ValueError):
            continue
    return None
