"""bpy_lib: the constrained modeling library that generated programs are written against.

Runs inside Blender (the ``bpy`` 4.2 wheel or the app). A program is
``from bpy_lib import *``, one ``# part_k: label`` comment per part, modeling calls, and
``export_scene()`` last.

Conventions
-----------
- Right-handed, Z-up frame; the object fits in [-1, 1]³. Lengths lie in (0, 2], points and
  offsets in [-2, 2], angles are degrees in [-360, 360]; two decimals are always enough.
- Every creating function returns a handle: the new part's name (a string) that every other
  function accepts. ``name=`` picks it (it must be new); otherwise it is made up from the
  function's name (``box``, ``box.001``, ...).
- A part's pivot is where it was made (its ``location`` or ``center``); rotations and
  scales turn about it unless ``pivot=`` is given. Mesh coordinates plus the pivot are
  world coordinates: objects never carry rotation or scale.
- Curves (polyline, arc, circle, ...) are reusable inputs of sweeps; they export nothing.
- Every function validates its arguments and raises ``TypeError``/``ValueError`` naming the
  function, the argument and the allowed values; operations with an empty result raise
  :class:`GeometryError` (a ``ValueError``).
- Deterministic: the same program gives byte-identical arrays. Geometry is built with numpy
  and written through the data API (``foreach_set``); bevel, solidify, subdivision and the
  exact booleans are Blender modifiers evaluated through the depsgraph. Never ``bpy.ops``,
  so nothing depends on a UI context.

:func:`reference` returns the compact text reference given to the model.
"""

from __future__ import annotations

from bpy_lib._validate import GeometryError
from bpy_lib.arrays import grid_array, linear_array, radial_array
from bpy_lib.booleans import difference, intersection, union
from bpy_lib.curves import (
    arc,
    bezier,
    circle,
    helix,
    polygon,
    polyline,
    rectangle,
    rounded_rectangle,
)
from bpy_lib.modifiers import bend, bevel, simple_deform, solidify, subdivide, taper, twist
from bpy_lib.primitives import box, capsule, cone, cylinder, plane, prism, sphere, torus, wedge
from bpy_lib.refdoc import reference
from bpy_lib.scene import bounds, clear_scene, delete, duplicate, export_scene, join, parts
from bpy_lib.sweeps import extrude, loft, revolve, sweep
from bpy_lib.transforms import align, align_axis, mirror, move, rotate, scale

__all__ = [
    "GeometryError",
    "align",
    "align_axis",
    "arc",
    "bend",
    "bevel",
    "bezier",
    "bounds",
    "box",
    "capsule",
    "circle",
    "clear_scene",
    "cone",
    "cylinder",
    "delete",
    "difference",
    "duplicate",
    "export_scene",
    "extrude",
    "grid_array",
    "helix",
    "intersection",
    "join",
    "linear_array",
    "loft",
    "mirror",
    "move",
    "parts",
    "plane",
    "polygon",
    "polyline",
    "prism",
    "radial_array",
    "rectangle",
    "reference",
    "revolve",
    "rotate",
    "rounded_rectangle",
    "scale",
    "simple_deform",
    "solidify",
    "sphere",
    "subdivide",
    "sweep",
    "taper",
    "torus",
    "twist",
    "union",
    "wedge",
]
