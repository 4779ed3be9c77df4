"""DESIGN §1's layering, as a user of the parts relies on it.

- The import-linter contracts in pyproject.toml hold (layers downward only, the trainers and
  the environment never import the API or the worker, no circles between files, private
  modules stay in their package).
- Every pure-Python module imports with Blender unavailable; the few that need Blender say
  so in their docstring and are listed here.
- No module imports another module's private name (``from x import _helper``).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("llm3d", "bpy_lib", "worker", "api", "datagen", "training", "environments", "addon")
PURE_PACKAGES = ("llm3d", "worker", "api", "training", "environments", "datagen")

#: Modules outside bpy_lib/ and addon/ that import Blender at import time, and why.
BLENDER_MODULES = {
    "worker.render": "renders meshes with Blender (the eval runner's and the API's pictures)",
    "training.eval_examples": "runs the bpy_lib examples and renders them",
    "training.eval_grid": "renders the evaluation's comparison grid through worker.render",
}

# A finder that makes Blender unimportable, as on a machine without the bpy wheel.
NO_BLENDER = """
import importlib, json, pkgutil, sys

class NoBlender:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bpy", "mathutils", "bmesh"):
            raise ModuleNotFoundError(f"No module named {name!r} (Blender made unimportable)")
        return None

sys.meta_path.insert(0, NoBlender())
failed = {}
for package in PACKAGES:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        try:
            importlib.import_module(info.name)
        except ImportError as exc:
            failed[info.name] = str(exc)
print(json.dumps(failed))
"""


def test_import_linter_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run(
        [lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_pure_python_parts_import_without_blender() -> None:
    code = f"PACKAGES = {PURE_PACKAGES!r}\n" + NO_BLENDER
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    unexpected = {name: why for name, why in failed.items() if name not in BLENDER_MODULES}
    assert not unexpected, f"these modules need Blender at import time: {unexpected}"
    for name in BLENDER_MODULES:
        tree = ast.parse((ROOT / (name.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree) or ""
        assert "Blender" in doc, f"{name} needs Blender: its docstring must say so"


def _private_imports() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                    continue
                if node.module.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:
                    name = alias.name
                    if not name.startswith("_") or name.startswith("__"):
                        continue
                    target = ROOT / node.module.replace(".", "/") / name
                    is_module = target.with_suffix(".py").is_file() or target.is_dir()
                    same_package = node.module.split(".")[0] == module.split(".")[0]
                    if not (is_module and same_package):
                        found.append(f"{module}: from {node.module} import {name}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    assert _private_imports() == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_covered_by_the_contracts(package: str) -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"{package}' in text.split("[tool.importlinter]", 1)[1]


def test_the_environment_declares_every_package_it_imports() -> None:
    """``pip install -e environments/blender_3d`` (plus llm3d's core) must be enough: every
    third-party package the environment reaches, through the llm3d modules it uses too, is a
    dependency of one of them. Blender is only imported lazily, for rows without a system
    prompt (the bpy_lib reference is then generated)."""
    import tomllib

    import grimp

    graph = grimp.build_graph("environments", "llm3d", "bpy_lib", include_external_packages=True)
    reached = {
        m.split(".")[0] for m in graph.find_upstream_modules("environments", as_package=True)
    }
    third_party = reached - set(sys.stdlib_module_names) - {"environments", "llm3d", "__future__"}

    def names(pyproject: Path) -> set[str]:
        deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
        out = set()
        for dep in deps:
            name = dep.split(";")[0].split("[")[0]
            for sep in "<>=!~ ":
                name = name.split(sep)[0]
            out.add({"pyyaml": "yaml"}.get(name.lower(), name.lower().replace("-", "_")))
        return out

    declared = names(ROOT / "environments/blender_3d/pyproject.toml") | names(
        ROOT / "pyproject.toml"
    )
    lazy_blender = {"bpy", "bpy_lib", "mathutils"}
    assert third_party - lazy_blender <= declared, sorted(third_party - lazy_blender - declared)
