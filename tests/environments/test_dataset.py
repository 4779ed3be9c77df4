"""Reading the splits: chat rows, sample rows, OpenAI image parts, and the errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from environments.blender_3d.dataset import (
    INSTRUCTION,
    Blender3DDataset,
    DatasetError,
    openai_messages,
    read_split,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chat_row(task: str, *, assistant: str | None = None) -> dict[str, object]:
    messages: list[dict[str, object]] = [
        {"role": "system", "content": [{"type": "text", "text": "the reference"}]},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": f"images/{task}/front.png"},
                {"type": "image", "image": f"images/{task}/top.png"},
                {"type": "text", "text": "Write it."},
            ],
        },
    ]
    if assistant:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": assistant}]})
    return {
        "id": f"row-{task}",
        "task_id": task,
        "category": "chair",
        "difficulty": "hard",
        "n_parts": 5,
        "complexity": 2.5,
        "mesh": f"meshes/{task}.ply",
        "messages": messages,
    }


@pytest.fixture
def images(tmp_path: Path) -> Path:
    for task in ("a", "b"):
        folder = tmp_path / "images" / task
        folder.mkdir(parents=True)
        for view in ("front", "top"):
            (folder / f"{view}.png").write_bytes(PNG)
    return tmp_path


def test_chat_rows_keep_task_id_paths_and_program(images: Path) -> None:
    split = write_rows(images / "eval.jsonl", [chat_row("a"), chat_row("b", assistant="P")])
    a, b = read_split(split)
    assert a.id == "a"  # the reward service's task id wins over the row id
    assert (a.category, a.difficulty, a.n_parts) == ("chair", "hard", 5)
    assert a.images == (images / "images/a/front.png", images / "images/a/top.png")
    assert all(p.is_file() for p in a.images)
    assert a.mesh == images / "meshes/a.ply"
    assert a.code is None and b.code == "P"
    assert a.meta["complexity"] == 2.5
    assert [m["role"] for m in b.messages] == ["system", "user"]  # the answer is not prompt


def test_sample_rows_get_the_reference_and_instruction(images: Path) -> None:
    row = {"id": "a", "code": "from bpy_lib import *", "images": ["images/a/front.png"]}
    (sample,) = read_split(write_rows(images / "s.jsonl", [row]))
    system, user = sample.messages
    assert "box(" in system["content"]  # the bpy_lib reference
    assert user["content"][0] == {"type": "image", "image": str(images / "images/a/front.png")}
    assert user["content"][-1] == {"type": "text", "text": INSTRUCTION}
    assert (sample.category, sample.difficulty, sample.n_parts) == ("unknown", "unknown", 0)


def test_images_reach_the_model_as_image_url_parts(images: Path) -> None:
    (sample,) = read_split(write_rows(images / "e.jsonl", [chat_row("a")]))
    system, user = openai_messages(sample.messages)
    assert system["content"] == [{"type": "text", "text": "the reference"}]
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["image_url", "image_url", "text"]
    url = user["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == PNG


def test_verifiers_columns(images: Path) -> None:
    dataset = Blender3DDataset(write_rows(images / "e.jsonl", [chat_row("a"), chat_row("b")]))
    hf = dataset.to_hf()
    assert set(hf.column_names) >= {"prompt", "answer", "info", "task"}
    row = hf[1]
    assert row["answer"] == "b"
    assert json.loads(row["info"])["task_id"] == "b"
    image = row["prompt"][1]["content"][0]
    assert image["type"] == "image_url"
    assert "images/b" not in json.dumps(row)  # an image, not a path
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert Blender3DDataset(images / "e.jsonl", limit=1).samples[0].id == "a"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"images": ["x.png"]}', "needs an 'id'"),
        ('{"id": "a"}', "needs 'messages'"),
        ('{"id": "a", "messages": [{"role": "user", "content": "hi"}]}', "has no image"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_rows_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as info:
        read_split(path)
    assert f"{path}:2" in str(info.value)


def test_missing_file_and_duplicate_ids(images: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset file"):
        read_split(images / "nope.jsonl")
    twice = write_rows(images / "d.jsonl", [chat_row("a"), chat_row("a")])
    with pytest.raises(DatasetError, match="appears twice"):
        read_split(twice)
