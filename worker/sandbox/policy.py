"""The sandbox policy: an AST check that runs before any program does (DESIGN §2).

Plain Python: this module imports without Blender. :func:`check_policy` parses a program and
walks every node; it works on *names and attributes*, not on call sites, so aliasing
(``f = exec``) or reaching an object through a chain (``x.gi_frame.f_globals``) is refused
where the name or attribute appears, whatever is done with it afterwards.

The rules, each with the ``rule`` string a refusal carries:

``code_size``
    the program is larger than ``executor.max_code_bytes``.
``too_complex``
    the parser or the checker ran out of stack or memory (absurdly nested code).
``import``
    only the modules of ``executor.allowed_imports`` (default ``bpy_lib`` and ``math``); no
    relative imports; ``bpy_lib`` only as ``from bpy_lib import *`` or
    ``from bpy_lib import <public verbs>`` (``import bpy_lib`` would expose the module object
    and its ``bpy`` attribute).
``private_name``
    a name or attribute starting with ``_`` (dunders and private module state). The one
    exception is reading ``__name__`` (``if __name__ == "__main__":``).
``forbidden_name``
    ``eval``, ``exec``, ``compile``, ``open``, ``getattr``/``setattr``/``delattr``,
    ``globals``/``locals``/``vars``, ``breakpoint``, ``input``, direct ``bpy``/``os``/``sys``
    access and the like (:data:`FORBIDDEN_NAMES`).
``forbidden_attribute``
    attributes that reach frames, code, tracebacks, files, processes, raw memory or Blender's
    machinery (:data:`FORBIDDEN_ATTRIBUTES`, :data:`FORBIDDEN_ATTRIBUTE_PREFIXES`).
``format_string``
    ``.format``/``.format_map`` on anything but a string literal, or a literal whose
    replacement fields walk attributes or items (``"{0.x}"``, ``"{0[k]}"``).
``syntax``
    not a rule but a parse failure: the executor reports it as ``exec_failed`` (the program is
    broken, not hostile).
``statement``
    class definitions and ``async`` constructs (not needed by modeling programs; a class body
    is where dunder methods would be defined).

The executor also runs the program with :data:`SAFE_BUILTIN_NAMES` only (plus an
``__import__`` that hands out nothing but the allowed modules), so a name that slips through
here still finds nothing to call; the OS layers behind it are in :mod:`worker.execution.blender_child`.
"""

from __future__ import annotations

import ast
import builtins
import string
import types
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm3d.program import imports_bpy_lib
from worker.sandbox.names import (
    FORBIDDEN_ATTRIBUTE_PREFIXES,
    FORBIDDEN_ATTRIBUTES,
    FORBIDDEN_NAMES,
    SAFE_BUILTIN_NAMES,
)

__all__ = [
    "FORBIDDEN_ATTRIBUTES",
    "FORBIDDEN_ATTRIBUTE_PREFIXES",
    "FORBIDDEN_NAMES",
    "SAFE_BUILTIN_NAMES",
    "PolicyVerdict",
    "check_policy",
    "restricted_builtins",
]

#: Private names a program may read (``if __name__ == "__main__":``).
_READABLE_PRIVATE_NAMES = frozenset({"__name__"})

#: Modules a program may only take names from (their module object exposes internals).
_FROM_IMPORT_ONLY = frozenset({"bpy_lib"})


@dataclass(frozen=True)
class PolicyVerdict:
    """The outcome of :func:`check_policy`.

    Attributes
    ----------
    ok : bool
        True when the program may run.
    rule : str or None
        Which rule refused it (see the module docstring); ``syntax`` for a parse error.
    line : int or None
        1-based line of the offending node in the user's program.
    message : str or None
        One line naming what was refused and what is allowed instead.
    imports_bpy_lib : bool
        Whether the program imports from ``bpy_lib`` at all (without it the status is
        ``empty``, which comes before ``refused`` in the gate order).
    """

    ok: bool
    rule: str | None = None
    line: int | None = None
    message: str | None = None
    imports_bpy_lib: bool = True

    def describe(self) -> str:
        """One line for :attr:`ExecResult.error`: ``policy <rule>: <message> (line N)``."""
        if self.ok:
            return "allowed"
        where = f" (line {self.line})" if self.line is not None else ""
        if self.rule == "syntax":
            return f"{self.message}{where}"
        return f"refused by sandbox policy [{self.rule}]: {self.message}{where}"


class _RefusalError(Exception):
    def __init__(self, rule: str, node: ast.AST | None, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.line: int | None = getattr(node, "lineno", None) if node is not None else None
        self.message = message


def check_policy(
    code: str,
    allowed_imports: Collection[str] = ("bpy_lib", "math"),
    *,
    module_names: Mapping[str, Collection[str]] | None = None,
    max_code_bytes: int | None = None,
) -> PolicyVerdict:
    """Check a program against the sandbox policy without running it.

    Parameters
    ----------
    code : str
        The program's source.
    allowed_imports : collection of str
        Top-level modules a program may import (``executor.allowed_imports``).
    module_names : mapping of str to collection of str, optional
        For a module named here, the only names ``from module import name`` may take (the
        executor passes ``bpy_lib.__all__``). ``math`` defaults to its public names.
    max_code_bytes : int, optional
        Refuse programs whose UTF-8 encoding is larger.

    Returns
    -------
    PolicyVerdict
        ``ok`` or the first rule broken, with its line. A program that does not parse gives
        ``rule="syntax"`` (the caller reports it as a failed execution, not a refusal).
    """
    textual = imports_bpy_lib(code)
    if max_code_bytes is not None:
        size = len(code.encode("utf-8", errors="surrogatepass"))
        if size > max_code_bytes:
            message = f"the program is {size} bytes; at most {max_code_bytes} are accepted"
            return PolicyVerdict(False, "code_size", None, message, textual)
    try:
        tree = ast.parse(code, filename="<program>", mode="exec")
    except SyntaxError as exc:
        return PolicyVerdict(False, "syntax", exc.lineno, f"SyntaxError: {exc.msg}", textual)
    except (RecursionError, MemoryError, ValueError) as exc:
        message = f"the program could not be parsed safely ({type(exc).__name__})"
        return PolicyVerdict(False, "too_complex", None, message, textual)
    names = dict(module_names or {})
    names.setdefault("math", _public_math_names())
    checker = _Checker(frozenset(allowed_imports), names)
    try:
        found = imports_bpy_lib(code, tree)
        checker.visit(tree)
    except _RefusalError as refusal:
        return PolicyVerdict(False, refusal.rule, refusal.line, refusal.message, found)
    except (RecursionError, MemoryError) as exc:
        message = f"the program is nested too deeply to check ({type(exc).__name__})"
        return PolicyVerdict(False, "too_complex", None, message, textual)
    return PolicyVerdict(True, imports_bpy_lib=found)


def _public_math_names() -> frozenset[str]:
    import math

    return frozenset(n for n in dir(math) if not n.startswith("_"))


def _format_fields(fmt: str) -> Iterable[str]:
    """Every replacement field name of a format string, nested specs included."""
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is not None:
            yield field
        if spec:
            yield from _format_fields(spec)


class _Checker(ast.NodeVisitor):
    def __init__(self, allowed: frozenset[str], module_names: Mapping[str, Collection[str]]):
        self.allowed = allowed
        self.module_names = module_names

    # -- names and attributes ----------------------------------------------------------

    def _check_identifier(self, name: str, node: ast.AST, *, kind: str) -> None:
        if name.startswith("_"):
            raise _RefusalError(
                "private_name",
                node,
                f"{kind} {name!r} starts with '_' (dunder and private names are not allowed)",
            )
        if name in FORBIDDEN_NAMES:
            raise _RefusalError(
                "forbidden_name",
                node,
                f"{kind} {name!r} is not allowed; use the bpy_lib verbs and math",
            )

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in _READABLE_PRIVATE_NAMES and isinstance(node.ctx, ast.Load):
            return
        self._check_identifier(node.id, node, kind="name")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)  # the object first: `bpy.ops` is refused for `bpy`
        if node.attr in ("format", "format_map"):
            self._check_attribute_name(node.attr, node, format_target=node.value)
        else:
            self._check_attribute_name(node.attr, node)

    def _check_attribute_name(
        self, attr: str, node: ast.AST, *, format_target: ast.expr | None = None
    ) -> None:
        """The one rule for every way a program names an attribute (``x.attr``, and the
        keyword patterns of ``match`` that read ``attr`` without an Attribute node)."""
        if attr.startswith("_"):
            raise _RefusalError(
                "private_name", node, f"attribute {attr!r} starts with '_' (not allowed)"
            )
        if attr in ("format", "format_map"):
            self._check_format(attr, format_target, node)
        elif attr in FORBIDDEN_ATTRIBUTES or attr.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES):
            raise _RefusalError(
                "forbidden_attribute",
                node,
                f"attribute {attr!r} reaches files, frames, processes or Blender internals",
            )

    def _check_format(self, attr: str, target: ast.expr | None, node: ast.AST) -> None:
        if not (isinstance(target, ast.Constant) and isinstance(target.value, str)):
            raise _RefusalError(
                "format_string",
                node,
                f".{attr}() is only allowed on a string literal; use an f-string",
            )
        try:
            fields = list(_format_fields(target.value))
        except ValueError as exc:
            raise _RefusalError("format_string", node, f"malformed format string: {exc}") from exc
        for field in fields:
            if "." in field or "[" in field:
                raise _RefusalError(
                    "format_string",
                    node,
                    f"format field {{{field}}} walks attributes or items; use an f-string",
                )

    # -- definitions ------------------------------------------------------------------

    def _check_arguments(self, args: ast.arguments) -> None:
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                self._check_identifier(arg.arg, arg, kind="argument")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._check_identifier(node.name, node, kind="function")
        self._check_arguments(node.args)
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._check_arguments(node.args)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        raise _RefusalError(
            "statement", node, "class definitions are not allowed; use functions and dicts"
        )

    def _refuse_async(self, node: ast.AST) -> None:
        raise _RefusalError("statement", node, "async code is not allowed in modeling programs")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._refuse_async(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self._refuse_async(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self._refuse_async(node)

    def visit_Await(self, node: ast.Await) -> None:
        self._refuse_async(node)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            self._check_identifier(name, node, kind="name")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        for name in node.names:
            self._check_identifier(name, node, kind="name")

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name is not None:
            self._check_identifier(node.name, node, kind="name")
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name is not None:
            self._check_identifier(node.name, node, kind="name")
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self._check_identifier(node.name, node, kind="name")

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest is not None:
            self._check_identifier(node.rest, node, kind="name")
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        # `case str(format=f):` reads str.format: the same rules as `str.format`, and a
        # pattern has no literal to format, so `format`/`format_map` are always refused
        for attr in node.kwd_attrs:
            self._check_attribute_name(attr, node)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None and node.arg.startswith("_"):
            raise _RefusalError(
                "private_name", node, f"keyword {node.arg!r} starts with '_' (not allowed)"
            )
        self.generic_visit(node)

    # -- imports ----------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top not in self.allowed or "." in alias.name:
                raise _RefusalError(
                    "import", node, f"import of {alias.name!r} is not allowed; {self._hint()}"
                )
            if top in _FROM_IMPORT_ONLY:
                raise _RefusalError(
                    "import",
                    node,
                    f"'import {top}' is not allowed; write 'from {top} import *'",
                )
            if alias.asname is not None:
                self._check_identifier(alias.asname, node, kind="name")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module not in self.allowed:
            shown = "." * node.level + module
            raise _RefusalError(
                "import", node, f"import from {shown!r} is not allowed; {self._hint()}"
            )
        public = self.module_names.get(module)
        for alias in node.names:
            if alias.name == "*":
                continue
            self._check_identifier(alias.name, node, kind="imported name")
            if public is not None and alias.name not in public:
                raise _RefusalError(
                    "import",
                    node,
                    f"{module} has no public name {alias.name!r}; use 'from {module} import *'",
                )
            if alias.asname is not None:
                self._check_identifier(alias.asname, node, kind="name")

    def _hint(self) -> str:
        return "allowed: " + ", ".join(sorted(self.allowed))


def _fresh_copy(module: types.ModuleType) -> types.ModuleType:
    """A new module object holding the public names of ``module`` (or its ``__all__``)."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    copy = types.ModuleType(module.__name__, module.__doc__)
    for name in names:
        setattr(copy, name, getattr(module, name))
    copy.__all__ = list(names)  # type: ignore[attr-defined]
    return copy


def restricted_builtins(modules: Mapping[str, types.ModuleType]) -> dict[str, Any]:
    """The ``__builtins__`` a program runs with: :data:`SAFE_BUILTIN_NAMES` and an import hook.

    The hook hands out only ``modules`` (name → the module or facade the program may use), no
    relative imports, and ``bpy_lib`` only through ``from bpy_lib import ...`` (the module
    object itself is not exposed). Shared by the fork server's children and the add-on.
    """
    table: dict[str, Any] = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}
    # each call hands out fresh module objects: `math.pi = 3` in one program cannot reach
    # the next one, nor the real module that Blender and bpy_lib use
    modules = {name: _fresh_copy(module) for name, module in modules.items()}

    def restricted_import(
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level != 0 or name not in modules:
            allowed = ", ".join(sorted(modules))
            raise ImportError(f"import of {name!r} is not allowed; allowed: {allowed}")
        if name == "bpy_lib" and not fromlist:
            raise ImportError("write 'from bpy_lib import *' (the module itself is not exposed)")
        return modules[name]

    table["__import__"] = restricted_import
    return table
