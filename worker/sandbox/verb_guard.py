"""What stands between a program and the bpy_lib verbs it calls (plain Python, no Blender).

The fork server hands programs a facade module whose verbs are wrapped by :func:`guard_verb`,
so that containment does not depend on every verb being written carefully:

* arguments that name files (``path``, ``filepath``, ...) must be plain relative names inside
  the working directory (the child's empty temporary directory) — no absolute paths, no
  ``..``, nothing that resolves outside;
* a verb only ever returns plain values (:func:`to_plain`: str, int, float, bool, None and
  lists/tuples/dicts of those). numpy arrays and scalars are converted (an array exposes raw
  memory: ``resize(refcheck=False)`` on one gave a use-after-free and from there any
  Python), and a Blender object would expose ``bpy``: anything else is refused with a
  ``TypeError``;
* exceptions keep their type and message, but arguments that are not plain values are
  replaced by their ``repr`` (``e.args`` is the one path from an exception to its contents
  that the policy leaves open), and they reach the program without their traceback, cause
  or context (frames of bpy_lib and Blender).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import types
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

__all__ = [
    "MAX_FILES_PER_PROGRAM",
    "PATH_PARAMETERS",
    "check_path",
    "guard_verb",
    "guarded_facade",
    "is_plain",
    "to_plain",
]

#: Parameters of bpy_lib verbs that name files: checked before the verb runs.
PATH_PARAMETERS = frozenset({"path", "filepath", "filename", "directory"})
#: Files one program may write through the verbs (each bounded by RLIMIT_FSIZE): a loop of
#: ``export_scene(path=...)`` would otherwise hold memory (the jail's tmpfs) or disk unbounded.
MAX_FILES_PER_PROGRAM = 8
_file_writes = itertools.count()  # per process: each program is a fresh fork of a server

_SCALARS: tuple[type, ...] = (str, int, float, bool, type(None))
_MAX_DEPTH = 4


def to_plain(value: object, depth: int = 0) -> Any:
    """``value`` as the plain Python values a program may hold, or ``TypeError``.

    Programs never receive an object that exposes raw memory or anything beyond itself:
    numpy arrays become tuples of tuples (``export_scene()`` gives
    ``((x, y, z), ...), ((i, j, k), ...)``), numpy scalars become ``int``/``float``/``bool``,
    lists, tuples and dicts are copied. Only exact built-in types pass: a subclass of
    ``str`` could carry anything.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        listed = value.tolist()
        if value.ndim == 2:  # the common case (a mesh's rows): map() is ~5x the recursion
            return tuple(map(tuple, listed))
        return _tuples(listed) if isinstance(listed, list) else listed
    if depth < _MAX_DEPTH:
        if kind is list:
            return [to_plain(item, depth + 1) for item in value]  # type: ignore[attr-defined]
        if kind is tuple:
            return tuple(to_plain(item, depth + 1) for item in value)  # type: ignore[attr-defined]
        if kind is dict:
            items = value.items()  # type: ignore[attr-defined]
            if all(type(k) is str for k, _ in items):
                return {k: to_plain(v, depth + 1) for k, v in items}
    raise TypeError(f"{kind.__name__} is not a plain value")


def _tuples(listed: list[Any]) -> tuple[Any, ...]:
    return tuple(_tuples(item) if isinstance(item, list) else item for item in listed)


def is_plain(value: object) -> bool:
    """True when :func:`to_plain` accepts ``value``."""
    try:
        to_plain(value)
    except TypeError:
        return False
    return True


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


def _count_file(fn: str) -> None:
    if next(_file_writes) >= MAX_FILES_PER_PROGRAM:
        raise ValueError(
            f"{fn}: a program may write at most {MAX_FILES_PER_PROGRAM} files; "
            "call export_scene() without a path (the mesh is read from the scene)"
        )


def _plain_or_repr(value: object) -> Any:
    try:
        return to_plain(value)
    except TypeError:
        return repr(value)


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
            if any(arguments.get(p) is not None for p in watched):
                _count_file(name)
        try:
            result = function(*args, **kwargs)
        except Exception as exc:
            # the program gets the type and the plain arguments, nothing it could walk: no
            # traceback (its frames hold Blender's modules), no cause, no context
            exc.args = tuple(_plain_or_repr(a) for a in exc.args)
            raise exc.with_traceback(None) from None
        try:
            return to_plain(result)
        except TypeError:
            raise TypeError(
                f"{name} returned a {type(result).__name__}; programs only receive plain values"
            ) from None

    return guarded


def guarded_facade(module: types.ModuleType) -> types.ModuleType:
    """The module programs import as ``bpy_lib``: its public names, each through :func:`guard_verb`."""
    names = [str(n) for n in getattr(module, "__all__", [])]
    facade = types.ModuleType(module.__name__, f"The public verbs of {module.__name__}.")
    for name in names:
        setattr(facade, name, guard_verb(getattr(module, name)))
    facade.__all__ = names  # type: ignore[attr-defined]
    return facade
