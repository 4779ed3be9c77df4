"""The `llm3d` command as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LLM3D = shutil.which("llm3d", path=str(Path(sys.executable).parent)) or "llm3d"
REPO = Path(__file__).resolve().parents[2]
REDIS_DOWN = "redis://127.0.0.1:1/0"  # port 1: nothing listens, connection refused at once


def llm3d(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("LLM3D_")}
    base.update({"COLUMNS": "200", "NO_COLOR": "1"})
    base.update(env or {})
    return subprocess.run(
        [LLM3D, *args], capture_output=True, text=True, env=base, cwd=cwd, timeout=180, check=False
    )


def test_help_lists_commands() -> None:
    proc = llm3d("--help")
    assert proc.returncode == 0
    assert "doctor" in proc.stdout and "config" in proc.stdout


def test_config_show_table_names_sources(tmp_path: Path) -> None:
    override = tmp_path / "mine.yaml"
    override.write_text("seed: 7\n")
    proc = llm3d(
        "config", "show", "--config", str(override), env={"LLM3D_METRICS__TRAIN_POINTS": "5000"}
    )
    assert proc.returncode == 0, proc.stderr
    lines = {
        line.split("│")[1].strip(): line
        for line in proc.stdout.splitlines()
        if line.count("│") >= 3
    }
    assert "7" in lines["seed"] and "mine.yaml" in lines["seed"]
    assert (
        "5000" in lines["metrics.train_points"]
        and "LLM3D_METRICS__TRAIN_POINTS" in lines["metrics.train_points"]
    )
    assert "default.yaml" in lines["metrics.eval_points"]


def test_config_show_json_hides_the_token() -> None:
    proc = llm3d("config", "show", "--json", env={"LLM3D_API_TOKEN": "hunter2"})
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["config"]["metrics"]["train_points"] == 10000
    assert payload["config"]["api"]["token"] == "**********"
    assert payload["sources"]["api.token"] == "env LLM3D_API_TOKEN"
    assert "hunter2" not in proc.stdout + proc.stderr


def test_config_error_exits_2_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics:\n  train_point: 5\n")
    proc = llm3d("config", "show", "--config", str(bad))
    assert proc.returncode == 2
    assert "metrics.train_point" in proc.stderr and "train_points" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_doctor_fails_when_redis_is_down_for_the_celery_backend() -> None:
    proc = llm3d(
        "doctor", env={"LLM3D_API__BACKEND": "celery", "LLM3D_FARM__REDIS_URL": REDIS_DOWN}
    )
    assert proc.returncode == 1, proc.stdout
    redis_line = next(
        line for line in proc.stdout.splitlines() if line.strip("│ ").startswith("redis")
    )
    assert "FAIL" in redis_line
    assert "127.0.0.1:1" in proc.stdout
    assert "LLM3D_FARM__REDIS_URL" in proc.stdout  # the fix is printed
    assert "FAILED" in proc.stdout


def test_doctor_json_reports_each_check() -> None:
    proc = llm3d(
        "doctor",
        "--json",
        env={"LLM3D_API__BACKEND": "celery", "LLM3D_FARM__REDIS_URL": REDIS_DOWN},
    )
    assert proc.returncode == 1
    payload = json.loads(proc.stdout)
    checks = {c["name"]: c for c in payload["checks"]}
    assert payload["ok"] is False
    assert checks["redis"]["status"] == "FAIL" and "redis-server" in checks["redis"]["fix"]
    assert checks["python"]["status"] == "OK"
    assert checks["blender"]["status"] == "OK" and "4.2.0" in checks["blender"]["detail"]
    assert {"disk", "extra:metrics", "extra:farm"} <= set(checks)


def test_doctor_passes_on_the_embedded_default_without_redis() -> None:
    """The inline backend needs no Redis: its absence is a warning, not a failure."""
    proc = llm3d("doctor", "--json", env={"LLM3D_FARM__REDIS_URL": REDIS_DOWN})
    payload = json.loads(proc.stdout)
    checks = {c["name"]: c for c in payload["checks"]}
    assert checks["redis"]["status"] == "WARN"
    assert proc.returncode == 0 and payload["ok"] is True


@pytest.mark.redis
def test_doctor_ok_with_the_real_redis() -> None:
    proc = llm3d("doctor", "--json", env={"LLM3D_API__BACKEND": "celery"})
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["redis"]["status"] == "OK", checks["redis"]
    assert proc.returncode == 0


FAILING_WORKER = """
import sys

from celery import Celery
from celery.exceptions import WorkerShutdown
from celery.worker.consumer import Consumer


class Failing(Consumer):
    def start(self):
        if sys.argv[1] == "shutdown":
            raise WorkerShutdown(0)  # what a requested (warm) shutdown raises
        raise RuntimeError("the consumer died")


app = Celery("failing", broker="memory://")
app.conf.worker_consumer = "failing_worker:Failing"

if __name__ == "__main__":
    from llm3d.commands.farm import _run_celery

    sys.exit(_run_celery(["--app", "failing_worker:app", "worker", "--pool", "solo"]))
"""


@pytest.mark.parametrize(("how", "status"), [("shutdown", 0), ("crash", 1)])
def test_worker_exits_with_the_celery_workers_status(tmp_path: Path, how: str, status: int) -> None:
    """`llm3d worker` runs Celery's worker through ``_run_celery``, which keeps its exit status:
    a worker that died ("Unrecoverable error") must not exit 0 like a requested shutdown."""
    (tmp_path / "failing_worker.py").write_text(FAILING_WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "failing_worker.py", how],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == status, proc.stderr[-3000:]
    assert ("Unrecoverable error" in proc.stderr) is (status != 0), proc.stderr[-3000:]
