"""Pull the ``bpy_lib`` program out of a model's answer (plain Python, no verifiers).

The rules, in order:

1. ``<think>…</think>`` sections are dropped (reasoning models write drafts there).
2. Fenced blocks (```` ``` ```` or ``~~~``, any number of backticks ≥ 3) are collected.
   Blocks tagged with a language other than Python (``python``, ``py``, ``python3``) or
   none are ignored (a ``text`` or ``bash`` block is never the program).
3. **Several blocks: the last block that imports** ``bpy_lib`` **wins**; when no block
   imports it, the last Python/untagged block wins. Models that show a draft and then a
   corrected program put the final one last; a trailing usage example without the import
   does not displace the program.
4. An opening fence that is never closed (a truncated generation) counts as a block that
   runs to the end of the text.
5. **No Python block:** bare code, looked for outside any fenced block. The whole answer
   when it parses as Python and mentions ``bpy_lib``; otherwise the text from the first ``from bpy_lib``/``import bpy_lib`` line
   to the end; otherwise no code at all (``""``, which the reward scores as ``empty``).

The extracted code is returned stripped of surrounding blank lines, with a final newline.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["PYTHON_TAGS", "Extraction", "extract_code"]

PYTHON_TAGS = frozenset({"", "python", "py", "python3"})

_THINK_RE = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_FENCE_RE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[\w+.-]*)[^\n]*$", re.M)
_IMPORT_RE = re.compile(r"^\s*(from\s+bpy_lib\b|import\s+bpy_lib\b)", re.M)


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract_code` found.

    Attributes:
        code: the program (``""`` when there is none).
        source: ``"fenced"``, ``"bare"`` or ``"none"``.
        blocks: how many Python/untagged fenced blocks the answer had.
        truncated: the chosen block's fence was never closed.
    """

    code: str
    source: str
    blocks: int
    truncated: bool = False


def _blocks(text: str) -> tuple[list[tuple[str, str, bool]], str]:
    """``(tag, body, closed)`` of every fenced block in order, and the text outside them."""
    found: list[tuple[str, str, bool]] = []
    outside: list[str] = []
    pos = 0
    while True:
        opening = _FENCE_RE.search(text, pos)
        if opening is None:
            outside.append(text[pos:])
            return found, "".join(outside)
        outside.append(text[pos : opening.start()])
        fence = opening.group("fence")
        tag = opening.group("tag").lower()
        body_start = opening.end() + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        end = closing.search(text, body_start)
        if end is None:
            found.append((tag, text[body_start:], False))
            return found, "".join(outside)
        found.append((tag, text[body_start : end.start()], True))
        pos = end.end()


def _tidy(code: str) -> str:
    code = code.strip("\n").rstrip()
    return code + "\n" if code.strip() else ""


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def extract_code(text: str | None) -> Extraction:
    """Extract the program from a completion (see the module docstring for the rules).

    Args:
        text: the assistant's answer (``None`` counts as empty).

    Returns:
        The :class:`Extraction`; its ``code`` is ``""`` when the answer holds no program.
    """
    text = _THINK_RE.sub("", text or "")
    blocks, text = _blocks(text)
    python_blocks = [(body, closed) for tag, body, closed in blocks if tag in PYTHON_TAGS]
    if python_blocks:
        importing = [b for b in python_blocks if _IMPORT_RE.search(b[0])]
        body, closed = (importing or python_blocks)[-1]
        return Extraction(_tidy(body), "fenced", len(python_blocks), truncated=not closed)
    if "bpy_lib" in text and _parses(text):
        return Extraction(_tidy(text), "bare", 0)
    start = _IMPORT_RE.search(text)
    if start is not None:
        return Extraction(_tidy(text[start.start() :]), "bare", 0)
    return Extraction("", "none", 0)
