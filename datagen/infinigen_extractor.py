"""Infinigen's indoor objects as a source of parts (optional; no Blender in this process).

Infinigen 1.15.5 pins bpy 4.2.0 and numpy < 2, so it lives in its own environment,
``.cache/venv-infinigen`` (``scripts/setup_infinigen.sh``, about a minute). Each asset is spawned
by :mod:`datagen.infinigen_sidecar` in a fresh process of that environment with a
timeout, and comes back through a small protocol: one JSON line on stdout, the mesh in an
npz file (vertices, faces, a label per face: the asset's object and material slot).

:func:`split_parts` turns one asset into parts: one part per label when the asset has
several (material slots, sub-objects), else one per loose piece; pieces that are tiny
next to the asset (helper geometry) are dropped. Parts are written like the part
generator's (``parts.jsonl`` + npz shards) so :mod:`datagen.part_fitter` can turn them
into programs. When the environment is missing, :func:`sidecar_python` returns ``None``
and the command says how to install it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from datagen.progress import progress_bar
from llm3d.config import REPO_ROOT

__all__ = [
    "DEFAULT_FACTORIES",
    "INSTALL_HINT",
    "ExtractedPart",
    "extract_assets",
    "run_sidecar",
    "sidecar_python",
    "split_parts",
]

logger = logging.getLogger(__name__)

SIDECAR_ENV = REPO_ROOT / ".cache" / "venv-infinigen"
INSTALL_HINT = (
    "Infinigen is not installed. Create its environment with ./scripts/setup_infinigen.sh "
    "(about a minute: a separate environment in .cache/venv-infinigen with infinigen==1.15.5, bpy==4.2.0, "
    "numpy<2), or set data.infinigen_python (LLM3D_DATA__INFINIGEN_PYTHON) to a Python "
    "that has it."
)
#: Fast, reproducible factories; the bed (cloth simulation, ~160 s) and the microwave (not
#: reproducible across processes) are left out unless asked for by name.
DEFAULT_FACTORIES = ("SimpleDeskFactory", "TableDiningFactory", "ChairFactory")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ExtractedPart:
    """One part of an asset: its label and mesh."""

    label: str
    vertices: FloatArray
    faces: IntArray


def sidecar_python(configured: Path | None = None) -> Path | None:
    """The sidecar's Python (``data.infinigen_python`` or ``.cache/venv-infinigen``), if present."""
    candidate = configured or SIDECAR_ENV / "bin" / "python"
    return candidate if candidate.is_file() else None


def _subset(vertices: FloatArray, faces: IntArray) -> tuple[FloatArray, IntArray]:
    used, local = np.unique(faces, return_inverse=True)
    return vertices[used], local.reshape(-1, 3).astype(np.int64)


def _label_name(raw: str) -> str:
    """``ChairFactory(0).spawn_asset(0)/shader_wood`` -> ``wood``."""
    name = raw.rsplit("/", 1)[-1]
    name = name.removeprefix("shader_")
    return name.split(".")[0] or raw


def _congruent_sets(pieces: list[tuple[FloatArray, IntArray]]) -> list[list[int]]:
    """Pieces grouped when they are copies of one another (same faces, same spread)."""
    from datagen.fit_composite import shape_key

    sets: list[list[int]] = []
    keys: list[tuple[int, FloatArray]] = []
    for k, (pv, pf) in enumerate(pieces):
        key = shape_key((pv, pf))
        scale = float(np.ptp(pv, axis=0).max()) or 1.0
        for s, (n_faces, other) in enumerate(keys):
            if n_faces == len(pf) and float(np.abs(other - key).max()) < 0.01 * scale:
                sets[s].append(k)
                break
        else:
            keys.append((len(pf), key))
            sets.append([k])
    return sets


def split_parts(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    face_labels: npt.ArrayLike | None = None,
    label_names: Sequence[str] | None = None,
    *,
    min_faces: int = 8,
    min_size: float = 0.03,
    max_parts: int = 24,
) -> list[ExtractedPart]:
    """Split an asset into labelled parts.

    Faces are grouped by label (material slot / sub-object) when there are two or more,
    then each group into its loose pieces; copies of one piece (four equal legs) stay
    together as one part, which the fitter writes as an array. Pieces that are tiny next
    to the asset (helper geometry) are dropped.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    face_labels : (m,) int, optional
        A label per face.
    label_names : sequence of str, optional
        Names of the labels (``Factory(0).spawn_asset(0)/shader_wood`` becomes ``wood``;
        default ``part_<label>``); parts of one label are numbered ``wood 1``, ``wood 2``.
    min_faces : int
        Pieces with fewer faces are dropped.
    min_size : float
        Pieces whose box diagonal is under this share of the asset's are dropped.
    max_parts : int
        The largest parts kept.

    Returns
    -------
    list of ExtractedPart
        Largest first (by box diagonal).
    """
    from datagen.fit_composite import components

    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    diagonal = float(np.linalg.norm(np.ptp(v, axis=0))) or 1.0
    labels = None if face_labels is None else np.asarray(face_labels).reshape(-1)
    if labels is None or len(np.unique(labels)) < 2:
        labels = np.zeros(len(f), dtype=np.int64)
        label_names = ["piece"]
    parts: list[ExtractedPart] = []
    for label in np.unique(labels):
        raw = (
            str(label_names[int(label)])
            if label_names is not None and int(label) < len(label_names)
            else f"part_{int(label)}"
        )
        name = _label_name(raw)
        pieces = [
            (pv, pf)
            for pv, pf in components(*_subset(v, f[labels == label]))
            if len(pf) >= min_faces
            and float(np.linalg.norm(np.ptp(pv, axis=0))) >= min_size * diagonal
        ]
        sets = _congruent_sets(pieces)
        for k, members in enumerate(sets, 1):
            verts, tris, offset = [], [], 0
            for m in members:
                verts.append(pieces[m][0])
                tris.append(pieces[m][1] + offset)
                offset += len(pieces[m][0])
            label_text = name if len(sets) == 1 else f"{name} {k}"
            parts.append(ExtractedPart(label_text, np.concatenate(verts), np.concatenate(tris)))
    parts.sort(key=lambda p: -float(np.linalg.norm(np.ptp(p.vertices, axis=0))))
    return parts[:max_parts]


def run_sidecar(
    factory: str,
    seed: int,
    out_npz: Path,
    *,
    python: Path,
    timeout_s: float = 120.0,
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Spawn one asset in the sidecar; its JSON answer (``ok`` False on any failure).

    ``request`` replaces the spawn request (``{"list": "indoor"}`` lists the factories).
    """
    scratch = Path(tempfile.mkdtemp(prefix="llm3d-infinigen-"))
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        BLENDER_USER_CONFIG=str(scratch / "config"),
        BLENDER_USER_RESOURCES=str(scratch / "resources"),
        MPLCONFIGDIR=str(scratch / "mpl"),
    )
    body = request or {"factory": factory, "seed": seed, "out": str(Path(out_npz).resolve())}
    try:
        proc = subprocess.run(
            [str(python), "-m", "datagen.infinigen_sidecar", json.dumps(body)],
            capture_output=True, text=True, timeout=timeout_s, env=env, cwd=scratch,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout_s:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr or proc.stdout)[-500:]
        return {"ok": False, "error": f"no answer (exit {proc.returncode}): {tail}"}
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def extract_assets(
    out_dir: str | Path,
    factories: Sequence[str] = DEFAULT_FACTORIES,
    seeds: Sequence[int] = (0,),
    *,
    python: Path,
    show_progress: bool = True,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Spawn every (factory, seed), split into parts, write ``parts.jsonl`` + one npz an asset.

    Layout as the part generator's (``parts.jsonl``, ``shards/<asset>.npz`` with
    ``<id>.v``/``<id>.f``), so :func:`datagen.part_generator.iter_parts` and
    ``llm3d data fit DIR`` read it; the sidecar's raw meshes stay in ``raw/``. Resumable:
    an asset whose raw mesh exists is not spawned again.
    """
    out = Path(out_dir)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    jobs = [(factory, seed) for factory in factories for seed in seeds]
    done = sum((out / "raw" / f"{f}-{s:04d}.npz").is_file() for f, s in jobs)
    with progress_bar(
        "infinigen assets", total=len(jobs), completed=done, enabled=show_progress
    ) as bar:
        for factory, seed in jobs:
            asset_id = f"{factory}-{seed:04d}"
            raw = out / "raw" / f"{asset_id}.npz"
            if not raw.is_file():
                answer = run_sidecar(factory, seed, raw, python=python, timeout_s=timeout_s)
                if not answer.get("ok"):
                    failed[asset_id] = str(answer.get("error"))
                    logger.warning("%s failed: %s", asset_id, answer.get("error"))
                    bar.advance(1)
                    continue
            with np.load(raw) as npz:
                parts = split_parts(
                    npz["vertices"], npz["faces"], npz["face_labels"],
                    [str(x) for x in npz["label_names"]],
                )  # fmt: skip
            arrays: dict[str, Any] = {}
            for k, part in enumerate(parts):
                pid = f"{asset_id}-p{k:02d}"
                arrays[f"{pid}.v"] = part.vertices.astype(np.float32)
                arrays[f"{pid}.f"] = part.faces.astype(np.int32)
                rows.append(
                    {"id": pid, "asset": asset_id, "factory": factory, "seed": seed,
                     "label": part.label, "n_faces": len(part.faces), "shard": asset_id}
                )  # fmt: skip
            np.savez_compressed(out / "shards" / f"{asset_id}.npz", **arrays)
            bar.advance(1)
    with (out / "parts.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    # Every asset that did not spawn, and why (a rerun tries them again); the card reads it.
    with (out / "failed.jsonl").open("w", encoding="utf-8") as fh:
        for asset_id, error in failed.items():
            name, number = asset_id.rsplit("-", 1)
            fh.write(json.dumps({"asset": asset_id, "factory": name, "seed": int(number),
                                 "error": error}) + "\n")  # fmt: skip
    return {"out_dir": str(out), "parts": len(rows), "failed": failed}
