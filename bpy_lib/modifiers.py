"""Modifiers and deformers, always applied so the mesh is real.

``bevel``, ``solidify`` and ``subdivide`` run Blender's modifiers through the depsgraph.
``taper``, ``twist`` and ``bend`` (and ``simple_deform``, which names one of them) move
the vertices directly, measured along ``axis`` over the part's own bounding box: they
need enough vertices along that axis (``subdivide`` or more ``segments`` first).
"""

from __future__ import annotations

import math

import numpy as np

from bpy_lib import _mesh
from bpy_lib import _validate as check
from bpy_lib._geom import AXES

__all__ = ["bend", "bevel", "simple_deform", "solidify", "subdivide", "taper", "twist"]

XYZ = ("X", "Y", "Z")


def bevel(part: str, width: float, segments: int = 3, angle: float = 30.0) -> str:
    """Round the edges sharper than angle degrees with width and segments."""
    fn = "bevel"
    obj = _mesh.get(fn, "part", part)
    w = check.number(fn, "width", width, 0.0, 0.5, open_lo=True)
    n = check.integer(fn, "segments", segments, 1, 16)
    a = check.number(fn, "angle", angle, 0.0, 180.0)
    mod = obj.modifiers.new(fn, "BEVEL")
    mod.width = w  # type: ignore[attr-defined]
    mod.segments = n  # type: ignore[attr-defined]
    mod.limit_method = "ANGLE"  # type: ignore[attr-defined]
    mod.angle_limit = math.radians(a)  # type: ignore[attr-defined]
    _mesh.apply_modifier(obj, mod, fn)
    return obj.name


def solidify(part: str, thickness: float, offset: float = -1.0) -> str:
    """Give a surface a wall of thickness; offset -1 grows inwards, 1 outwards, 0 both ways."""
    fn = "solidify"
    obj = _mesh.get(fn, "part", part)
    t = check.number(fn, "thickness", thickness, 0.0, 0.5, open_lo=True)
    o = check.number(fn, "offset", offset, -1.0, 1.0)
    mod = obj.modifiers.new(fn, "SOLIDIFY")
    mod.thickness = t  # type: ignore[attr-defined]
    mod.offset = o  # type: ignore[attr-defined]
    mod.use_even_offset = True  # type: ignore[attr-defined]
    _mesh.apply_modifier(obj, mod, fn)
    return obj.name


def subdivide(part: str, levels: int = 1, smooth: bool = True) -> str:
    """Split every face levels (1-3) times; smooth=True rounds the shape (Catmull-Clark)."""
    fn = "subdivide"
    obj = _mesh.get(fn, "part", part)
    k = check.integer(fn, "levels", levels, 1, 3)
    is_smooth = check.flag(fn, "smooth", smooth)
    mod = obj.modifiers.new(fn, "SUBSURF")
    mod.levels = k  # type: ignore[attr-defined]
    mod.render_levels = k  # type: ignore[attr-defined]
    mod.subdivision_type = "CATMULL_CLARK" if is_smooth else "SIMPLE"  # type: ignore[attr-defined]
    _mesh.apply_modifier(obj, mod, fn)
    return obj.name


def _deform(fn: str, part: str, method: str, amount: float, axis: str, toward: str) -> str:
    obj = _mesh.get(fn, "part", part)
    k = AXES[axis]
    verts = _mesh.read_points(obj)
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    span = float(hi[k] - lo[k])
    if span < 1e-9:
        raise ValueError(f"{fn}(axis): the part {part!r} is flat along {axis}; choose another axis")
    mid = (lo + hi) / 2
    t = (verts[:, k] - lo[k]) / span
    a, b = [j for j in range(3) if j != k]
    out = verts.copy()
    if method == "taper":
        f = 1.0 + (amount - 1.0) * t
        out[:, a] = mid[a] + (verts[:, a] - mid[a]) * f
        out[:, b] = mid[b] + (verts[:, b] - mid[b]) * f
    elif method == "twist":
        phi = math.radians(amount) * t
        da, db = verts[:, a] - mid[a], verts[:, b] - mid[b]
        out[:, a] = mid[a] + da * np.cos(phi) - db * np.sin(phi)
        out[:, b] = mid[b] + da * np.sin(phi) + db * np.cos(phi)
    else:
        j = AXES[toward]
        if j == k:
            raise ValueError(f"{fn}(toward): must differ from axis {axis!r}")
        theta = math.radians(amount)
        radius = span / theta
        phi = theta * t
        d = verts[:, j] - mid[j]
        out[:, k] = lo[k] + (radius - d) * np.sin(phi)
        out[:, j] = mid[j] + radius - (radius - d) * np.cos(phi)
    _mesh.set_points(obj, out)
    return obj.name


def taper(part: str, factor: float, axis: str = "Z") -> str:
    """Scale cross-sections linearly along axis: 1 at its low end, factor (0-10) at its high end."""
    fn = "taper"
    f = check.number(fn, "factor", factor, 0.0, 10.0)
    return _deform(fn, part, "taper", f, check.choice(fn, "axis", axis, XYZ), "X")


def twist(part: str, angle: float, axis: str = "Z") -> str:
    """Twist about the axis through the part's centre: 0 at the low end, angle degrees at the high end."""
    fn = "twist"
    a = check.angle(fn, "angle", angle)
    return _deform(fn, part, "twist", a, check.choice(fn, "axis", axis, XYZ), "X")


def bend(part: str, angle: float, axis: str = "Z", toward: str = "X") -> str:
    """Bend the part's length along axis into an arc of angle degrees curving toward +toward."""
    fn = "bend"
    a = check.number(fn, "angle", angle, -360.0, 360.0, nonzero=True)
    ax = check.choice(fn, "axis", axis, XYZ)
    return _deform(fn, part, "bend", a, ax, check.choice(fn, "toward", toward, XYZ))


def simple_deform(part: str, method: str, amount: float, axis: str = "Z") -> str:
    """Blender-style simple deform: method 'twist'/'bend' (amount in degrees) or 'taper' (factor)."""
    fn = "simple_deform"
    m = check.choice(fn, "method", method, ("twist", "bend", "taper"))
    if m == "twist":
        return twist(part, amount, axis)
    if m == "taper":
        return taper(part, amount, axis)
    toward = "X" if check.choice(fn, "axis", axis, XYZ) != "X" else "Z"
    return bend(part, amount, axis, toward)
