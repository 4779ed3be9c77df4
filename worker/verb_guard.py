"""What stands between a program and the bpy_lib verbs it calls (plain Python, no Blender).

The fork server hands programs a facade module whose verbs are wrapped by :func:`guard_verb`,
so that containment does not depend on every verb being written carefully:

* arguments that name files (``path``, ``filepath``, ...) must be plain relative names inside
  the working directory (the child's empty temporary directory) — no absolute paths, no
  ``..``, nothing that resolves outside;
* a verb may only return plain values (str, numbers, bool, None, numpy arrays and scalars,
  and lists/tuples/dicts of those): a Blender object handed to a program would expose
  ``bpy`` through its attributes, so any other return value is refused with a ``TypeError``;
* exceptions keep their type and message, but arguments that are not plain values are
  replaced by their ``repr`` (``e.args`` is the one path from an exception to its contents
  that the policy leaves open).
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

__all__ = ["PATH_PARAMETERS", "check_path", "guard_verb", "is_plain"]

#: Parameters of bpy_lib verbs that name files: checked before the verb runs.
PATH_PARAMETERS = frozenset({"path", "filepath", "filename", "directory"})

_SCALARS = (str, int, float, bool, type(None), np.generic)
_MAX_DEPTH = 4


def is_plain(value: object, depth: int = 0) -> bool:
    """True for values a program may hold without reaching anything else (see module doc)."""
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(value, list | tuple):
        return all(is_plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v, depth + 1) for k, v in value.items())
    return False


def check_path(fn: str, arg: str, value: object) -> None:
    """Raise unless ``value`` is None or a plain file name inside the working directory."""
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{fn}({arg}): expected a file name (str), got {type(value).__name__}")
    pure = PurePosixPath(value)
    inside = bool(value) and Path(value).resolve().is_relative_to(Path.cwd().resolve())
    if pure.is_absolute() or ".." in pure.parts or not inside:
        raise ValueError(
            f"{fn}({arg}): expected a plain file name in the working directory, got {value!r}"
        )


def guard_verb(function: Any) -> Any:
    """Wrap one public bpy_lib name for programs; classes and constants pass unchanged."""
    if not callable(function) or isinstance(function, type):
        return function
    try:
        signature: inspect.Signature | None = inspect.signature(function)
    except (TypeError, ValueError):
        signature = None
    watched = [p for p in (signature.parameters if signature else ()) if p in PATH_PARAMETERS]
    name = getattr(function, "__name__", "verb")

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if watched and signature is not None:
            try:
                arguments = signature.bind(*args, **kwargs).arguments
            except TypeError:
                arguments = {}  # the verb reports its own usage error below
            for param in watched:
                if param in arguments:
                    check_path(name, param, arguments[param])
        try:
            result = function(*args, **kwargs)
        except Exception as exc:
            if not all(is_plain(a) for a in exc.args):
                exc.args = tuple(a if is_plain(a) else repr(a) for a in exc.args)
            raise
        if not is_plain(result):
            raise TypeError(
                f"{name} returned a {type(result).__name__}; programs only receive plain values"
            )
        return result

    return guarded
