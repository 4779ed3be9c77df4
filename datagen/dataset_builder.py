"""Stage 3: objects run, rendered and written as SFT/RL/eval datasets with a card.

Plan: ``round(weight × data.objects_per_category)`` objects of each category of
``configs/categories.yaml`` (:func:`datagen.object_assembler.make_object`, seeded), cut
into splits **per category** by ``data.splits`` (so every split has the same category
mix, and no object is in two splits); the categories of ``data.unseen_categories`` go
whole to ``eval_unseen``. Each object's program runs through
:class:`worker.execution.executor.ExecutorPool` (in parallel); a program that fails, or whose mesh
leaves bpy_lib's frame ([-1, 1]³ plus 5 %), is left out and counted. The mesh is written
to ``meshes/<id>.ply`` and rendered (``render`` section: views, resolution, engine) by
:mod:`datagen.render_stage` into ``images/<id>/``; ``objects/<id>.json`` is written last,
so a stopped build resumes where it stopped.

Then the splits are made honest (:mod:`datagen.splits`: objects that share an asset or
whose shape descriptors lie within ``data.dedup_threshold`` never land in two splits) and
``sft.jsonl``, ``rl.jsonl``, ``eval.jsonl`` and ``eval_unseen.jsonl`` are written (rows of :mod:`llm3d.chat`, in
curriculum order: easy → medium → hard, then by complexity), ``README.md`` (the dataset
card) and ``contact_sheet.png``. Rendering imports Blender in this process.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from datagen.composer import compose_object, solid_parts, touching_groups
from datagen.descriptor import shape_descriptor
from datagen.families import sample_rng
from datagen.object_assembler import (
    DIFFICULTIES,
    Category,
    ObjectProgram,
    load_categories,
    make_object,
    part_body,
)
from datagen.progress import progress_bar
from datagen.splits import UNSEEN, SplitItem, SplitOutcome, separate
from datagen.templates import Part
from llm3d.chat import SPLITS, instruction, make_messages
from llm3d.config import DataConfig, ExecutorConfig, RenderConfig
from llm3d.schemas import ExecStatus
from llm3d.sections import SCENE_LIMIT
from worker.types import ExecResult

__all__ = [
    "SOURCES",
    "BuildSummary",
    "assign_splits",
    "build_dataset",
    "plan_objects",
    "plan_sources",
    "split_rows",
]

logger = logging.getLogger(__name__)

#: The splits ``data.splits`` cuts by ratio; ``eval_unseen`` is whole held-out categories.
RATIO_SPLITS = ("sft", "rl", "eval")
#: Where objects come from (DESIGN §6): the category templates, assembled Infinigen assets
#: (``llm3d data assemble --infinigen``), generated single parts (``llm3d data parts``).
#: random compositions of 2–6 generated parts that touch (:mod:`datagen.composer`).
SOURCES = ("templates", "infinigen", "parts", "composed")
#: bpy_lib's frame plus 5 %: what render.frame: scene frames, so every kept object is in view
FRAME_LIMIT = SCENE_LIMIT


@dataclass
class BuildSummary:
    """What a build wrote."""

    out_dir: str
    objects: int = 0
    built_this_run: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    difficulties: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    card: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["seconds"] = round(self.seconds, 2)
        data["objects_per_s"] = round(self.built_this_run / self.seconds, 3) if self.seconds else 0
        return data


def assign_splits(count: int, ratios: dict[str, float], seed: int, salt: str) -> list[str]:
    """The split of each of ``count`` objects of one category (a seeded shuffle).

    Counts follow ``ratios`` by largest remainder; when there are at least as many objects
    as splits with a positive ratio, each of them gets one or more.

    Raises
    ------
    ValueError
        For an unknown split name or ratios that are not positive in sum.
    """
    unknown = set(ratios) - set(RATIO_SPLITS)
    if unknown:
        raise ValueError(
            f"unknown splits {sorted(unknown)} in data.splits; use {', '.join(RATIO_SPLITS)} "
            "(eval_unseen is set by data.unseen_categories)"
        )
    names = [s for s in RATIO_SPLITS if ratios.get(s, 0) > 0]
    total = sum(ratios[s] for s in names)
    if total <= 0:
        raise ValueError("data.splits must give a positive share to at least one split")
    exact = [count * ratios[s] / total for s in names]
    sizes = [int(np.floor(x)) for x in exact]
    for k in sorted(range(len(names)), key=lambda k: exact[k] - sizes[k], reverse=True):
        if sum(sizes) < count:
            sizes[k] += 1
    if count >= len(names):
        for k in range(len(names)):
            while sizes[k] == 0:
                donor = int(np.argmax(sizes))
                sizes[donor] -= 1
                sizes[k] += 1
    labels = [s for s, n in zip(names, sizes, strict=True) for _ in range(n)]
    order = sample_rng(seed, zlib.crc32(salt.encode("utf-8"))).permutation(count)
    out = [""] * count
    for position, index in enumerate(order):
        out[int(index)] = labels[position]
    return out


def plan_objects(
    categories: dict[str, Category], data: DataConfig, seed: int
) -> list[tuple[ObjectProgram, str]]:
    """Every object of the build with its split, category by category."""
    plan: list[tuple[ObjectProgram, str]] = []
    for category in categories.values():
        count = round(category.weight * data.objects_per_category)
        if category.weight > 0:
            count = max(count, 1)
        splits = assign_splits(count, dict(data.splits), seed, category.name)
        plan.extend((make_object(category, seed, i), splits[i]) for i in range(count))
    return _hold_out(plan, data.unseen_categories)


def _hold_out(
    plan: list[tuple[ObjectProgram, str]], unseen: Sequence[str]
) -> list[tuple[ObjectProgram, str]]:
    """Objects of the held-out categories go to ``eval_unseen``."""
    held = set(unseen)
    return [(obj, UNSEEN if obj.category in held else split) for obj, split in plan]


def plan_sources(
    sources: Sequence[str],
    categories: dict[str, Category],
    data: DataConfig,
    seed: int,
    *,
    infinigen_dir: Path | None = None,
    parts_dir: Path | None = None,
) -> list[tuple[ObjectProgram, str]]:
    """Every object of a build over several sources, each with its split and ``source``.

    Infinigen objects are split per category (one asset is one object, so no asset is in
    two splits); generated parts are split as one group, at most
    ``data.source_max_parts`` of them in their generator's order.

    Raises
    ------
    ValueError
        For an unknown source, or a source whose input folder is missing.
    """
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown sources {unknown}; known: {', '.join(SOURCES)}")
    plan: list[tuple[ObjectProgram, str]] = []
    if "templates" in sources:
        plan += [(replace(o, meta={"source": "templates"}), s)
                 for o, s in plan_objects(categories, data, seed)]  # fmt: skip
    if "infinigen" in sources:
        rows = _jsonl(infinigen_dir, "objects.jsonl", "llm3d data assemble --infinigen DIR")
        by_category: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_category.setdefault(str(row["category"]), []).append(row)
        for category, group in sorted(by_category.items()):
            splits = assign_splits(len(group), dict(data.splits), seed, f"infinigen:{category}")
            for row, split in zip(group, splits, strict=True):
                parts = tuple(Part(str(p["label"]), str(p["code"])) for p in row["parts"])
                meta = {"source": "infinigen", "asset": row["asset"]}
                plan.append((ObjectProgram(str(row["id"]), category, str(row["noun"]), parts,
                                           meta), split))  # fmt: skip
    if "composed" in sources:
        rows = solid_parts(_jsonl(parts_dir, "parts.jsonl", "llm3d data parts --out DIR"))
        count = data.source_composed if len(rows) >= 2 else 0
        if len(rows) < 2:
            logger.warning("composed: fewer than 2 solid generated parts; none composed")
        splits = assign_splits(count, dict(data.splits), seed, "composed") if count else []
        plan += [
            (compose_object(rows, seed, i, max_parts=data.composed_max_parts), split)
            for i, split in enumerate(splits)
        ]
    if "parts" in sources:
        rows = _jsonl(parts_dir, "parts.jsonl", "llm3d data parts --out DIR")
        rows = rows[: data.source_max_parts]
        splits = assign_splits(len(rows), dict(data.splits), seed, "parts") if rows else []
        for row, split in zip(rows, splits, strict=True):
            label = str(row.get("label") or row.get("family") or "part")
            body = part_body(str(row["code"]))
            obj = ObjectProgram(f"part-{row['id']}", "part", label, (Part(label, body),),
                                {"source": "parts", "family": row.get("family")})  # fmt: skip
            plan.append((obj, split))
    return _hold_out(plan, data.unseen_categories)


def _jsonl(folder: Path | None, name: str, how: str) -> list[dict[str, Any]]:
    path = None if folder is None else Path(folder) / name
    if path is None or not path.is_file():
        raise ValueError(f"{name} not found in {folder}; make it with `{how}`")
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _frame_ok(result: ExecResult) -> bool:
    return bool(np.abs(result.vertices).max() <= FRAME_LIMIT)


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    mesh.export(path, file_type="ply")


def _descriptor(out_dir: Path, meta: dict[str, Any]) -> np.ndarray:
    """The object's shape descriptor: stored by the build, or computed from its mesh."""
    if meta.get("descriptor") is not None:
        return np.asarray(meta["descriptor"], dtype=np.float32)
    from llm3d.meshio import load_mesh

    return shape_descriptor(*load_mesh(out_dir / meta["mesh"]))


def split_rows(
    out_dir: Path, reference: str, *, dedup_threshold: float = 0.0
) -> tuple[dict[str, list[dict[str, Any]]], SplitOutcome]:
    """The rows of each split from the finished objects, in curriculum order.

    The planned splits are made honest first (:func:`datagen.splits.separate`): objects of
    one asset, or within ``dedup_threshold`` of each other by their shape descriptors, end
    in one split; near-copies of an ``eval_unseen`` object are left out.
    """
    metas = []
    for meta_path in sorted((out_dir / "objects").glob("*.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("status") == "ok":
            metas.append(meta)
    items = [
        SplitItem(m["id"], str(m.get("asset") or m["id"]), m["split"], _descriptor(out_dir, m))
        for m in metas
    ]
    outcome = separate(items, dedup_threshold)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for meta in metas:
        final = outcome.splits[meta["id"]]
        if final is None:
            continue
        split = final
        text = instruction(meta["noun"], meta["views"])
        row = {
            "id": meta["id"],
            "task_id": meta["id"],
            "source": meta.get("source", "templates"),
            "category": meta["category"],
            "difficulty": meta["difficulty"],
            "complexity": meta["complexity"],
            "n_parts": meta["n_parts"],
            "split": split,
            "code": meta["code"],
            "mesh": meta["mesh"],
            "images": meta["images"],
            "messages": make_messages(
                reference, meta["images"], text, meta["code"] if split == "sft" else None
            ),
        }
        rows[split].append(row)
    rank = {d: k for k, d in enumerate(DIFFICULTIES)}
    for split in rows:
        rows[split].sort(key=lambda r: (rank[r["difficulty"]], r["complexity"], r["id"]))
    return rows, outcome


def build_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    data: DataConfig | None = None,
    executor: ExecutorConfig | None = None,
    render: RenderConfig | None = None,
    categories_file: str | Path | None = None,
    show_progress: bool = True,
    sources: Sequence[str] | None = None,
    infinigen_dir: str | Path | None = None,
    parts_dir: str | Path | None = None,
) -> BuildSummary:
    """Build (or finish building) the object dataset in ``out_dir``; see the module doc.

    Raises
    ------
    ConfigError
        For a bad categories file.
    ValueError
        For bad split ratios.
    """
    from datagen.card import write_card
    from datagen.render_stage import bpy_lib_reference
    from worker.execution.executor import ExecutorPool

    data = data or DataConfig()
    executor = executor or ExecutorConfig()
    render = render or RenderConfig()
    out = Path(out_dir)
    for sub in ("objects", "meshes", "images"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    categories = load_categories(categories_file or data.categories_file)
    plan = plan_sources(
        sources or data.sources, categories, data, seed,
        infinigen_dir=Path(infinigen_dir) if infinigen_dir else None,
        parts_dir=Path(parts_dir) if parts_dir else None,
    )  # fmt: skip
    todo = [
        (obj, split) for obj, split in plan if not (out / "objects" / f"{obj.id}.json").is_file()
    ]
    summary = BuildSummary(out_dir=str(out))
    started = time.perf_counter()
    views = [v.name for v in render.views]

    if todo:
        with (
            ExecutorPool(executor, size=data.workers or None) as pool,
            progress_bar(
                "objects", total=len(plan), completed=len(plan) - len(todo), enabled=show_progress
            ) as bar,
        ):
            pending: deque[tuple[ObjectProgram, str, Future[ExecResult]]] = deque()
            queue = deque(todo)
            while queue or pending:
                while queue and len(pending) < data.in_flight:
                    obj, split = queue.popleft()
                    pending.append(
                        (obj, split, pool.submit(obj.code, timeout_s=data.program_timeout_s))
                    )
                obj, split, future = pending.popleft()
                _finish(out, obj, split, future.result(), render, views)
                summary.built_this_run += 1
                bar.advance(1)

    failed: Counter[str] = Counter()
    for meta_path in (out / "objects").glob("*.json"):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("status") != "ok":
            failed[str(meta.get("status"))] += 1
    rows, outcome = split_rows(out, bpy_lib_reference(), dedup_threshold=data.dedup_threshold)
    for split, split_list in rows.items():
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for row in split_list:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    all_rows = [r for split_list in rows.values() for r in split_list]
    info = {
        "seed": seed,
        "categories_file": str(categories_file or data.categories_file),
        "failed": dict(failed),
        "views": views,
        "resolution": render.resolution,
        "engine": render.engine,
        "unseen_categories": list(data.unseen_categories),
        "dedup_threshold": data.dedup_threshold,
        "split_moved": outcome.moved,
        "split_dropped": outcome.dropped,
    }
    if "infinigen" in (sources or data.sources) and infinigen_dir is not None:
        from datagen.infinigen_survey import factory_report, load_survey, skipped

        info.update(
            infinigen_factories=factory_report(infinigen_dir),
            infinigen_skipped=skipped(load_survey(data.infinigen_survey)),
            infinigen_survey=str(data.infinigen_survey),
            min_object_f_score=data.min_object_f_score,
        )
    card, _ = write_card(out, all_rows, info)
    summary.objects = len(all_rows)
    summary.failed = dict(failed)
    summary.splits = {s: len(r) for s, r in rows.items()}
    summary.difficulties = dict(Counter(r["difficulty"] for r in all_rows))
    summary.sources = dict(Counter(r["source"] for r in all_rows))
    summary.seconds = time.perf_counter() - started
    summary.card = str(card)
    logger.info("dataset: %s", summary.as_dict())
    return summary


def _finish(
    out: Path,
    obj: ObjectProgram,
    split: str,
    result: ExecResult,
    render: RenderConfig,
    views: list[str],
) -> None:
    """Write one object's mesh, views and metadata (metadata last: the resume marker)."""
    from datagen.render_stage import render_object

    meta: dict[str, Any] = {
        "id": obj.id,
        "source": obj.meta.get("source", "templates"),
        "asset": str(obj.meta.get("asset") or obj.id),
        "category": obj.category,
        "noun": obj.noun,
        "split": split,
        "code": obj.code,
        "n_parts": obj.n_parts,
        "ops": obj.ops,
        "complexity": obj.complexity,
        "difficulty": obj.difficulty,
        "views": views,
    }
    if result.status is not ExecStatus.OK:
        meta.update(status=result.status.value, error=result.error)
        logger.warning("%s left out: %s (%s)", obj.id, result.status.value, result.error)
    elif not _frame_ok(result):
        meta.update(status="out_of_frame", error="mesh leaves [-1.05, 1.05]^3")
        logger.warning("%s left out: its mesh leaves bpy_lib's frame", obj.id)
    elif (
        obj.meta.get("source") == "composed" and touching_groups(result.vertices, result.faces) > 1
    ):
        meta.update(status="floating", error="the composed parts do not all touch")
        logger.warning("%s left out: its parts do not all touch", obj.id)
    else:
        mesh_rel = f"meshes/{obj.id}.ply"
        _write_ply(out / mesh_rel, result.vertices, result.faces)
        paths = render_object(result.vertices, result.faces, out / "images" / obj.id, render)
        meta.update(
            status="ok",
            mesh=mesh_rel,
            images=[str(p.relative_to(out)) for p in paths],
            n_vertices=len(result.vertices),
            n_faces=len(result.faces),
            descriptor=[
                round(float(x), 5) for x in shape_descriptor(result.vertices, result.faces)
            ],
        )
    tmp = out / "objects" / f"{obj.id}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    tmp.replace(out / "objects" / f"{obj.id}.json")
