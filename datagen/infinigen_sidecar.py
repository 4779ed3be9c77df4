"""Spawn one Infinigen asset and write its mesh (Blender-only: runs in the Infinigen sidecar).

Run by :func:`datagen.infinigen_extractor.run_sidecar` as
``.cache/venv-infinigen/bin/python -m datagen.infinigen_sidecar '{"factory": ..., "seed": ..., "out": ...}'``
in its own process (the parent's timeout kills it). It imports nothing of llm3d: the
sidecar environment has bpy 4.2.0, numpy < 2 and infinigen 1.15.5 only.

Protocol: the request is one JSON argument ``{factory, seed, out, index?}`` (or
``{"list": "indoor"}``: the answer's ``factories`` are every indoor factory); the answer is
one JSON line on stdout ``{"ok": true, "out": ..., "objects": [...], "seconds": ...}`` or
``{"ok": false, "error": "..."}``. ``out`` (npz) holds ``vertices`` (n, 3) float32 world
coordinates, ``faces`` (m, 3) int32, ``face_labels`` (m,) int32 and ``label_names``: one
label per (object, material slot) of the returned asset and its children only (some
factories leave helper objects in the scene; they are ignored).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from typing import Any

import numpy as np

KNOWN_MODULES = {
    "ChairFactory": "infinigen.assets.objects.seating",
    "BarChairFactory": "infinigen.assets.objects.seating",
    "OfficeChairFactory": "infinigen.assets.objects.seating",
    "SofaFactory": "infinigen.assets.objects.seating",
    "ArmChairFactory": "infinigen.assets.objects.seating",
    "TableDiningFactory": "infinigen.assets.objects.tables",
    "CoffeeTableFactory": "infinigen.assets.objects.tables",
    "SideTableFactory": "infinigen.assets.objects.tables",
    "SimpleDeskFactory": "infinigen.assets.objects.shelves",
    "SimpleBookcaseFactory": "infinigen.assets.objects.shelves",
    "SingleCabinetFactory": "infinigen.assets.objects.shelves",
    "LargeShelfFactory": "infinigen.assets.objects.shelves",
    "CellShelfFactory": "infinigen.assets.objects.shelves",
    "TVStandFactory": "infinigen.assets.objects.shelves",
}


def resolve(name: str) -> Any:
    """The factory class named ``name`` (or ``module:Class``)."""
    if ":" in name:
        module_name, cls = name.split(":", 1)
        if module_name.startswith("infinigen.assets.objects"):
            # Importing one module alone can hit a circular import (aquarium tank ->
            # materials.fluid); the indoor scenes import every factory package first.
            importlib.import_module("infinigen_examples.constraints.semantics")
        return getattr(importlib.import_module(module_name), cls)
    if name in KNOWN_MODULES:
        return getattr(importlib.import_module(KNOWN_MODULES[name]), name)
    for spec in indoor_factories():
        if spec.endswith(f":{name}"):
            return resolve(spec)
    package = importlib.import_module("infinigen.assets.objects")
    for info in pkgutil.iter_modules(package.__path__):
        try:
            module = importlib.import_module(f"infinigen.assets.objects.{info.name}")
        except Exception:  # some subpackages need optional extras
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no Infinigen factory named {name!r}")


def extract(obj: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """World-space triangles of ``obj`` and its children, labelled by object and material."""
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    names: list[str] = []
    offset = 0
    for item in [obj, *obj.children_recursive]:
        if item.type != "MESH":
            continue
        evaluated = item.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        try:
            mesh.calc_loop_triangles()
            n_v, n_t = len(mesh.vertices), len(mesh.loop_triangles)
            flat = np.zeros(n_v * 3, dtype=np.float32)
            mesh.vertices.foreach_get("co", flat)
            co = flat.reshape(-1, 3)
            matrix = np.array(item.matrix_world, dtype=np.float64)
            world = co @ matrix[:3, :3].T + matrix[:3, 3]
            tri = np.zeros(n_t * 3, dtype=np.int32)
            mesh.loop_triangles.foreach_get("vertices", tri)
            mat = np.zeros(n_t, dtype=np.int32)
            mesh.loop_triangles.foreach_get("material_index", mat)
            slots = [s.material.name if s.material else "" for s in item.material_slots] or [""]
            base = len(names)
            names.extend(f"{item.name}/{slot}" if slot else item.name for slot in slots)
            verts.append(world.astype(np.float32))
            faces.append(tri.reshape(-1, 3) + offset)
            labels.append(base + np.clip(mat, 0, len(slots) - 1))
            offset += n_v
        finally:
            evaluated.to_mesh_clear()
    if not faces:
        raise ValueError("the asset has no mesh")
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(labels), names


def indoor_factories() -> list[str]:
    """Every factory Infinigen's indoor scenes use (``home_asset_usage``), as ``module:Class``.

    Static assets (``infinigen.assets.static_assets``) are left out: they load meshes that
    are downloaded separately, not generated.
    """
    semantics = importlib.import_module("infinigen_examples.constraints.semantics")
    found: set[str] = set()
    for factories in semantics.home_asset_usage().values():
        for cls in factories:
            if cls.__module__.startswith("infinigen.assets.objects"):
                found.add(f"{cls.__module__}:{cls.__name__}")
    return sorted(found, key=lambda spec: spec.split(":")[1])


def main(argv: list[str]) -> int:
    request = json.loads(argv[1])
    started = time.perf_counter()
    if request.get("list") == "indoor":
        try:
            listed: dict[str, Any] = {"ok": True, "factories": indoor_factories()}
        except Exception as exc:  # reported to the parent, never raised
            listed = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write("\n" + json.dumps(listed) + "\n")
        return 0 if listed["ok"] else 1
    try:
        factory = resolve(str(request["factory"]))(factory_seed=int(request["seed"]))
        obj = factory.spawn_asset(int(request.get("index", 0)))
        vertices, faces, labels, names = extract(obj)
        np.savez_compressed(
            request["out"], vertices=vertices, faces=faces.astype(np.int32),
            face_labels=labels.astype(np.int32), label_names=np.array(names),
        )  # fmt: skip
        answer = {"ok": True, "out": request["out"], "labels": names}
    except Exception as exc:  # reported to the parent, never raised
        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    answer["seconds"] = round(time.perf_counter() - started, 3)
    sys.stdout.write("\n" + json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
