"""What an image contains comes from pyproject.toml, and is enough to score the hard cases.

The Modal image and both Dockerfiles install the project's dependencies with named extras
(never a copied package list). For each distinct set, a fresh venv is made from exactly that
(``pip install '.[extras]'``, then the project's own code on the path, as the images do) and
``tests/docker/image_check.py`` scores a wrong object, a far-off one, one inside another and
an exact copy there, and renders a mesh. The venvs are cached under .cache/image-venvs by
the hash of the requirements they hold (a cold one takes ~1-2 min, bpy is ~520 MB).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "tests" / "docker" / "image_check.py"
HIDE = REPO / "tests" / "helpers" / "hide_modules"
CACHE = REPO / ".cache" / "image-venvs"
DOCKERFILES = {
    "worker": REPO / "docker" / "worker.Dockerfile",
    "api": REPO / "docker" / "api.Dockerfile",
}

pytestmark = pytest.mark.slow


def dockerfile_installs(path: Path) -> list[str]:
    """Every ``pip install`` of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return re.findall(r"pip install ([^&\n]*)", text)


def dockerfile_extras(path: Path) -> tuple[str, ...]:
    """The extras of the one ``pip install ".[...]"`` of a Dockerfile."""
    found = [
        m for line in dockerfile_installs(path) for m in re.findall(r'"\.\[([a-z,]+)\]"', line)
    ]
    assert len(found) == 1, f"{path.name}: expected one pip install of '.[extras]', got {found}"
    return tuple(found[0].split(","))


def image_extras() -> dict[str, tuple[str, ...]]:
    """image name -> the pyproject extras it installs."""
    from worker.farm import modal_app

    extras = {name: dockerfile_extras(path) for name, path in DOCKERFILES.items()}
    extras["modal"] = tuple(modal_app.IMAGE_EXTRAS)
    return extras


def test_every_image_installs_pyproject_extras_and_nothing_by_hand() -> None:
    from worker.farm import modal_app

    for name, path in DOCKERFILES.items():
        for line in dockerfile_installs(path):
            words = [w for w in line.split() if not w.startswith("-")]
            assert words in ([f'".[{",".join(dockerfile_extras(path))}]"'], ["."]), (
                f"{name}: pip installs {words}: name the packages in pyproject.toml instead"
            )
    assert not hasattr(modal_app, "PYTHON_PACKAGES"), "the Modal image lists packages by hand"
    source = Path(modal_app.__file__).read_text()
    assert "pip_install_from_pyproject(str(PYPROJECT)" in source
    assert "uv_pip_install(" not in source and ".pip_install(" not in source
    extras = image_extras()
    assert extras["modal"] == extras["worker"], "Modal and the compose worker run the same code"
    assert "blender" in extras["worker"] and "metrics" in extras["worker"]


def fresh_venv(extras: tuple[str, ...]) -> Path:
    """A venv with pyproject.toml's dependencies and ``extras`` installed, and nothing else."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [
        *project["dependencies"],
        *(r for e in extras for r in project["optional-dependencies"][e]),
    ]
    digest = hashlib.sha256(json.dumps([extras, wanted]).encode())  # what is installed, only
    venv = CACHE / f"{'-'.join(extras)}-{digest.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    spec = f"{REPO}[{','.join(extras)}]"
    # what the Dockerfile's first layer does: the dependencies, then not the project itself
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", spec],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=venv,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    subprocess.run(
        [str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "llm3d"],
        check=True,
        timeout=120,
    )
    (venv / ".complete").write_text(spec)
    return python


def run_check(python: Path, *args: str, hide: str = "") -> dict[str, Any]:
    """image_check.py in that venv, with the project's code (only) on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM3D_", "PYTHON"))}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + str(HIDE) if hide else "")
    env["HIDE_MODULES"] = hide
    env["NUMBA_CACHE_DIR"] = str(CACHE / "numba")
    result = subprocess.run(
        [str(python), "-s", str(CHECK), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=python.parent.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["python"].startswith(str(python.parent.parent)), "ran outside the fresh venv"
    return report


def assert_scored(report: dict[str, Any]) -> None:
    results = report["results"]
    assert set(results) == {"exact", "far_off", "inside", "wrong_object"}
    bad = {k: r["error"] for k, r in results.items() if r["status"] != "ok"}
    assert not bad, f"the image cannot score: {bad}"
    assert results["exact"]["reward"] > 0.95
    assert results["far_off"]["metrics"]["f_score_0.05"] < 0.05, "far off: nothing close"
    for name in ("far_off", "inside", "wrong_object"):
        assert results[name]["reward"] < results["exact"]["reward"], name


@pytest.mark.blender
@pytest.mark.parametrize("image", ["worker", "modal"])
def test_fresh_venv_of_a_blender_image_scores_the_hard_cases_and_renders(image: str) -> None:
    python = fresh_venv(image_extras()[image])
    report = run_check(python, "--programs", "--render", "--points", "4000")
    assert_scored(report)
    assert sorted(report["render"]) and all(size > 1000 for size in report["render"].values())


def test_fresh_venv_of_the_api_image_scores_meshes() -> None:
    python = fresh_venv(image_extras()["api"])
    assert_scored(run_check(python, "--points", "4000"))


@pytest.mark.blender
def test_the_check_catches_a_dependency_left_out() -> None:
    """The same venv without numba (as the Modal image was): the check sees it, item by item."""
    python = fresh_venv(image_extras()["worker"])
    report = run_check(python, "--programs", "--points", "4000", hide="numba")
    results = report["results"]
    assert results["exact"]["status"] == "ok"
    missing = {k for k, r in results.items() if "No module named 'numba'" in (r["error"] or "")}
    assert missing >= {"far_off", "inside"}, results
    assert all(
        results[k]["status"] == "infra_error" and results[k]["reward"] is None for k in missing
    )
    with pytest.raises(AssertionError, match="numba"):
        assert_scored(report)
