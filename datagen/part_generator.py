"""Stage 1: single-part programs of every ``bpy_lib`` family, run and filtered (no Blender here).

Sample ``i`` of a run seeded with ``s`` is :func:`datagen.families.generate_part` ``(s, i)``:
the same program on every machine. Programs run in parallel through
:class:`worker.execution.executor.ExecutorPool` (the sandboxed fork servers), ``data.in_flight`` ahead
of the writer; results are taken in index order, so the output does not depend on timing.
A sample is kept when it ran (``ok``), is not degenerate (enough faces, not too many, a
real extent in every direction) and its :func:`~datagen.descriptor.shape_descriptor` is not
within ``data.dedup_threshold`` of an earlier sample's.

Output, under ``OUT/``::

    parts.jsonl             one row a kept sample: id, index, family, label, ops, params,
                            modifier, n_vertices, n_faces, bbox, code, shard
    shards/parts-00000.npz  its meshes: ``{id}.v`` (n, 3) float32, ``{id}.f`` (m, 3) int32,
                            and ``descriptors`` / ``ids`` for the duplicate index
    state.json              next index, shards written, counts of rejections (by reason)

Resumable: a shard's rows are appended to ``parts.jsonl`` and ``state.json`` is replaced
(atomically) only after its npz is written, so a run stopped at any point continues from
the last complete shard, and a rerun with a larger ``n`` extends the same sequence.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from datagen.descriptor import DescriptorIndex, shape_descriptor
from datagen.families import PartProgram, Ranges, generate_part
from datagen.progress import progress_bar
from llm3d.config import DataConfig, ExecutorConfig
from llm3d.exceptions import MeshError
from llm3d.schemas import ExecStatus
from llm3d.sections import SCENE_LIMIT
from worker.geometry.sampling import face_areas_normals
from worker.types import ExecResult

__all__ = ["PartRunSummary", "check_geometry", "generate_parts", "iter_parts", "read_state"]

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
ROWS_FILE = "parts.jsonl"
SHARD_DIR = "shards"
MIN_EXTENT = 1e-3
MIN_FACES = 8
#: bpy_lib's frame is [-1, 1]³; parts reaching past it (plus 5 %) are rejected.
FRAME_LIMIT = SCENE_LIMIT


@dataclass
class PartRunSummary:
    """What a run did: counts, rejections by reason, and its throughput."""

    out_dir: str
    kept: int = 0
    attempted: int = 0
    kept_this_run: int = 0
    attempted_this_run: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    families: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    seconds: float = 0.0

    @property
    def samples_per_s(self) -> float:
        """Kept samples a second in this run."""
        return self.kept_this_run / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (with ``samples_per_s``)."""
        data = dict(self.__dict__)
        data["samples_per_s"] = round(self.samples_per_s, 3)
        data["seconds"] = round(self.seconds, 3)
        return data


def read_state(out_dir: Path) -> dict[str, Any]:
    """The run's ``state.json`` (a fresh state when there is none)."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return {"next_index": 0, "shards": [], "kept": 0, "rejected": {}, "families": {}}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def check_geometry(result: ExecResult, max_faces: int) -> str | None:
    """Why a run's mesh is unusable as a part (``None`` when it is fine).

    Reasons: the executor status when not ``ok``, ``few_faces``, ``many_faces``, ``flat``
    (an extent under 1e-3: no volume), ``out_of_frame`` (beyond bpy_lib's [-1, 1]³ plus
    5 %), ``no_area``.
    """
    if result.status is not ExecStatus.OK:
        return result.status.value
    n_faces = len(result.faces)
    if n_faces < MIN_FACES:
        return "few_faces"
    if n_faces > max_faces:
        return "many_faces"
    extent = result.vertices.max(axis=0) - result.vertices.min(axis=0)
    if float(extent.min()) < MIN_EXTENT:
        return "flat"
    if float(np.abs(result.vertices).max()) > FRAME_LIMIT:
        return "out_of_frame"
    areas, _ = face_areas_normals(result.vertices.astype(np.float64), result.faces.astype(np.int64))
    if float(areas.sum()) < 1e-4:
        return "no_area"
    return None


def _ranges(config: DataConfig) -> Ranges:
    return Ranges(
        size=(float(config.part_size_range[0]), float(config.part_size_range[1])),
        thickness=(float(config.part_thickness_range[0]), float(config.part_thickness_range[1])),
        modifier_prob=config.part_modifier_prob,
    )


def _truncate_rows(rows_path: Path, shards: set[str]) -> None:
    """Drop rows of shards that state.json does not list (a run stopped mid-flush)."""
    if not rows_path.is_file():
        return
    kept = [
        line
        for line in rows_path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("shard") in shards
    ]
    rows_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class _Writer:
    """Buffers kept samples and writes them a shard at a time."""

    def __init__(self, out: Path, state: dict[str, Any], shard_size: int) -> None:
        self.out = out
        self.state = state
        self.shard_size = shard_size
        self.rows: list[dict[str, Any]] = []
        self.arrays: dict[str, npt.NDArray[Any]] = {}
        self.descriptors: list[npt.NDArray[np.float32]] = []

    def add(
        self, row: dict[str, Any], result: ExecResult, descriptor: npt.NDArray[np.float32]
    ) -> None:
        self.rows.append(row)
        self.arrays[f"{row['id']}.v"] = result.vertices.astype(np.float32)
        self.arrays[f"{row['id']}.f"] = result.faces.astype(np.int32)
        self.descriptors.append(descriptor)

    def flush(self, next_index: int) -> None:
        self.state["next_index"] = next_index
        if self.rows:
            name = f"parts-{len(self.state['shards']):05d}"
            shard_path = self.out / SHARD_DIR / f"{name}.npz"
            arrays: dict[str, Any] = {
                "descriptors": np.stack(self.descriptors),
                "ids": np.array([r["id"] for r in self.rows]),
                **self.arrays,
            }
            np.savez_compressed(shard_path, **arrays)
            with (self.out / ROWS_FILE).open("a", encoding="utf-8") as fh:
                for row in self.rows:
                    row["shard"] = name
                    fh.write(json.dumps(row, separators=(",", ":")) + "\n")
            self.state["shards"].append(name)
            self.state["kept"] += len(self.rows)
        _write_json_atomic(self.out / STATE_FILE, self.state)
        self.rows, self.arrays, self.descriptors = [], {}, []


def generate_parts(
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    data: DataConfig | None = None,
    executor: ExecutorConfig | None = None,
    show_progress: bool = True,
) -> PartRunSummary:
    """Generate until ``out_dir`` holds ``n`` kept part samples (resuming a previous run).

    Parameters
    ----------
    out_dir : str or Path
        The run folder (created). A folder made with another seed is refused.
    n : int
        Kept samples wanted in total (not attempts). Gives up after ``5 n + 100`` attempts.
    seed : int
        The run's seed; sample ``i`` is :func:`~datagen.families.generate_part` ``(seed, i)``.
    data, executor : optional
        The ``data`` and ``executor`` configuration sections (defaults when omitted).
    show_progress : bool
        A rich progress bar with rate and ETA.

    Raises
    ------
    ValueError
        When ``out_dir`` was started with another seed or other family weights.
    """
    from worker.execution.executor import ExecutorPool

    data = data or DataConfig()
    executor = executor or ExecutorConfig()
    out = Path(out_dir)
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    state = read_state(out)
    families = dict(data.part_families)
    fingerprint = {"seed": seed, "families": families, "ranges": list(map(list, _ranges_t(data)))}
    if state.get("fingerprint", fingerprint) != fingerprint:
        raise ValueError(
            f"{out} holds a run made with {state['fingerprint']}, not {fingerprint}; "
            "use another folder or the same seed and ranges"
        )
    state["fingerprint"] = fingerprint
    _truncate_rows(out / ROWS_FILE, set(state["shards"]))

    index = DescriptorIndex(data.dedup_threshold)
    for shard in state["shards"]:
        with np.load(out / SHARD_DIR / f"{shard}.npz") as npz:
            index.extend(npz["descriptors"])
    rejected: Counter[str] = Counter(state.get("rejected", {}))
    family_counts: Counter[str] = Counter(state.get("families", {}))
    summary = PartRunSummary(out_dir=str(out), kept=int(state["kept"]))
    names = list(families) or None
    weights = list(families.values()) or None
    ranges = _ranges(data)
    start_index = int(state["next_index"])
    max_index = start_index + 5 * max(n - summary.kept, 0) + 100
    writer = _Writer(out, state, data.shard_size)
    started = time.perf_counter()
    if summary.kept >= n:
        summary.attempted = start_index
        summary.shards = len(state["shards"])
        return summary

    pending: deque[tuple[int, PartProgram, Future[ExecResult]]] = deque()
    kept_total = summary.kept
    next_index = start_index
    with (
        ExecutorPool(executor, size=data.workers or None) as pool,
        progress_bar("parts", total=n, completed=kept_total, enabled=show_progress) as bar,
    ):

        def submit_more() -> None:
            nonlocal next_index
            while len(pending) < data.in_flight and next_index < max_index:
                part = generate_part(seed, next_index, ranges, names, weights)
                future = pool.submit(part.code, timeout_s=data.program_timeout_s)
                pending.append((next_index, part, future))
                next_index += 1

        submit_more()
        while pending and kept_total < n:
            i, part, future = pending.popleft()
            result = future.result()
            summary.attempted_this_run += 1
            reason = check_geometry(result, data.max_part_faces)
            descriptor = None
            if reason is None:
                try:
                    descriptor = shape_descriptor(result.vertices, result.faces)
                except MeshError:
                    reason = "flat"
            if reason is None and descriptor is not None and index.is_duplicate(descriptor):
                reason = "duplicate"
            if reason is not None or descriptor is None:
                rejected[reason or "flat"] += 1
            else:
                index.add(descriptor)
                family_counts[part.family] += 1
                writer.add(_row(i, part, result), result, descriptor)
                kept_total += 1
                summary.kept_this_run += 1
                bar.advance(1)
            state["rejected"] = dict(rejected)
            state["families"] = dict(family_counts)
            if len(writer.rows) >= data.shard_size:
                writer.flush(i + 1)
            submit_more()
        last = pending[0][0] if pending else next_index
        for _, _, future in pending:  # the look-ahead beyond n: not needed, not counted
            future.cancel()
        writer.flush(last)

    summary.seconds = time.perf_counter() - started
    summary.kept = kept_total
    summary.attempted = int(state["next_index"])
    summary.rejected = dict(rejected)
    summary.families = dict(family_counts)
    summary.shards = len(state["shards"])
    if kept_total < n:
        logger.warning(
            "stopped after %d attempts with %d of %d samples kept (rejections: %s)",
            summary.attempted,
            kept_total,
            n,
            dict(rejected),
        )
    logger.info("parts: %s", summary.as_dict())
    return summary


def _ranges_t(data: DataConfig) -> tuple[tuple[float, float], tuple[float, float]]:
    return (
        (float(data.part_size_range[0]), float(data.part_size_range[1])),
        (float(data.part_thickness_range[0]), float(data.part_thickness_range[1])),
    )


def _row(index: int, part: PartProgram, result: ExecResult) -> dict[str, Any]:
    lo = result.vertices.min(axis=0)
    hi = result.vertices.max(axis=0)
    return {
        "id": f"part-{index:07d}",
        "index": index,
        "family": part.family,
        "label": part.label,
        "ops": part.ops,
        "modifier": part.modifier,
        "params": part.params,
        "n_vertices": len(result.vertices),
        "n_faces": len(result.faces),
        "bbox": [[round(float(x), 4) for x in lo], [round(float(x), 4) for x in hi]],
        "seconds": round(result.seconds, 4),
        "code": part.code,
    }


def iter_parts(
    out_dir: str | Path,
) -> Iterator[tuple[dict[str, Any], npt.NDArray[np.float32], npt.NDArray[np.int32]]]:
    """``(row, vertices, faces)`` of every kept sample of a run, in index order."""
    out = Path(out_dir)
    rows_path = out / ROWS_FILE
    if not rows_path.is_file():
        raise FileNotFoundError(f"{rows_path} not found: run `llm3d data parts` first")
    open_shard: tuple[str, Any] | None = None
    try:
        for line in rows_path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if open_shard is None or open_shard[0] != row["shard"]:
                if open_shard is not None:
                    open_shard[1].close()
                open_shard = (row["shard"], np.load(out / SHARD_DIR / f"{row['shard']}.npz"))
            npz = open_shard[1]
            yield row, npz[f"{row['id']}.v"], npz[f"{row['id']}.f"]
    finally:
        if open_shard is not None:
            open_shard[1].close()
