"""Chat rows (DESIGN §6) are read by one reader, llm3d.chat.read_rows: the trainers, the
environment and the reward service's task registry see the same ids, images, programs and
errors in the same file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm3d.chat import ChatRow, make_messages, read_rows
from llm3d.exceptions import ConfigError, DatasetError

PROGRAM = "from bpy_lib import *\n# part_1: top\nbox(size=[1, 1, 0.1])\nexport_scene()\n"


def write_split(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    (tmp_path / "images" / "t1").mkdir(parents=True)
    (tmp_path / "images" / "t1" / "front.png").write_bytes(b"\x89PNG fake")
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sft_row() -> dict[str, object]:
    images = ["images/t1/front.png"]
    messages = make_messages("SYSTEM", images, "a table", PROGRAM)
    row = {
        "id": "t1",
        "task_id": "t1",
        "category": "table",
        "difficulty": "easy",
        "complexity": 1.0,
        "n_parts": 1,
        "split": "sft",
        "code": PROGRAM,
        "mesh": "meshes/t1.ply",
        "images": images,
        "messages": messages,
    }
    ChatRow.model_validate(row)  # what the data pipeline writes
    return row


def test_the_three_readers_agree_on_a_row(tmp_path: Path) -> None:
    from api.registry import read_dataset
    from environments.blender_3d.dataset import read_split
    from training.data import load_examples

    row = sft_row()
    row["mesh"] = None  # the registry then takes the program as the ground truth
    path = write_split(tmp_path, [row])
    image = str(tmp_path / "images" / "t1" / "front.png")

    (example,) = load_examples(path)
    (sample,) = read_split(path)
    ((task_id, payload, _, views),) = list(read_dataset(path))
    assert example.id == sample.id == task_id == "t1"
    assert [str(p) for p in example.images] == [str(p) for p in sample.images] == [image]
    assert [str(p) for p in views] == [image]  # what POST /select/batch matches against
    assert example.target == sample.code == payload.code == PROGRAM
    assert example.prompt == list(sample.messages)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_every_reader_names_the_file_and_line_of_a_bad_row(
    tmp_path: Path, line: str, message: str
) -> None:
    from api.registry import read_dataset
    from environments.blender_3d.dataset import read_split
    from training.data import load_examples

    row = sft_row()
    row["mesh"] = None
    path = write_split(tmp_path, [row])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    for read in (load_examples, read_split, lambda p: list(read_dataset(p))):
        with pytest.raises(DatasetError, match=message) as info:
            read(path)
        assert f"{path}:2" in str(info.value)
        assert isinstance(info.value, ConfigError)  # callers that catch ConfigError still do


def test_images_resolve_against_the_files_folder_and_missing_ones_are_named(
    tmp_path: Path,
) -> None:
    path = write_split(tmp_path, [sft_row()])
    (record,) = read_rows(path)
    image = record.messages(check_images=True)[1]["content"][0]
    assert image == {"type": "image", "image": str(tmp_path / "images/t1/front.png")}
    (tmp_path / "images" / "t1" / "front.png").unlink()
    with pytest.raises(DatasetError, match=r"sft\.jsonl:1: image not found: .*front\.png"):
        record.messages(check_images=True)


def test_the_task_key_is_task_id_else_id_and_a_row_needs_one(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a"}\n{"id": "a", "task_id": "b"}\n{"code": "x"}\n')
    first, second, third = read_rows(path)
    assert (first.key, second.key) == ("a", "b")
    with pytest.raises(DatasetError, match=r"rows\.jsonl:3: a row needs an 'id'"):
        _ = third.key


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="llm3d data build"):
        list(read_rows(tmp_path / "nope.jsonl"))
