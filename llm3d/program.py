"""The pure-text rules about a model's program that several parts share, each written once.

- :func:`extract_code`: which part of a model's answer is the program. The environment, the
  evaluation runner, the trainers and the Blender add-on all call it, so a model is trained
  and used under the same rule.
- :func:`imports_bpy_lib`: whether a program imports ``bpy_lib`` (without it a program is
  ``empty``). The sandbox's gate, the reward's format check and :func:`extract_code` ask it.
- :func:`format_checks` / :func:`format_score`: the format score of DESIGN §4 (imports
  ``bpy_lib``, names a part in a ``# part_k: label`` comment, calls ``export_scene()``), for
  the reward and the environment's format reward alike.
- :func:`describe_error`: how an exception in a program is told to the model (one line,
  ``Type: message (line N)``), in the farm's child process and in the add-on alike.

Which block is the program, in order:

1. ``<think>…</think>`` sections are dropped (reasoning models write drafts there).
2. Fenced blocks (```` ``` ```` or ``~~~``, any number of backticks ≥ 3) are collected.
   Blocks tagged with a language other than Python (``python``, ``py``, ``python3``) or
   none are ignored (a ``text`` or ``bash`` block is never the program).
3. **Several blocks: the last block that imports** ``bpy_lib`` **wins**; when no block
   imports it, the last Python/untagged block wins. Models that show a draft and then a
   corrected program put the final one last; a trailing usage example without the import
   does not displace the program, and a short example before the program is not taken
   for it.
4. An opening fence that is never closed (a truncated generation) counts as a block that
   runs to the end of the text.
5. **No Python block:** bare code, looked for outside any fenced block. The whole answer
   when it parses as Python and mentions ``bpy_lib``; otherwise the text from the first
   ``from bpy_lib``/``import bpy_lib`` line to the end; otherwise no code at all (``""``,
   which the reward scores as ``empty``).

The extracted code is returned stripped of surrounding blank lines, with a final newline.
Plain Python (no Blender, no numpy): the add-on vendors this module.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass

__all__ = [
    "MAX_ERROR_CHARS",
    "PROGRAM_FILENAME",
    "PYTHON_TAGS",
    "Extraction",
    "FormatChecks",
    "describe_error",
    "extract_code",
    "format_checks",
    "format_score",
    "imports_bpy_lib",
]

# The file name programs are compiled under: error lines are looked up by it.
PROGRAM_FILENAME = "<program>"
MAX_ERROR_CHARS = 400

# A line that imports bpy_lib, for code that does not parse (a truncated answer): comments are
# stripped first, so ``# from bpy_lib import *`` does not count.
_IMPORT_LINE = re.compile(
    r"^[ \t]*(from[ \t]+bpy_lib(\.\w+)*[ \t]+import\b|import[ \t]+bpy_lib\b)", re.M
)


def imports_bpy_lib(code: str, tree: ast.AST | None = None) -> bool:
    """Whether ``code`` imports ``bpy_lib`` (``from bpy_lib[.x] import ...`` or ``import bpy_lib``).

    Read from the syntax tree when the code parses (pass ``tree`` when you already have it),
    so an import inside a string does not count; else from the lines without comments.
    """
    if tree is None:
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            bare = "\n".join(line.split("#", 1)[0] for line in code.splitlines())
            return _IMPORT_LINE.search(bare) is not None
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        if any(name.split(".")[0] == "bpy_lib" for name in names):
            return True
    return False


def describe_error(exc: BaseException, *, memory_mb: int | None = None) -> str:
    """One line for the model: ``Type: message (line N)``, N the deepest line of the program.

    The line is found in the traceback by :data:`PROGRAM_FILENAME` (or in a ``SyntaxError``
    of the program). A ``MemoryError`` names the limit when ``memory_mb`` is given. A hostile
    ``__str__`` cannot hide the failure; the message is one line of at most
    :data:`MAX_ERROR_CHARS` characters.
    """
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename == PROGRAM_FILENAME:
        line = exc.lineno
        message = exc.msg
    elif isinstance(exc, MemoryError):
        limit = f" (each program may use {memory_mb} MiB)" if memory_mb else ""
        message = f"the program ran out of memory{limit}"
    else:
        try:
            message = str(exc)
        except Exception:  # a hostile __str__ cannot hide the failure
            message = "<unprintable message>"
    message = " ".join(str(message).split())
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text} (line {line})" if line is not None else text


PYTHON_TAGS = frozenset({"", "python", "py", "python3"})

_THINK_RE = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_FENCE_RE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[\w+.-]*)[^\n]*$", re.M)


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
        importing = [b for b in python_blocks if imports_bpy_lib(b[0])]
        body, closed = (importing or python_blocks)[-1]
        return Extraction(_tidy(body), "fenced", len(python_blocks), truncated=not closed)
    if "bpy_lib" in text and _parses(text):
        return Extraction(_tidy(text), "bare", 0)
    start = _IMPORT_LINE.search(text)
    if start is not None:
        return Extraction(_tidy(text[start.start() :]), "bare", 0)
    return Extraction("", "none", 0)


_PART_COMMENT_RE = re.compile(r"#\s*part[\s_-]*\d+\s*:\s*\S", re.I)
_EXPORT_RE = re.compile(r"\bexport_scene\s*\(")


@dataclass(frozen=True)
class FormatChecks:
    """The three checks of the format score (each True or False)."""

    imports_bpy_lib: bool
    part_comment: bool
    calls_export_scene: bool

    @property
    def score(self) -> float:
        """Mean of the three checks, in [0, 1]."""
        return (self.imports_bpy_lib + self.part_comment + self.calls_export_scene) / 3.0


def _comments(code: str) -> list[str]:
    """Comment tokens of ``code``; a naive line scan when it does not tokenize."""
    try:
        return [
            tok.string
            for tok in tokenize.generate_tokens(io.StringIO(code).readline)
            if tok.type == tokenize.COMMENT
        ]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [line[line.index("#") :] for line in code.splitlines() if "#" in line]


def _strip_comments(code: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in code.splitlines())


def format_checks(code: str) -> FormatChecks:
    """Run the three format checks of DESIGN §4 on a program's source (the reward's format
    score and the environment's format reward are this one function).

    Imports and the ``export_scene()`` call are read from the syntax tree when the code
    parses (so a call inside a string or comment does not count), else from the text
    without comments.
    """
    part_comment = any(_PART_COMMENT_RE.match(c) for c in _comments(code))
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        bare = _strip_comments(code)
        return FormatChecks(
            imports_bpy_lib=imports_bpy_lib(code),
            part_comment=part_comment,
            calls_export_scene=bool(_EXPORT_RE.search(bare)),
        )
    imports = imports_bpy_lib(code, tree)
    exports = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            exports |= name == "export_scene"
    return FormatChecks(
        imports_bpy_lib=imports, part_comment=part_comment, calls_export_scene=exports
    )


def format_score(code: str) -> float:
    """The format score ∈ {0, 1/3, 2/3, 1} of DESIGN §4 (see :func:`format_checks`)."""
    return format_checks(code).score
