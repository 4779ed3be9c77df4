"""The library's promises about itself, and the scripts around it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "bpy_lib").glob("*.py"))


def test_library_never_uses_bpy_ops() -> None:
    for path in LIBRARY:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        uses = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr == "ops"
            and isinstance(node.value, ast.Name)
            and node.value.id == "bpy"
        ]
        assert not uses, f"{path.name} uses bpy.ops on lines {uses}"


@pytest.mark.blender
@pytest.mark.slow
def test_contact_sheet_renders_a_grid(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    cmd = [sys.executable, str(ROOT / "scripts" / "bpy_lib_contact_sheet.py")]
    cmd += ["--out", str(out), "--size", "64", "--columns", "2", "--limit", "3"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    with Image.open(out) as sheet:
        assert sheet.size == (2 * 64, 2 * (64 + 20))
        # a rendered tile is not blank: it has more than the background's colours
        tile = sheet.crop((0, 20, 64, 84))
        colours = tile.getcolors(maxcolors=100_000)
        assert colours is not None and len(colours) > 10
