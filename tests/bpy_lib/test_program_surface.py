"""Everything a program can reach, walked attribute by attribute: nothing exposes memory.

A program starts from its builtins table, the ``bpy_lib`` facade and ``math`` that the fork
server hands it, and the values the verbs return or raise. From there it can only go through
attributes the policy allows (no ``_`` names, no forbidden attributes, no ``format``). This
test runs a program that keeps every kind of value a verb gives (handles, the exported mesh,
measurements, caught errors), then walks that whole graph the way the program could, and
asserts that every object on it is of a type that exposes nothing: no numpy array or scalar
(``resize(refcheck=False)`` on an exported array was a use-after-free), no memoryview or
buffer, no module but the facades, no frame, code, traceback or Blender object.
"""

from __future__ import annotations

import math
import types
from collections import deque
from typing import Any

import bpy_lib
from worker.sandbox.policy import (
    FORBIDDEN_ATTRIBUTE_PREFIXES,
    FORBIDDEN_ATTRIBUTES,
    restricted_builtins,
)
from worker.sandbox.verb_guard import guarded_facade

PROGRAM = """
from bpy_lib import *
import math
# part_1: seat
seat = box(size=[1, 1, 0.1], location=[0, 0, 0.5])
leg = cylinder(radius=0.05, depth=0.5, location=[0.4, 0.4, 0.25])
legs = grid_array(leg, counts=[2, 2, 1], spacing=[-0.8, -0.8, 1])
both = union(seat, legs)
mesh = export_scene()
vertices, faces = mesh
first = vertices[0]
try:
    box(size=[-1, 1, 1])
except ValueError as exc:
    error = exc
gen = (i for i in range(3))
fn = lambda x: x
"""

#: Types whose instances expose nothing beyond values (their non-underscore attributes are
#: methods and numbers). Anything else on the walk is a finding.
INERT: tuple[type, ...] = (
    int,
    float,
    bool,
    complex,
    str,
    bytes,
    type(None),
    list,
    tuple,
    dict,
    set,
    frozenset,
    range,
    slice,
    type(NotImplemented),
    type(Ellipsis),
    types.BuiltinFunctionType,
    types.BuiltinMethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    types.FunctionType,  # guarded verbs and the program's own lambdas (globals only via dunders)
    types.GeneratorType,  # its frame and code only via gi_* (refused)
    BaseException,
    type({}.keys()),
    type({}.values()),
    type({}.items()),
    type(iter([])),
    type(iter(())),
    type(iter("")),
    type(iter(range(1))),
    type(iter({})),
)


def _allowed(name: str) -> bool:
    return not (
        name.startswith("_")
        or name in FORBIDDEN_ATTRIBUTES
        or name.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES)
        or name in ("format", "format_map")
    )


def _roots() -> tuple[dict[str, Any], set[int]]:
    facade = guarded_facade(bpy_lib)
    table = restricted_builtins({"bpy_lib": facade, "math": math})
    namespace: dict[str, Any] = {"__builtins__": table, "__name__": "__main__"}
    exec(compile(PROGRAM, "<program>", "exec"), namespace)
    modules = {
        id(table["__import__"]("bpy_lib", fromlist=["*"])),
        id(table["__import__"]("math", fromlist=["*"])),
        id(namespace["math"]),
    }
    roots = {f"builtins.{k}": v for k, v in table.items()}
    roots |= {k: v for k, v in namespace.items() if k != "__builtins__"}
    roots |= {f"bpy_lib.{k}": getattr(facade, k) for k in facade.__all__}
    return roots, modules


def test_nothing_a_program_can_reach_exposes_memory_or_internals() -> None:
    roots, facades = _roots()
    assert isinstance(roots["vertices"], tuple) and isinstance(roots["first"][0], float)
    queue: deque[tuple[str, Any, int]] = deque((path, value, 0) for path, value in roots.items())
    seen: set[int] = set()
    findings: list[str] = []
    while queue:
        path, value, depth = queue.popleft()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, types.ModuleType):
            if id(value) not in facades:
                findings.append(f"{path}: module {value.__name__}")
                continue
        elif isinstance(value, type):
            # classes: the safe builtins, exceptions and bpy_lib's own (GeometryError)
            if value.__module__ != "builtins" and not value.__module__.startswith("bpy_lib"):
                findings.append(f"{path}: class {value.__module__}.{value.__qualname__}")
        elif not isinstance(value, INERT):
            findings.append(f"{path}: {type(value).__module__}.{type(value).__qualname__}")
            continue
        if isinstance(value, list | tuple) and depth < 4:
            for i, item in enumerate(value[:3]):
                queue.append((f"{path}[{i}]", item, depth + 1))
        if isinstance(value, dict) and depth < 4:
            for key, item in list(value.items())[:5]:
                queue.append((f"{path}[{key!r}]", item, depth + 1))
        if depth >= 3:
            continue
        for name in dir(value):
            if not _allowed(name):
                continue
            try:
                child = getattr(value, name)
            except Exception:
                continue
            queue.append((f"{path}.{name}", child, depth + 1))
    assert not findings, "\n".join(findings[:40])
    assert len(seen) > 500  # the walk really went through the graph
