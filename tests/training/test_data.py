"""Reading the chat-format rows (DESIGN §6, the dataset builder's schema), curriculum, tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm3d.chat import make_messages
from llm3d.exceptions import ConfigError
from training.data import (
    SHORT_SYSTEM_PROMPT,
    curriculum_order,
    load_examples,
    system_override,
)
from training.rl_trainer import ensure_tasks


def _row(
    tmp: Path, ident: str, difficulty: str, complexity: float, code: str | None
) -> dict[str, Any]:
    image = Path("images") / ident / "front.png"
    (tmp / image).parent.mkdir(parents=True, exist_ok=True)
    (tmp / image).write_bytes(b"\x89PNG placeholder")
    return {
        "id": ident,
        "task_id": ident,
        "category": "chair",
        "difficulty": difficulty,
        "complexity": complexity,
        "n_parts": 2,
        "split": "sft" if code else "rl",
        "code": f"# {ident}\nexport_scene()\n",
        "mesh": f"meshes/{ident}.ply",
        "images": [str(image)],
        "messages": make_messages("REFERENCE", [str(image)], "Build it.", code),
    }


def _write(tmp: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_dataset_builder_rows_load_with_absolute_images_and_targets(tmp_path: Path) -> None:
    rows = [
        _row(tmp_path, "b-hard", "hard", 9.0, "from bpy_lib import *\nB"),
        _row(tmp_path, "a-easy2", "easy", 3.0, "A2"),
        _row(tmp_path, "a-easy1", "easy", 1.0, "A1"),
        _row(tmp_path, "m", "medium", 5.0, "M"),
    ]
    examples = load_examples(_write(tmp_path, rows))
    first = examples[0]
    assert first.target == "from bpy_lib import *\nB"
    assert first.images == [tmp_path / "images" / "b-hard" / "front.png"]
    assert [m["role"] for m in first.prompt] == ["system", "user"]
    assert first.prompt[0]["content"] == [{"type": "text", "text": "REFERENCE"}]
    assert first.meta["complexity"] == 9.0 and first.task_id == "b-hard"
    # curriculum: difficulty, then the builder's complexity
    assert [e.id for e in curriculum_order(examples)] == ["a-easy1", "a-easy2", "m", "b-hard"]
    # the reward item names the task the service knows
    assert first.reward_item("x", "code") == {"id": "x", "code": "code", "task_id": "b-hard"}


def test_malformed_rows_name_the_file_and_line(tmp_path: Path) -> None:
    good = _row(tmp_path, "a", "easy", 1.0, "A")
    bad = dict(good, messages=make_messages("R", ["images/missing.png"], "Build it.", "A"))
    path = _write(tmp_path, [good, bad])
    with pytest.raises(ConfigError, match=r"sft.jsonl:2: image not found"):
        load_examples(path)
    (tmp_path / "broken.jsonl").write_text('{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.jsonl:1: a row needs a 'messages' list"):
        load_examples(tmp_path / "broken.jsonl")
    # an RL/eval row's target is its own program (its held-out NLL); without one, an error
    rl_row = _row(tmp_path, "r", "easy", 1.0, None)
    assert load_examples(_write(tmp_path, [rl_row]))[0].target == "# r\nexport_scene()\n"
    without = {k: v for k, v in rl_row.items() if k != "code"}
    with pytest.raises(ConfigError, match="no assistant message and no program"):
        _ = load_examples(_write(tmp_path, [without]))[0].target


class _Tasks:
    def __init__(self, known: list[str]) -> None:
        self.known = known
        self.added: list[tuple[str, Any]] = []

    def tasks(self) -> Any:
        from llm3d.schemas import TaskList, TaskPublic

        return TaskList(
            count=len(self.known),
            tasks=[TaskPublic(task_id=t, kind="mesh", source="x", key="k") for t in self.known],
        )

    def add_task(self, task_id: str, reference: Any, **meta: Any) -> None:
        self.added.append((task_id, reference))


def test_ensure_tasks_registers_only_unknown_ground_truths(tmp_path: Path) -> None:
    rows = [_row(tmp_path, "known", "easy", 1.0, None), _row(tmp_path, "new", "easy", 1.0, None)]
    examples = load_examples(_write(tmp_path, rows))
    client = _Tasks(["known"])
    assert ensure_tasks(client, examples) == 1
    assert client.added == [("new", {"code": "# new\nexport_scene()\n"})]
    no_code = dict(rows[1], code=None)
    with pytest.raises(ConfigError, match=r"api\.datasets"):
        ensure_tasks(_Tasks([]), load_examples(_write(tmp_path, [no_code])))


def test_the_short_system_prompt_replaces_the_rows_own(tmp_path: Path) -> None:
    from training.data import write_example_dataset

    file = write_example_dataset(tmp_path, names=["mug"], system="The long bpy_lib reference.")
    (kept,) = load_examples(file, system=system_override("dataset"))
    (short,) = load_examples(file, system=system_override("short"))
    assert kept.messages[0]["content"] == "The long bpy_lib reference."
    assert short.messages[0] == {"role": "system", "content": SHORT_SYSTEM_PROMPT}
    assert short.messages[1:] == kept.messages[1:]
