"""Argument checking shared by every bpy_lib function.

The model reads these messages, so each one names the function, the argument, what it
got and what is allowed, in one English sentence: ``box(size): expected 3 numbers in
(0, 2], got [1, -1, 1]``. Type mistakes raise :class:`TypeError`, out-of-range values
:class:`ValueError`; operations that produce nothing raise :class:`GeometryError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

#: Coordinates (locations, centres, offsets, points) may lie in [-COORD, COORD].
COORD = 2.0
#: Lengths (sizes, radii, depths) lie in (0, LENGTH].
LENGTH = 2.0
#: Angles in degrees lie in [-ANGLE, ANGLE].
ANGLE = 360.0
#: Resolution arguments (segments, rings, resolution) lie in [3, MAX_SEGMENTS].
MAX_SEGMENTS = 256

Vec3 = tuple[float, float, float]
FloatArray = NDArray[np.float64]


class GeometryError(ValueError):
    """An operation ran but its result is unusable (empty boolean, no overlap, flat loft)."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def number(
    fn: str,
    arg: str,
    value: object,
    lo: float,
    hi: float,
    *,
    open_lo: bool = False,
    nonzero: bool = False,
) -> float:
    """Check one real number against ``[lo, hi]`` (``(lo, hi]`` when ``open_lo``)."""
    left = "(" if open_lo else "["
    allowed = f"a number in {left}{lo:g}, {hi:g}]" + (", not 0" if nonzero else "")
    if not _is_number(value):
        raise TypeError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")
    x = float(value)  # type: ignore[arg-type]
    bad = (
        not math.isfinite(x) or x > hi or x < lo or (open_lo and x <= lo) or (nonzero and x == 0.0)
    )
    if bad:
        raise ValueError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")
    return x


def length(fn: str, arg: str, value: object, hi: float = LENGTH) -> float:
    """A strictly positive length up to ``hi``."""
    return number(fn, arg, value, 0.0, hi, open_lo=True)


def angle(fn: str, arg: str, value: object) -> float:
    """An angle in degrees in [-360, 360]."""
    return number(fn, arg, value, -ANGLE, ANGLE)


def integer(fn: str, arg: str, value: object, lo: int, hi: int) -> int:
    """Check a whole number in ``[lo, hi]``."""
    allowed = f"a whole number in [{lo}, {hi}]"
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")
    n = int(value)
    if not lo <= n <= hi:
        raise ValueError(f"{fn}({arg}): expected {allowed}, got {n}")
    return n


def segments(fn: str, arg: str, value: object, lo: int = 3) -> int:
    """A resolution argument in ``[lo, 256]``."""
    return integer(fn, arg, value, lo, MAX_SEGMENTS)


def vector(
    fn: str,
    arg: str,
    value: object,
    size: int = 3,
    lo: float = -COORD,
    hi: float = COORD,
    *,
    positive: bool = False,
) -> tuple[float, ...]:
    """Check a list of ``size`` numbers, each in ``[lo, hi]`` (``(0, hi]`` when positive)."""
    rng = f"(0, {hi:g}]" if positive else f"[{lo:g}, {hi:g}]"
    allowed = f"a list of {size} numbers in {rng}"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")
    items = list(value)
    if len(items) != size or not all(_is_number(v) for v in items):
        raise TypeError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")
    xs = tuple(float(v) for v in items)
    for x in xs:
        if not math.isfinite(x) or x > hi or x < lo or (positive and x <= 0.0):
            raise ValueError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")
    return xs


def vec3(fn: str, arg: str, value: object, lo: float = -COORD, hi: float = COORD) -> Vec3:
    """A 3-D point or offset."""
    x, y, z = vector(fn, arg, value, 3, lo, hi)
    return (x, y, z)


def size3(fn: str, arg: str, value: object, hi: float = LENGTH) -> Vec3:
    """Three positive lengths; a single number means the same on all axes."""
    if _is_number(value):
        s = length(fn, arg, value, hi)
        return (s, s, s)
    x, y, z = vector(fn, arg, value, 3, 0.0, hi, positive=True)
    return (x, y, z)


def direction(fn: str, arg: str, value: object) -> FloatArray:
    """A non-zero 3-D direction, returned normalised."""
    v = np.array(vector(fn, arg, value, 3, -COORD, COORD), dtype=np.float64)
    n = float(np.linalg.norm(v))
    if n < 1e-9:
        raise ValueError(f"{fn}({arg}): expected a non-zero direction, got {_show(value)}")
    return v / n


def choice(fn: str, arg: str, value: object, options: Sequence[str]) -> str:
    """One of ``options``, compared without case; returns the canonical spelling."""
    allowed = "one of " + ", ".join(repr(o) for o in options)
    if not isinstance(value, str):
        raise TypeError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")
    for option in options:
        if value.lower() == option.lower():
            return option
    raise ValueError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")


def flag(fn: str, arg: str, value: object) -> bool:
    """A real ``True``/``False``."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{fn}({arg}): expected True or False, got {_show(value)}")
    return bool(value)


def points(
    fn: str,
    arg: str,
    value: object,
    *,
    min_count: int = 2,
    max_count: int = 512,
    dims: tuple[int, ...] = (2, 3),
) -> FloatArray:
    """A list of 2-D or 3-D points with coordinates in [-2, 2], as an ``(n, d)`` array."""
    shape = " or ".join(f"[x, {'y' if d == 2 else 'y, z'}]" for d in dims)
    allowed = f"a list of {min_count} to {max_count} points {shape} with coordinates in [-2, 2]"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"{fn}({arg}): expected {allowed}, got {_show(value)}")
    rows = list(value)
    if not min_count <= len(rows) <= max_count:
        raise ValueError(f"{fn}({arg}): expected {allowed}, got {len(rows)} points")
    width = None
    for row in rows:
        if isinstance(row, str | bytes) or not isinstance(row, Sequence | np.ndarray):
            raise TypeError(f"{fn}({arg}): expected {allowed}, got the point {_show(row)}")
        if len(row) not in dims or not all(_is_number(v) for v in row):
            raise TypeError(f"{fn}({arg}): expected {allowed}, got the point {_show(row)}")
        if width is not None and len(row) != width:
            raise ValueError(f"{fn}({arg}): all points need the same number of coordinates")
        width = len(row)
    arr = np.array(rows, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.abs(arr).max() > COORD:
        raise ValueError(f"{fn}({arg}): expected {allowed}, some coordinate is outside")
    return arr


def name(fn: str, value: object) -> str | None:
    """A new part name: ``None`` or 1 to 60 characters (letters, digits, ``_ - .`` and space)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{fn}(name): expected a string or None, got {_show(value)}")
    ok = 1 <= len(value) <= 60 and all(c.isalnum() or c in "_-. " for c in value)
    if not ok:
        raise ValueError(
            f"{fn}(name): expected 1 to 60 letters, digits, '_', '-', '.' or spaces, "
            f"got {_show(value)}"
        )
    return value
