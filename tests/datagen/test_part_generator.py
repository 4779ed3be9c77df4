"""Stage 1 in real Blender: programs run, match their stored meshes, runs resume exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datagen.families import generate_part
from datagen.part_generator import check_geometry, generate_parts, iter_parts, read_state
from llm3d.config import DataConfig, ExecutorConfig
from llm3d.schemas import ExecStatus
from worker.types import ExecResult

pytestmark = pytest.mark.blender


def test_small_run_keeps_the_requested_samples(part_run: tuple[Path, object]) -> None:
    out, _ = part_run
    rows = [json.loads(line) for line in (out / "parts.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    assert len({r["id"] for r in rows}) == 30
    assert [r["index"] for r in rows] == sorted(r["index"] for r in rows)
    state = read_state(out)
    assert state["kept"] == 30 and len(state["shards"]) == 3  # 12 + 12 + 6
    assert state["next_index"] == rows[-1]["index"] + 1
    # every attempt is either kept or counted as a rejection with a reason
    assert state["next_index"] == 30 + sum(state["rejected"].values())
    for row in rows:
        assert row["code"] == generate_part(7, row["index"]).code
        assert row["n_faces"] >= 8 and row["ops"]


def test_stored_meshes_are_what_the_programs_make(
    part_run: tuple[Path, object], exec_config: ExecutorConfig
) -> None:
    from worker.execution.executor import Executor

    out, _ = part_run
    samples = list(iter_parts(out))[:8]
    with Executor(exec_config) as ex:
        results = ex.run_many([row["code"] for row, _, _ in samples])
    for (row, vertices, faces), result in zip(samples, results, strict=True):
        assert result.status is ExecStatus.OK, row["id"]
        np.testing.assert_array_equal(result.faces, faces)
        np.testing.assert_allclose(result.vertices, vertices, atol=1e-6)
        assert len(faces) == row["n_faces"]


def test_rerun_resumes_and_matches_one_long_run(
    tmp_path: Path, small_data: DataConfig, exec_config: ExecutorConfig
) -> None:
    kwargs = {"seed": 7, "data": small_data, "executor": exec_config, "show_progress": False}
    first = generate_parts(tmp_path / "a", 14, **kwargs)  # type: ignore[arg-type]
    assert first.kept == 14
    # a stop between a shard's rows and its state: rows of unlisted shards are dropped
    with (tmp_path / "a" / "parts.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "part-9999999", "shard": "parts-99999"}) + "\n")
    again = generate_parts(tmp_path / "a", 20, **kwargs)  # type: ignore[arg-type]
    assert again.kept == 20 and again.kept_this_run == 6
    resumed = [r["code"] for r, _, _ in iter_parts(tmp_path / "a")]
    one_go = generate_parts(tmp_path / "b", 20, **kwargs)  # type: ignore[arg-type]
    assert one_go.kept == 20
    assert resumed == [r["code"] for r, _, _ in iter_parts(tmp_path / "b")]
    done = generate_parts(tmp_path / "a", 20, **kwargs)  # type: ignore[arg-type]
    assert done.kept_this_run == 0 and done.kept == 20
    with pytest.raises(ValueError, match="another folder or the same seed"):
        generate_parts(tmp_path / "a", 25, **{**kwargs, "seed": 8})  # type: ignore[arg-type]


def test_near_duplicates_and_bad_geometry_are_rejected(
    tmp_path: Path, exec_config: ExecutorConfig
) -> None:
    # one family with a coarse threshold: many samples look alike and must be dropped
    data = DataConfig(
        shard_size=50, in_flight=8, workers=1, part_families={"sphere": 1.0}, dedup_threshold=0.5
    )
    summary = generate_parts(
        tmp_path, 6, seed=1, data=data, executor=exec_config, show_progress=False
    )
    assert summary.rejected.get("duplicate", 0) > 0
    descriptors = []
    with np.load(next((tmp_path / "shards").glob("*.npz"))) as npz:
        descriptors = npz["descriptors"]
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(descriptors) for b in descriptors[:i]]
    assert min(gaps) >= 0.5
    flat = ExecResult(
        status=ExecStatus.OK,
        vertices=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]] * 3, np.float32),
        faces=np.array([[0, 1, 2], [1, 3, 2]] * 5, np.int32),
    )
    assert check_geometry(flat, 100) == "flat"
    assert check_geometry(ExecResult(status=ExecStatus.TIMEOUT), 100) == "timeout"
