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


HASH_EXAMPLES = """
import hashlib, sys
sys.path.insert(0, {root!r})
from bpy_lib import examples
h = hashlib.sha256()
for p in examples.paths()[:6]:
    v, f = examples.run(p)
    h.update(v.tobytes())
    h.update(f.tobytes())
print(h.hexdigest())
"""


@pytest.mark.blender
@pytest.mark.slow
def test_examples_are_byte_identical_across_processes() -> None:
    code = HASH_EXAMPLES.format(root=str(ROOT))
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 64
