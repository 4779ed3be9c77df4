"""The model-facing reference: complete, short, in sync with docs/bpy_lib.md, example runs."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import bpy_lib as bl
from bpy_lib import refdoc

pytestmark = pytest.mark.blender


def test_reference_lists_every_public_function_once() -> None:
    text = bl.reference()
    functions = [n for n in bl.__all__ if inspect.isfunction(getattr(bl, n)) and n != "reference"]
    for fname in functions:
        assert len(re.findall(rf"^{fname}\([^\n]*\): ", text, flags=re.M)) == 1, fname


def test_every_public_function_has_a_docstring_summary() -> None:
    for _, module, names in refdoc.FAMILIES:
        for fname in names:
            assert refdoc.summary(getattr(module, fname)), fname


def test_reference_is_short() -> None:
    text = bl.reference()
    assert refdoc.estimate_tokens(text) < 2500
    assert len(text) < 8000


def test_estimate_tokens_is_plausible() -> None:
    assert refdoc.estimate_tokens("") == 0
    assert 8 <= refdoc.estimate_tokens("box(size=[0.5, 0.5, 0.5], location=[0, 0, 1])") <= 40


def test_docs_file_is_in_sync() -> None:
    doc = refdoc.DOCS_PATH.read_text(encoding="utf-8")
    assert bl.reference() in doc, "docs/bpy_lib.md is stale: run `.venv/bin/python -m bpy_lib`"


def test_reference_example_runs(tmp_path: Path) -> None:
    code = refdoc.EXAMPLE.split("\n", 1)[1]
    exec(compile(code, "reference_example", "exec"), {})
    v, f = bl.export_scene()
    assert len(f) > 100
    assert v.min() >= -1.0 and v.max() <= 1.0
