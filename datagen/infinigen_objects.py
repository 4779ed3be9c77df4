"""Infinigen assets as dataset objects: parts fitted, assembled, run and kept if faithful (no Blender).

For every asset of an Infinigen parts folder (``llm3d data infinigen`` output: ``parts.jsonl``,
``shards/``, the whole meshes in ``raw/``), :func:`assemble_assets`:

1. moves and scales the whole asset into ``bpy_lib``'s frame (one transform an asset, as
   :func:`datagen.fit_input.prepare_mesh` would for the whole mesh, recorded in the row),
2. fits every part in that shared frame (``frame="keep"``), so the parts stay where the
   asset has them; repeated parts keep the array/mirror call the fitter found,
3. assembles one object program (``# object: <category>``, one ``# part_k: <label>`` a
   part, one ``export_scene()``) with :func:`datagen.object_assembler.assemble`,
4. runs it in the executor and scores the result against the asset's whole mesh with the
   metrics of DESIGN §3,
5. keeps it in ``objects.jsonl`` when F@0.05 ≥ ``min_f_score``; otherwise writes the reason
   and the score to ``rejects.jsonl``.

The category comes from the factory (``infinigen:`` in ``configs/categories.yaml``).
Resumable: an asset already in either file is not done again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from datagen.fit_input import FrameTransform, prepare_mesh
from datagen.object_assembler import assemble, difficulty, part_body
from datagen.part_fitter import Runner, fit_mesh
from datagen.part_generator import iter_parts
from datagen.progress import progress_bar
from datagen.templates import Part
from llm3d.exceptions import ConfigError, MeshError
from llm3d.schemas import ExecStatus
from worker.metrics import compute_metrics, prepare_ground_truth

__all__ = ["InfinigenCategory", "assemble_assets", "fitted_part_code", "load_infinigen_categories"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InfinigenCategory:
    """The dataset category and noun of an Infinigen factory."""

    factory: str
    category: str
    noun: str


def load_infinigen_categories(path: str | Path) -> dict[str, InfinigenCategory]:
    """The ``infinigen:`` mapping of ``configs/categories.yaml`` (factory -> category, noun).

    Raises
    ------
    ConfigError
        For a missing file or a malformed entry.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"categories file not found: {file} (see configs/categories.yaml)")
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    entries = data.get("infinigen", {}) if isinstance(data, Mapping) else {}
    if not isinstance(entries, Mapping):
        raise ConfigError(f"{file}: 'infinigen:' must map factory -> {{category, noun}}")
    out: dict[str, InfinigenCategory] = {}
    for factory, entry in entries.items():
        if not isinstance(entry, Mapping) or "category" not in entry:
            raise ConfigError(f"{file}: infinigen factory {factory!r} needs a 'category:'")
        category = str(entry["category"])
        out[str(factory)] = InfinigenCategory(
            str(factory), category, str(entry.get("noun", category))
        )
    return out


def _category_of(factory: str, known: Mapping[str, InfinigenCategory]) -> InfinigenCategory:
    if factory in known:
        return known[factory]
    # an unlisted factory: its name without "Factory", lower case (SimpleDesk -> simple desk)
    stem = factory.removesuffix("Factory")
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in stem).strip()
    return InfinigenCategory(factory, words.replace(" ", "_"), words)


def fitted_part_code(program: str) -> str:
    """The body of a fitted program (:func:`datagen.object_assembler.part_body`)."""
    return part_body(program)


def _merge(meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    verts, faces, offset = [], [], 0
    for v, f in meshes:
        verts.append(np.asarray(v, dtype=np.float64))
        faces.append(np.asarray(f, dtype=np.int64) + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def _asset_transform(vertices: np.ndarray, faces: np.ndarray) -> FrameTransform:
    _, _, transform = prepare_mesh(vertices, faces, frame="normalise")
    return transform


def assemble_assets(
    parts_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    runner: Runner,
    min_f_score: float = 0.9,
    categories: Mapping[str, InfinigenCategory] | None = None,
    points: int = 10_000,
    seed: int = 0,
    max_evals: int = 60,
    show_progress: bool = True,
    retry_rejects: bool = False,
) -> dict[str, Any]:
    """Assemble, verify and keep or reject every asset of ``parts_dir``; see the module doc.

    Parameters
    ----------
    parts_dir : str or Path
        An Infinigen parts folder (``parts.jsonl``, ``shards/``, ``raw/``).
    out_dir : str or Path, optional
        Where ``objects.jsonl`` and ``rejects.jsonl`` go (default ``parts_dir``).
    runner : Executor-like
        Runs the assembled programs.
    min_f_score : float
        ``data.min_object_f_score``: the F@0.05 an object needs against its asset's mesh.
    categories : mapping, optional
        Factory -> category (:func:`load_infinigen_categories`).
    points, seed : int
        Samples and seed of the object's score.
    max_evals : int
        The fitter's refinement budget per part.
    retry_rejects : bool
        Assemble the rejected assets again (after a fitter change); kept ones stay.

    Returns
    -------
    dict
        Counts (kept, rejected, assets), the acceptance rate, per-factory counts, seconds.
    """
    folder = Path(parts_dir)
    out = Path(out_dir) if out_dir else folder
    out.mkdir(parents=True, exist_ok=True)
    kept_path, rejects_path = out / "objects.jsonl", out / "rejects.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if retry_rejects and rejects_path.is_file():
        rejects_path.unlink()
    for path, kept in ((kept_path, True), (rejects_path, False)):
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    done[row["asset"]] = {**row, "kept": kept}
    by_asset: dict[str, list[tuple[dict[str, Any], np.ndarray, np.ndarray]]] = defaultdict(list)
    for row, vertices, faces in iter_parts(folder):
        by_asset[row["asset"]].append((row, vertices, faces))
    known = categories or {}
    started = time.perf_counter()
    todo = [a for a in by_asset if a not in done]
    with (
        kept_path.open("a", encoding="utf-8") as kept_fh,
        rejects_path.open("a", encoding="utf-8") as rejects_fh,
        progress_bar("assemble", total=len(by_asset), completed=len(by_asset) - len(todo),
                     enabled=show_progress) as bar,
    ):  # fmt: skip
        for asset in todo:
            row = _assemble_one(asset, by_asset[asset], folder, runner, min_f_score, known,
                                points, seed, max_evals)  # fmt: skip
            (kept_fh if row["kept"] else rejects_fh).write(
                json.dumps({k: v for k, v in row.items() if k != "kept"}) + "\n"
            )
            (kept_fh if row["kept"] else rejects_fh).flush()
            done[asset] = row
            bar.advance(1)
    per_factory: dict[str, dict[str, int]] = defaultdict(lambda: {"kept": 0, "rejected": 0})
    for row in done.values():
        per_factory[row["factory"]]["kept" if row["kept"] else "rejected"] += 1
    kept_n = sum(1 for r in done.values() if r["kept"])
    return {
        "objects": str(kept_path),
        "rejects": str(rejects_path),
        "assets": len(done),
        "kept": kept_n,
        "rejected": len(done) - kept_n,
        "acceptance_rate": round(kept_n / len(done), 4) if done else None,
        "per_factory": dict(per_factory),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _assemble_one(
    asset: str,
    parts: list[tuple[dict[str, Any], np.ndarray, np.ndarray]],
    folder: Path,
    runner: Runner,
    min_f_score: float,
    known: Mapping[str, InfinigenCategory],
    points: int,
    seed: int,
    max_evals: int,
) -> dict[str, Any]:
    factory = str(parts[0][0].get("factory", asset.rsplit("-", 1)[0]))
    cat = _category_of(factory, known)
    row: dict[str, Any] = {
        "asset": asset, "id": f"infinigen-{asset}", "factory": factory,
        "seed": parts[0][0].get("seed"), "category": cat.category, "noun": cat.noun,
        "source": "infinigen", "n_parts": len(parts),
    }  # fmt: skip
    started = time.perf_counter()
    raw = folder / "raw" / f"{asset}.npz"
    try:
        if raw.is_file():
            with np.load(raw) as npz:
                whole = (np.asarray(npz["vertices"]), np.asarray(npz["faces"]))
        else:  # the parts are what there is
            whole = _merge([(v, f) for _, v, f in parts])
        transform = _asset_transform(*whole)
        fitted: list[Part] = []
        part_scores: list[float] = []
        for prow, v, f in parts:
            # each part's program is run as it is fitted: one that bpy_lib rejects (a size
            # rounded to 0, an outline collapsed to a line) gives way to the next candidate
            fit = fit_mesh(transform.to_fitted(v), f, frame="keep", max_evals=max_evals,
                           runner=runner)  # fmt: skip
            fitted.append(Part(str(prow.get("label") or "part"), fitted_part_code(fit.program)))
            part_scores.append(round(fit.f_score, 4))
        code = assemble(cat.noun, fitted)
        row.update(code=code, transform=transform.as_dict(), part_f_scores=part_scores,
                   parts=[{"label": p.label, "code": p.code} for p in fitted])  # fmt: skip
        result = runner.run(code)
        if result.status is not ExecStatus.OK:
            return {**row, "kept": False, "f_score": 0.0,
                    "reason": f"the assembled program did not run: {result.status.value}: "
                              f"{result.error}",
                    "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
        gt = prepare_ground_truth(transform.to_fitted(whole[0]), whole[1], points=points,
                                  seed=seed, unit_cube_points=512)  # fmt: skip
        metrics = compute_metrics(result.vertices, result.faces, gt)
    except (MeshError, ValueError, RuntimeError) as exc:
        return {**row, "kept": False, "f_score": 0.0, "reason": f"{type(exc).__name__}: {exc}",
                "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
    score = float(metrics["f_score_0.05"])
    row.update(
        f_score=round(score, 4),
        metrics={k: round(v, 6) for k, v in metrics.items()},
        difficulty=difficulty(code, len(parts)),
        seconds=round(time.perf_counter() - started, 2),
    )
    if score >= min_f_score:
        return {**row, "kept": True}
    return {**row, "kept": False,
            "reason": f"F@0.05 {score:.3f} against the asset's mesh is below {min_f_score}"}  # fmt: skip
