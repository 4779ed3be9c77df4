"""The extension package: the manifest validates, the zip builds with Blender's own builder,
and the built zip installs and works in a fresh Blender (a subprocess with its own user
folder, so nothing touches the real preferences).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BPY_DIR = Path(importlib.util.find_spec("bpy").submodule_search_locations[0])  # type: ignore[union-attr,index]
BLENDER_EXT = BPY_DIR / "4.2" / "scripts" / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"

pytestmark = pytest.mark.blender

#: What the fork server imports (DESIGN §2's sandbox): all must be bundled under vendor/.
FORK_SERVER_MODULES = (
    "worker/__init__.py",
    "worker/execution/executor.py",
    "worker/execution/blender_server.py",
    "worker/execution/fork_server.py",
    "worker/execution/blender_child.py",
    "worker/execution/protocol.py",
    "worker/execution/outcome.py",
    "worker/types.py",
    "worker/sandbox/policy.py",
    "worker/sandbox/names.py",
    "worker/sandbox/verb_guard.py",
    "worker/sandbox/seccomp.py",
    "worker/sandbox/landlock.py",
    "worker/execution/hugepages.py",
    "worker/sandbox/jail.py",
    "worker/sandbox/privileges.py",
    "worker/metrics.py",
    "llm3d/__init__.py",
    "llm3d/config.py",
    "llm3d/sections.py",
    "llm3d/exceptions.py",
)

INSTALL_SCRIPT = r"""
import json, os, sys, tempfile
import bpy

zip_path, repo_dir = sys.argv[1], sys.argv[2]
out = {}
repo = bpy.context.preferences.extensions.repos.new(
    name="llm3d test", module="llm3d_test", custom_directory=repo_dir
)
out["install"] = sorted(bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="llm3d_test", enable_on_install=True
))
name = "bl_ext.llm3d_test.llm3d_image_to_code"
out["enabled"] = name in bpy.context.preferences.addons
out["scene_prop"] = hasattr(bpy.types.Scene, "llm3d")
out["operators"] = [hasattr(bpy.ops.mesh, n) for n in ("llm3d_generate", "llm3d_run", "llm3d_score")]
import bpy_lib, worker.sandbox.policy, worker.metrics, llm3d.config, pykdtree
out["modules"] = {m.__name__: m.__file__ for m in (bpy_lib, worker.sandbox.policy, worker.metrics, llm3d.config)}
site = bpy.utils.user_resource("EXTENSIONS", path=".local/lib/python3.11/site-packages")
out["wheels_installed"] = sorted(os.listdir(site)) if os.path.isdir(site) else []
prefs = bpy.context.preferences.addons[name].preferences
out["prefs"] = [prefs.endpoint_url, prefs.max_repairs]

# the installed add-on runs a program (in the background sandbox, from vendor/ alone) and
# scores it with the bundled metrics
ext = sys.modules[name]
coll = bpy.data.collections.new("llm3d result")
bpy.context.scene.collection.children.link(coll)
ok = ext.runner.run_program("from bpy_lib import *\nbox(size=[1, 1, 1], name='b')\n", coll)
refused = ext.runner.run_program("from bpy_lib import *\nimport os\n", coll)
out["run"] = [ok.ok, ok.objects, refused.refused, ok.error]
sandbox = ext.background.get_sandbox()
executor = sandbox._executor
environ = open(f"/proc/{executor.server_pid}/environ", "rb").read().split(b"\0")
out["sandbox"] = {
    "code_paths": sandbox.code_paths,
    "jail": executor.jail,
    "pythonpath": [e.decode() for e in environ if e.startswith(b"PYTHONPATH=")],
    "layers": sandbox.layers(),
}
deps = bpy.context.evaluated_depsgraph_get()
metrics = ext.scoring.score_objects(coll.all_objects, coll.all_objects, deps, points=2000)
out["self_score"] = [metrics["f_score_0.05"], metrics["chamfer_l2"]]

# the installed add-on matches candidates with its bundled render match, in a background
# Blender started from vendor/: a cube against views of itself, a thin pole against them
import threading
from llm3d.config import RenderConfig
from worker.render import render_views
cube = sandbox.run("from bpy_lib import *\nbox(size=[1, 0.5, 0.3])\n", 60)
pole = sandbox.run("from bpy_lib import *\ncylinder(radius=0.05, depth=2)\n", 60)
views = render_views(cube.vertices, cube.faces, tempfile.mkdtemp(), config=RenderConfig(frame="object"))
picks = [ext.candidates.Candidate(1, result=cube), ext.candidates.Candidate(2, result=pole)]
note = ext.candidates.render_and_match(picks, [str(v) for v in views], sandbox, threading.Event())
out["match"] = [note, picks[0].score, picks[1].score]

# disable, enable and disable again
import addon_utils
cycle = []
for _ in range(2):
    addon_utils.disable(name, default_set=True)
    cycle.append(name not in bpy.context.preferences.addons and not hasattr(bpy.types.Scene, "llm3d"))
    addon_utils.enable(name, default_set=True)
    cycle.append(hasattr(bpy.types.Scene, "llm3d"))
out["cycle"] = cycle
out["sandbox_closed"] = sandbox.closed and not sandbox.pids()
print("RESULT " + json.dumps(out))
"""


def test_source_manifest_validates() -> None:
    result = subprocess.run(
        [sys.executable, str(BLENDER_EXT), "validate", str(ROOT / "addon")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_a_broken_manifest_is_rejected(tmp_path: Path) -> None:
    manifest = (ROOT / "addon" / "blender_manifest.toml").read_text()
    (tmp_path / "blender_manifest.toml").write_text(
        manifest.replace('version = "0.1.0"', 'version = "one"')
    )
    result = subprocess.run(
        [sys.executable, str(BLENDER_EXT), "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "version" in result.stdout + result.stderr


def test_the_staged_addon_carries_the_projects_render_match(tmp_path: Path) -> None:
    """Candidates are matched by best-of-N's own code: the zip carries worker.render_match
    and worker.render as they are in the project (one definition, staged, not copied by hand)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import stage_addon
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    stage = tmp_path / "stage"
    stage_addon.stage_sources(stage)
    assert (stage / "_render_match.py").is_file()
    for rel in ("worker/render_match.py", "worker/render.py", "llm3d/exceptions.py"):
        assert (stage / "vendor" / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    assert not (stage / "vendor" / "training").exists()  # best_of stays out


@pytest.mark.slow
def test_built_zip_installs_and_works(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    env = {**os.environ, "LLM3D_ADDON_STAGE": str(tmp_path / "stage" / "llm3d_image_to_code")}
    build = subprocess.run(
        [str(ROOT / "scripts" / "build_addon.sh"), str(dist)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (zip_path,) = dist.glob("llm3d_image_to_code-0.1.0-*.zip")
    assert zip_path.name.endswith("-linux_x64.zip")
    names = set(zipfile.ZipFile(zip_path).namelist())
    for required in (
        "blender_manifest.toml",
        "__init__.py",
        "client.py",
        "vendor/bpy_lib/__init__.py",
        "vendor/bpy_lib/primitives.py",
        "_server_boot.py",
        "_oneshot.py",
        "_render_match.py",
        "vendor/worker/render.py",
        "vendor/worker/render_match.py",
        *(f"vendor/{rel}" for rel in FORK_SERVER_MODULES),
    ):
        assert required in names, required
    # nothing of the project beyond what the add-on and its fork server import
    assert not [n for n in names if n.startswith(("vendor/api/", "vendor/datagen/", "vendor/data"))]
    assert not [n for n in names if "__pycache__" in n or "/examples/" in n or n.endswith(".pyc")]
    wheels = sorted(n.split("/")[1].split("-")[0] for n in names if n.startswith("wheels/"))
    assert "pykdtree" in wheels and "pydantic_core" in wheels

    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    script = tmp_path / "install.py"
    script.write_text(INSTALL_SCRIPT)
    run_env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    result = subprocess.run(
        [sys.executable, str(script), str(zip_path), str(repo_dir)],
        capture_output=True,
        text=True,
        check=False,
        env=run_env,
        cwd=tmp_path,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    assert out["install"] == ["FINISHED"]
    assert out["enabled"] and out["scene_prop"] and all(out["operators"])
    installed = repo_dir / "llm3d_image_to_code"
    for module, path in out["modules"].items():
        assert Path(path).is_relative_to(installed / "vendor"), (module, path)
    assert "pykdtree" in out["wheels_installed"] and "pydantic" in out["wheels_installed"]
    assert out["prefs"] == ["http://127.0.0.1:8001/v1", 2]
    assert out["run"][:3] == [True, ["result"], True], out["run"]
    sandbox = out["sandbox"]
    assert sandbox["code_paths"][0] == str(installed / "vendor")
    assert sandbox["pythonpath"][0].startswith(f"PYTHONPATH={installed / 'vendor'}")
    if sandbox["jail"] == "bwrap":
        assert sandbox["layers"].startswith("Sandbox: bubblewrap jail"), sandbox["layers"]
    # independent samples of the two (DESIGN §3): the sampling floor at 2 000 points
    assert out["self_score"][0] >= 0.9 and 0.0 < out["self_score"][1] < 1e-3
    note, right, wrong = out["match"]
    assert note == "" and right > 0.9 and wrong < right - 0.3, out["match"]
    assert out["cycle"] == [True, True, True, True]
    assert out["sandbox_closed"]  # disabling the add-on stopped the background Blender
