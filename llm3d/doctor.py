"""Environment checks behind ``llm3d doctor``: each one says OK, WARN or FAIL, and how to fix it.

FAIL means the configured main job cannot run; WARN means an optional part is missing.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from llm3d.config import Config

Status = Literal["OK", "WARN", "FAIL"]

#: Optional extras of pyproject.toml and the modules that prove each is installed.
EXTRAS: dict[str, tuple[str, ...]] = {
    "metrics": ("trimesh", "pykdtree", "scipy"),
    "farm": ("celery", "redis", "fastapi", "uvicorn", "httpx"),
    "data": ("datasets",),
    "training": ("torch", "transformers", "peft"),
    "tinker": ("tinker",),
    "modal": ("modal",),
    "env": ("verifiers",),
    "dev": ("pytest", "ruff", "mypy"),
}
BLENDER_VERSION = "4.2.0"
MIN_FREE_GIB = 2.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def check_python() -> Check:
    version = platform.python_version()  # not sys.version_info: mypy would fold the test away
    if version.split(".")[:2] == ["3", "11"]:
        return Check("python", "OK", f"Python {version} ({sys.executable})")
    return Check(
        "python",
        "FAIL",
        f"Python {version}; llm3d needs 3.11",
        "Create the environment with Python 3.11 (Blender 4.2's bpy wheel exists for 3.11 only): "
        "python3.11 -m venv .venv",
    )


def check_blender(timeout_s: float = 120.0) -> Check:
    """Import ``bpy`` in a fresh interpreter (so the import time is real) and time it."""
    fix = f"pip install -e '.[blender]'  (installs bpy=={BLENDER_VERSION}, about 520 MB)"
    if importlib.util.find_spec("bpy") is None:
        return Check("blender", "FAIL", "bpy (Blender as a Python module) is not installed", fix)
    probe = (
        "import json, time; t = time.perf_counter(); import bpy; "
        "print(json.dumps([bpy.app.version_string, time.perf_counter() - t]))"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Check("blender", "FAIL", f"import bpy did not finish in {timeout_s:.0f} s", fix)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Check(
            "blender",
            "FAIL",
            f"import bpy failed: {last}",
            "Install Blender's system libraries (libxrender1 libxxf86vm1 libxfixes3 libxi6 "
            "libxkbcommon0 libsm6 libgl1), then reinstall: " + fix,
        )
    version, seconds = json.loads(proc.stdout.strip().splitlines()[-1])
    if not str(version).startswith(BLENDER_VERSION):
        return Check(
            "blender",
            "FAIL",
            f"Blender {version} found; llm3d is pinned to {BLENDER_VERSION}",
            f"pip install bpy=={BLENDER_VERSION}",
        )
    return Check("blender", "OK", f"Blender {version} imports in {seconds:.2f} s")


def check_redis(config: Config) -> Check:
    """Ping the configured Redis; only the celery backend needs it."""
    needed = config.api.backend == "celery"
    bad: Status = "FAIL" if needed else "WARN"
    why = "" if needed else " (only the celery backend needs it; the inline backend runs without)"
    url = config.farm.redis_url
    if importlib.util.find_spec("redis") is None:
        return Check(
            "redis", bad, "the redis client is not installed" + why, "pip install -e '.[farm]'"
        )
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        info = client.info("server")
        client.close()
    except Exception as exc:  # connection refused, timeouts, auth: all reported the same way
        return Check(
            "redis",
            bad,
            f"no Redis at {url}: {type(exc).__name__}: {exc}{why}",
            "Start Redis (redis-server --daemonize yes --port 6379) or point LLM3D_FARM__REDIS_URL "
            "at a running one",
        )
    return Check("redis", "OK", f"Redis {info.get('redis_version', '?')} answers at {url}")


def check_disk(config: Config) -> Check:
    path = Path(config.paths.data_dir)
    probe = path if path.exists() else Path.cwd()
    free_gib = shutil.disk_usage(probe).free / 2**30
    if free_gib < MIN_FREE_GIB:
        return Check(
            "disk",
            "FAIL",
            f"{free_gib:.1f} GiB free at {probe.resolve()}; datasets and caches need {MIN_FREE_GIB:.0f}+",
            "Free disk space or set LLM3D_PATHS__DATA_DIR to a larger disk",
        )
    return Check("disk", "OK", f"{free_gib:.1f} GiB free at {probe.resolve()}")


def check_extras() -> list[Check]:
    checks = []
    for extra, modules in EXTRAS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            checks.append(
                Check(
                    f"extra:{extra}",
                    "WARN",
                    f"not installed (missing {', '.join(missing)})",
                    f"pip install -e '.[{extra}]'",
                )
            )
        else:
            checks.append(Check(f"extra:{extra}", "OK", "installed"))
    return checks


def check_sandbox(config: Config) -> Check:
    """Which OS layers the executor gets here (DESIGN §2): the jail and the child's own."""
    import ctypes
    import os

    from llm3d.config import REPO_ROOT
    from worker.sandbox.jail import plan_jail, readable_paths

    readable = readable_paths([str(REPO_ROOT)], repo_root=REPO_ROOT, interpreter=[sys.executable])
    try:
        plan = plan_jail(config.executor.jail, readable)
    except RuntimeError as exc:
        return Check(
            "sandbox", "FAIL", str(exc), "apt-get install bubblewrap, or executor.jail: auto"
        )
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(444, None, 0, 1) if sys.platform.startswith("linux") else -1
    landlock = f"Landlock ABI {abi}" if abi > 0 else "no Landlock"
    seccomp = "seccomp" if platform.machine() in ("x86_64", "aarch64") else "no seccomp filter"
    user = f"uid {config.executor.sandbox_uid}" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    detail = f"{plan.note}; children: {user}, {landlock}, {seccomp}, rlimits"
    if plan.mode == "none" and config.executor.jail == "auto":
        fix = "apt-get install bubblewrap (or run the worker in a container that is the jail)"
        return Check("sandbox", "WARN", detail, fix)
    return Check("sandbox", "OK", detail)


def run_checks(config: Config, *, blender: Callable[[], Check] = check_blender) -> list[Check]:
    """All checks, in the order the report prints them."""
    return [
        check_python(),
        blender(),
        check_sandbox(config),
        check_redis(config),
        check_disk(config),
        *check_extras(),
    ]


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
