"""Real processes for the farm's tests: ``llm3d serve``, ``llm3d worker``, a private Redis.

Everything here starts the same commands the Docker images run, with the configuration
passed the same way (``LLM3D_`` environment variables), so the tests exercise them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
# the console script the Docker images run (installed by `pip install -e .`)
LLM3D = [str(Path(sys.executable).with_name("llm3d"))]
# The shared Redis of this machine (or CI's service); tests use their own db number.
TEST_REDIS_URL = os.environ.get("LLM3D_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")

# Small, fast settings for every test service: short program limits, few samples.
BASE_ENV = {
    "LLM3D_LOG_LEVEL": "WARNING",
    "LLM3D_EXECUTOR__TIMEOUT_S": "10",
    "LLM3D_EXECUTOR__SERVERS": "2",
    "LLM3D_METRICS__TRAIN_POINTS": "2000",
    "LLM3D_METRICS__EVAL_POINTS": "4000",
    "LLM3D_API__MAX_ITEMS": "300",
    "LLM3D_API__MAX_REQUEST_MB": "1",
    "LLM3D_FARM__TASK_MARGIN_S": "5",
    "LLM3D_FARM__VISIBILITY_TIMEOUT_S": "40",
    "LLM3D_FARM__RESULT_TIMEOUT_S": "240",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LLM3D_")}
    env.update(BASE_ENV)
    env.update(extra)
    # the repository first; a caller's own entries after it (tests/helpers/hide_modules)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), extra.get("PYTHONPATH")) if p)
    return env


def redis_available(url: str = TEST_REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(
    not redis_available(), reason=f"no Redis at {TEST_REDIS_URL} (set LLM3D_TEST_REDIS_URL)"
)
#: The backends a farm fixture runs on: inline, and celery (a real worker) where Redis answers.
FARM_BACKENDS = [
    pytest.param("inline", marks=[pytest.mark.blender, pytest.mark.slow]),
    pytest.param(
        "celery", marks=[pytest.mark.blender, pytest.mark.redis, pytest.mark.slow, needs_redis]
    ),
]


@dataclass
class Proc:
    """A child process in its own process group, with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = open(self.log, "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the worker, its pool, its fork servers)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
        if self.alive():
            self.kill(signal.SIGKILL)
        # children that outlived their leader (fork servers) go with the group
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Farm:
    """A running reward service (and its workers) for one test module."""

    backend: str
    url: str
    env: dict[str, str]
    api: Proc
    tmp: Path
    workers: list[Proc] = field(default_factory=list)

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=300, **kw)  # type: ignore[arg-type]

    def start_worker(self, concurrency: int = 2) -> Proc:
        n = len(self.workers)
        worker = Proc(
            f"worker{n}",
            [*LLM3D, "worker", "--concurrency", str(concurrency)],
            self.env,
            self.tmp / f"worker{n}.log",
        ).start()
        self.workers.append(worker)
        return worker

    def wait_workers(self, count: int, timeout: float = 90) -> None:
        """Until ``count`` workers answer a Celery ping."""
        from llm3d.config import load_config
        from worker.farm.celery_app import make_celery

        app = make_celery(load_config(environ=self.env))
        deadline = time.monotonic() + timeout
        names: list[str] = []
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=1.0) or []
            names = [n for r in replies for n in r]
            if len(names) >= count:
                app.close()
                return
            for w in self.workers:
                if not w.alive() and w.proc is not None and w.proc.returncode not in (None, -9):
                    raise RuntimeError(f"{w.name} exited:\n{w.tail()}")
        app.close()
        raise RuntimeError(f"only {names} of {count} workers answered:\n{self.workers[-1].tail()}")

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.api.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in [self.api, *self.workers])


def wait_healthy(url: str, proc: Proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            r = httpx.get(url + "/healthz", timeout=5)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise RuntimeError(f"{url} not healthy after {timeout}s ({last}):\n{proc.tail()}")


def start_farm(
    backend: str,
    tmp: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    workers: int = 1,
    concurrency: int = 2,
    redis_url: str = TEST_REDIS_URL,
) -> Farm:
    """``llm3d serve`` on ``backend`` (+ ``workers`` ``llm3d worker`` s for celery)."""
    port = free_port()
    tag = uuid.uuid4().hex[:8]
    env = clean_env(
        {
            "LLM3D_API__HOST": "127.0.0.1",
            "LLM3D_API__PORT": str(port),
            "LLM3D_API__BACKEND": backend,
            "LLM3D_FARM__REDIS_URL": redis_url,
            # a queue and keys of our own: farms of other tests (or runs, or xdist
            # workers) sharing the db never see each other's messages, cache or jobs
            "LLM3D_FARM__QUEUE": f"blender-test-{tag}",
            "LLM3D_FARM__NAMESPACE": f"llm3d-test-{tag}",
            **(extra_env or {}),
        }
    )
    api = Proc("api", [*LLM3D, "serve"], env, tmp / "api.log")
    farm = Farm(backend, f"http://127.0.0.1:{port}", env, api, tmp)
    try:
        if backend == "celery":
            for _ in range(workers):
                farm.start_worker(concurrency)
        api.start()
        if backend == "celery":
            farm.wait_workers(workers)
        wait_healthy(farm.url, api)
    except BaseException:
        farm.stop()
        raise
    return farm


@contextlib.contextmanager
def private_redis(tmp: Path) -> Iterator[tuple[str, Proc]]:
    """A ``redis-server`` of our own on a free port, persisting to ``tmp`` (restartable)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    argv = [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(tmp),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ]
    proc = Proc("redis", argv, clean_env({}), tmp / "redis.log").start()
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_available(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"private redis did not start:\n{proc.tail()}")
        time.sleep(0.05)
    try:
        yield url, proc
    finally:
        proc.stop()
