"""Stage the Blender extension's source folder (called by scripts/build_addon.sh).

Copies ``addon/`` and bundles what it needs from the project under ``vendor/``:
``bpy_lib`` (whole, without its example programs) and every module of ``worker`` and
``llm3d`` that the add-on, the fork server it starts in a background Blender
(``worker.execution.blender_server``, ``worker.execution.executor``: the sandbox, the jail, seccomp, Landlock...)
and the metrics import, found by following their imports (:func:`vendored_files`). The
sandbox's jail binds only ``vendor/``. The Python packages the metrics need and Blender does
not ship (``pykdtree`` and the ``pydantic`` stack behind ``llm3d.config``) are downloaded as
wheels for each platform, pinned to the versions this environment runs, and listed in the
staged manifest (the extension ``wheels`` mechanism: Blender installs them on enable).
Nothing is copied into the repository itself.

Usage::

    python scripts/stage_addon.py STAGE_DIR [--platform linux-x64 ...] [--no-wheels]
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Packages of the project whose modules are bundled as needed (bpy_lib is copied whole).
VENDORED_PACKAGES = ("worker", "llm3d")
#: Where the imports are followed from, beside every module of ``addon/``: the fork server
#: (run as ``python -m`` in the background Blender) and the metrics behind Score.
VENDOR_ROOTS = ("worker.execution.blender_server", "worker.execution.executor", "worker.metrics")


def _imports(path: Path) -> set[str]:
    """Absolute imports of ``path`` from :data:`VENDORED_PACKAGES` (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in VENDORED_PACKAGES)
    return found


def _module_file(name: str) -> Path | None:
    for candidate in (ROOT / f"{name.replace('.', '/')}.py", ROOT / name.replace(".", "/")):
        if candidate.suffix == ".py" and candidate.is_file():
            return candidate
        if (candidate / "__init__.py").is_file():
            return candidate / "__init__.py"
    return None


def vendored_files() -> list[str]:
    """Every module of ``worker``/``llm3d`` the add-on and its fork server import, with the
    packages' ``__init__.py``; paths relative to the repository, sorted."""
    pending = set(VENDOR_ROOTS)
    for path in (ROOT / "addon").glob("*.py"):
        pending |= _imports(path)
    files: set[Path] = {ROOT / package / "__init__.py" for package in VENDORED_PACKAGES}
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:  # a name imported from a module (``from worker.x import f``)
            continue
        files.add(path)
        for parent in path.parents:  # the __init__.py of each package above it (worker.execution)
            if parent == ROOT:
                break
            if (parent / "__init__.py").is_file():
                files.add(parent / "__init__.py")
        pending |= _imports(path)
    return sorted(str(f.relative_to(ROOT)) for f in files)


#: Distributions the bundled metrics import that Blender's Python lacks (numpy it has).
WHEEL_DISTRIBUTIONS = (
    "pykdtree",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "typing-extensions",
    "annotated-types",
    "typing-inspection",
    "python-dotenv",
)

#: Blender platform name -> pip --platform tags.
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "macos-arm64": ("macosx_14_0_arm64", "macosx_11_0_arm64"),
    "macos-x64": ("macosx_14_0_x86_64", "macosx_10_9_x86_64"),
    "windows-x64": ("win_amd64",),
}


def stage_sources(stage: Path) -> None:
    """Copy the add-on and the vendored project modules into ``stage``."""
    if stage.exists():
        shutil.rmtree(stage)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "vendor", "wheels")
    shutil.copytree(ROOT / "addon", stage, ignore=ignore)
    vendor = stage / "vendor"
    shutil.copytree(
        ROOT / "bpy_lib",
        vendor / "bpy_lib",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "examples", "__main__.py"),
    )
    for rel in vendored_files():
        target = vendor / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def download_wheels(stage: Path, platforms: list[str], cache: Path) -> list[str]:
    """Download the pinned wheels for each platform into ``stage/wheels``; return their paths."""
    pins = [f"{d}=={importlib.metadata.version(d)}" for d in WHEEL_DISTRIBUTIONS]
    wheels_dir = stage / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for platform in platforms:
        tags = PLATFORM_TAGS.get(platform)
        if tags is None:
            known = ", ".join(PLATFORM_TAGS)
            raise SystemExit(f"unknown platform {platform!r}; use one of {known}")
        target = cache / platform
        target.mkdir(parents=True, exist_ok=True)
        if not _cached(target, pins):
            _pip_download(target, tags, pins, platform)
        for wheel in sorted(target.glob("*.whl")):
            if _pin_of(wheel.name) in pins:
                shutil.copy2(wheel, wheels_dir / wheel.name)
    return sorted(f"./wheels/{w.name}" for w in wheels_dir.glob("*.whl"))


def _pin_of(wheel_name: str) -> str:
    """``pydantic_core-2.50.5-cp311-...whl`` -> ``pydantic-core==2.50.5``."""
    name, version = wheel_name.split("-")[:2]
    return f"{name.lower().replace('_', '-')}=={version}"


def _cached(folder: Path, pins: list[str]) -> bool:
    """True when ``folder`` holds a wheel of every pin (a rebuild then needs no network)."""
    have = {_pin_of(w.name) for w in folder.glob("*.whl")}
    return all(pin in have for pin in pins)


def _pip_download(target: Path, tags: tuple[str, ...], pins: list[str], platform: str) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--no-deps",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--abi",
        "abi3",
        "--abi",
        "none",
        *(arg for tag in tags for arg in ("--platform", tag)),
        "--dest",
        str(target),
        *pins,
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"downloading the wheels for {platform} failed (pip needs the package index, "
            f"or a filled cache in {target}):\n{result.stderr.strip()}"
        )


def write_manifest(stage: Path, wheels: list[str], platforms: list[str]) -> None:
    """Add the ``platforms`` and ``wheels`` lists to the staged manifest."""
    manifest = stage / "blender_manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    head, sep, tail = text.partition("\n[permissions]")
    extra = ""
    if wheels:
        extra += f"platforms = [{', '.join(repr(p) for p in platforms)}]\n".replace("'", '"')
        extra += "wheels = [\n" + "".join(f'  "{w}",\n' for w in wheels) + "]\n"
    manifest.write_text(head.rstrip("\n") + "\n\n" + extra + sep + tail, encoding="utf-8")


def main() -> None:
    """Stage the add-on (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", type=Path, help="folder to create (replaced if it exists)")
    parser.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        help=f"Blender platform to bundle wheels for (repeatable): {', '.join(PLATFORM_TAGS)}",
    )
    parser.add_argument(
        "--no-wheels",
        action="store_true",
        help="bundle no wheels: Score then needs pykdtree and pydantic in Blender's Python",
    )
    parser.add_argument(
        "--wheel-cache", type=Path, default=ROOT / "build" / "addon-wheels", help="download cache"
    )
    args = parser.parse_args()
    platforms = args.platforms or ["linux-x64"]
    stage_sources(args.stage)
    wheels = [] if args.no_wheels else download_wheels(args.stage, platforms, args.wheel_cache)
    write_manifest(args.stage, wheels, platforms)
    print(f"staged {args.stage} ({len(wheels)} wheels for {', '.join(platforms)})")


if __name__ == "__main__":
    main()
