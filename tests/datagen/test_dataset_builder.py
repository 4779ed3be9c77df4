"""Stage 3 in real Blender: a tiny dataset built, validated, loaded, registered, resumed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from datagen.object_assembler import DIFFICULTIES
from llm3d.chat import ChatRow
from llm3d.config import DataConfig, ExecutorConfig, RenderConfig, ViewConfig

pytestmark = pytest.mark.blender

RENDER = RenderConfig(
    resolution=64,
    views=[
        ViewConfig(name="front", azimuth_deg=0, elevation_deg=0),
        ViewConfig(name="three_quarter", azimuth_deg=45, elevation_deg=30),
    ],
)


@pytest.fixture(scope="module")
def dataset(
    tmp_path_factory: pytest.TempPathFactory, exec_config: ExecutorConfig
) -> Iterator[tuple[Path, dict[str, object]]]:
    from tests.datagen.conftest import blender_available

    if not blender_available():
        pytest.skip("bpy is not installed")
    from datagen.dataset_builder import build_dataset

    root = tmp_path_factory.mktemp("objects")
    cats = root / "cats.yaml"
    cats.write_text(
        "categories:\n  stool: {weight: 1.0}\n  mug: {weight: 1.0}\n  ladder: {weight: 0.5}\n"
    )
    data = DataConfig(objects_per_category=6, workers=2, in_flight=8)
    out = root / "ds"
    summary = build_dataset(
        out,
        seed=3,
        data=data,
        executor=exec_config,
        render=RENDER,
        categories_file=cats,
        show_progress=False,
        sources=["templates"],
    )
    yield out, {"summary": summary, "data": data, "cats": cats}


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_validate_and_splits_are_disjoint(dataset: tuple[Path, dict[str, object]]) -> None:
    import numpy as np

    out, _ = dataset
    ids: dict[str, set[str]] = {}
    for split in ("sft", "rl", "eval", "eval_unseen"):
        rows = _rows(out / f"{split}.jsonl")
        assert rows, split
        ids[split] = set()
        for row in rows:
            parsed = ChatRow.model_validate(row)
            assert parsed.split == split
            ids[split].add(parsed.id)
            for image in parsed.images:
                assert (out / image).is_file()
            assert (out / parsed.mesh).is_file()
        ranks = [DIFFICULTIES.index(str(r["difficulty"])) for r in rows]
        assert ranks == sorted(ranks), f"{split} is not in curriculum order"
    names = list(ids)
    for k, a in enumerate(names):
        for b in names[k + 1 :]:
            assert not ids[a] & ids[b], (a, b)
    assert sum(len(v) for v in ids.values()) == 15  # 6 stools + 6 mugs + 3 ladders
    for split in ("rl", "eval"):  # every split holds every seen category
        assert {i.rsplit("-", 1)[0] for i in ids[split]} == {"stool", "mug"}
    # ladder is held out whole (data.unseen_categories)
    assert {i.rsplit("-", 1)[0] for i in ids["eval_unseen"]} == {"ladder"}
    # no two objects of different splits are near-duplicates by the shape descriptor
    metas = [json.loads(p.read_text()) for p in (out / "objects").glob("*.json")]
    desc = np.array([m["descriptor"] for m in metas])
    final = {i: s for s, v in ids.items() for i in v}
    dist = np.linalg.norm(desc[:, None] - desc[None], axis=2)
    for a, b in zip(*np.nonzero(dist < DataConfig().dedup_threshold), strict=True):
        assert final[metas[a]["id"]] == final[metas[b]["id"]], (metas[a]["id"], metas[b]["id"])


def test_loads_with_datasets(dataset: tuple[Path, dict[str, object]]) -> None:
    datasets = pytest.importorskip("datasets")
    out, _ = dataset
    files = {s: str(out / f"{s}.jsonl") for s in ("sft", "rl", "eval")}
    loaded = datasets.load_dataset("json", data_files=files, cache_dir=str(out.parent / "hf"))
    sft = loaded["sft"][0]
    assert sft["messages"][2]["role"] == "assistant"
    assert sft["messages"][2]["content"][0]["text"] == sft["code"]
    assert sft["messages"][1]["content"][0]["image"] == sft["images"][0]
    assert "bpy_lib" in sft["messages"][0]["content"][0]["text"]
    assert len(loaded["rl"][0]["messages"]) == 2


def test_ground_truths_register_and_match_their_code(
    dataset: tuple[Path, dict[str, object]], exec_config: ExecutorConfig
) -> None:
    from api.registry import TaskRegistry
    from worker.execution.executor import Executor
    from worker.metrics import compute_metrics, prepare_ground_truth

    out, _ = dataset
    registry = TaskRegistry()
    assert registry.load([out / "rl.jsonl", out / "eval.jsonl"]) == len(
        _rows(out / "rl.jsonl") + _rows(out / "eval.jsonl")
    )
    row = _rows(out / "eval.jsonl")[0]
    task = registry.get(str(row["task_id"]))
    gt = prepare_ground_truth(task.payload.vertices, task.payload.faces, points=2000)
    with Executor(exec_config) as ex:
        result = ex.run(str(row["code"]))
    metrics = compute_metrics(result.vertices, result.faces, gt)
    # the gold code scores ~1: the sampling floor of independent samples (DESIGN §3)
    assert metrics["f_score_0.05"] >= 0.9
    assert 0.0 < metrics["chamfer_l2"] < 1e-3


def test_card_counts_and_contact_sheet(dataset: tuple[Path, dict[str, object]]) -> None:
    from PIL import Image

    out, _ = dataset
    card = (out / "README.md").read_text()
    assert "| **total** |" in card and "stool" in card and "contact_sheet.png" in card
    assert "| sft |" in card and "| eval_unseen |" in card
    assert "## Objects per source, split and difficulty" in card
    assert "| templates / eval_unseen |" in card
    assert "held-out categories (ladder, bed) are only in eval_unseen" in card
    with Image.open(out / "contact_sheet.png") as img:
        assert img.width >= 64 and img.height >= 3 * 64  # a row per category


def test_rerun_resumes_only_missing_objects(
    dataset: tuple[Path, dict[str, object]], exec_config: ExecutorConfig
) -> None:
    from datagen.dataset_builder import build_dataset

    out, info = dataset
    before = (out / "sft.jsonl").read_text()
    (out / "objects" / "mug-00002.json").unlink()
    summary = build_dataset(
        out,
        seed=3,
        data=info["data"],
        executor=exec_config,
        render=RENDER,  # type: ignore[arg-type]
        categories_file=info["cats"],
        show_progress=False,  # type: ignore[arg-type]
        sources=["templates"],
    )
    assert summary.built_this_run == 1 and summary.objects == 15
    assert (out / "sft.jsonl").read_text() == before
