"""The dataset rows in Qwen2.5-VL chat format (DESIGN §6): the one reader and writer (no Blender).

Writing: :class:`ChatRow` is the schema the data pipeline writes (and its tests validate);
:func:`make_messages` and :func:`instruction` build its messages. Reading: :func:`read_rows`
reads a JSONL (or JSON list) file into :class:`RowRecord` values, with the file and line of
every error, image paths resolved against the file's folder, and the row's fields read by one
set of rules. The trainers (``training/data.py``), the environment
(``environments/blender_3d/dataset.py``) and the reward service's task registry
(``api/registry.py``) all read rows through it.

A row::

    {"id": "chair-00003", "task_id": "chair-00003", "category": "chair",
     "difficulty": "medium", "complexity": 5.0, "n_parts": 4, "split": "rl",
     "code": "from bpy_lib import *\\n...", "mesh": "meshes/chair-00003.ply",
     "images": ["images/chair-00003/front.png", ...],
     "messages": [
       {"role": "system", "content": [{"type": "text", "text": "<bpy_lib reference>"}]},
       {"role": "user", "content": [{"type": "image", "image": "images/chair-00003/front.png"},
                                    ..., {"type": "text", "text": "<instruction>"}]},
       {"role": "assistant", "content": [{"type": "text", "text": "<the program>"}]}]}

Every ``content`` is a list of typed items (strings and lists mixed in one column break
Arrow, so ``datasets.load_dataset("json", ...)`` needs one shape). Paths are relative to
the dataset folder (the JSONL files' folder). SFT rows end with the assistant's program; RL and eval rows
have no assistant message; every row carries ``task_id`` (the reward service registers the ground
truth ``mesh`` under it: ``api.datasets: [DATA/rl.jsonl]`` or ``POST /tasks``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm3d.exceptions import DatasetError

__all__ = [
    "SPLITS",
    "ChatRow",
    "Message",
    "RowRecord",
    "Split",
    "content_text",
    "instruction",
    "is_image_part",
    "make_messages",
    "read_rows",
]

VIEW_WORDS = {
    "front": "front",
    "side": "side",
    "top": "top",
    "three_quarter": "three-quarter",
}


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image"]
    text: str | None = None
    image: str | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> _Item:
        if self.type == "text" and not self.text:
            raise ValueError("a text item needs 'text'")
        if self.type == "image" and not self.image:
            raise ValueError("an image item needs 'image'")
        return self


class Message(BaseModel):
    """One chat message: a role and a list of typed items."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: list[_Item] = Field(min_length=1)


#: The dataset's splits: training (``sft``, ``rl``), held-out assets of the seen categories
#: (``eval``) and held-out whole categories (``eval_unseen``, issue 19 point 4).
Split = Literal["sft", "rl", "eval", "eval_unseen"]
SPLITS: tuple[str, ...] = get_args(Split)


class ChatRow(BaseModel):
    """One row of sft/rl/eval JSONL (the schema the tests validate against)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    task_id: str
    source: str = "templates"  # DESIGN §6: templates, infinigen, parts, composed
    category: str
    difficulty: Literal["easy", "medium", "hard"]
    complexity: float
    n_parts: int = Field(ge=1)
    split: Split
    code: str
    mesh: str
    images: list[str] = Field(min_length=1)
    messages: list[Message] = Field(min_length=2, max_length=3)

    @model_validator(mode="after")
    def _shape(self) -> ChatRow:
        roles = [m.role for m in self.messages]
        if roles[:2] != ["system", "user"]:
            raise ValueError(f"messages must start system, user; got {roles}")
        user_images = [i.image for i in self.messages[1].content if i.type == "image"]
        if user_images != self.images:
            raise ValueError("the user message must show exactly the row's images, in order")
        if self.messages[1].content[-1].type != "text":
            raise ValueError("the user message must end with the instruction text")
        if self.split == "sft":
            if roles != ["system", "user", "assistant"]:
                raise ValueError("an SFT row ends with the assistant's program")
            if self.messages[2].content[0].text != self.code:
                raise ValueError("the assistant's program must be the row's code")
        else:
            if len(roles) != 2:
                raise ValueError(f"a {self.split} row has no assistant message")
        if self.task_id != self.id:
            raise ValueError("task_id must be the row's id (the reward service's key)")
        return self


def instruction(noun: str, views: Sequence[str]) -> str:
    """The user's request under the images."""
    named = ", ".join(VIEW_WORDS.get(v, v) for v in views)
    return (
        f"These {len(views)} images show a {noun} from the {named} views. Write a bpy_lib "
        "program that builds it: `from bpy_lib import *`, one `# part_k: label` comment "
        "before each part, and `export_scene()` last."
    )


def make_messages(
    reference: str, images: Sequence[str], text: str, code: str | None
) -> list[dict[str, Any]]:
    """The chat: system (the reference), user (images + ``text``), assistant (``code``)."""
    user: list[dict[str, Any]] = [{"type": "image", "image": path} for path in images]
    user.append({"type": "text", "text": text})
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": reference}]},
        {"role": "user", "content": user},
    ]
    if code is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": code}]})
    return messages


# --- reading ---------------------------------------------------------------------------------


def is_image_part(part: Any) -> bool:
    """An image item: ``{"type": "image", "image": path}`` (or an untyped ``{"image": path}``)."""
    if not isinstance(part, dict):
        return False
    kind = part.get("type")
    return kind == "image" or (kind is None and part.get("image") is not None)


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the ``text`` of its items joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


@dataclass(frozen=True)
class RowRecord:
    """One row of a dataset file as read: the raw fields, where it came from, and the rules
    every reader applies to it.

    Attributes:
        fields: the row's JSON object, unchanged.
        base: the folder relative paths are resolved against (the file's folder).
        where: ``file:line`` (or ``file[index]`` for a JSON list), for error messages.
    """

    fields: dict[str, Any]
    base: Path
    where: str

    def error(self, message: str) -> DatasetError:
        """A :class:`DatasetError` naming this row's file and line."""
        return DatasetError(f"{self.where}: {message}")

    @property
    def id(self) -> str | None:
        value = self.fields.get("id")
        return str(value) if value not in (None, "") else None

    @property
    def task_id(self) -> str | None:
        """The explicit ``task_id`` field (``None`` when the row has none)."""
        value = self.fields.get("task_id")
        return str(value) if value not in (None, "") else None

    @property
    def key(self) -> str:
        """The reward service's id of the row's ground truth: ``task_id``, else ``id``."""
        key = self.task_id or self.id
        if key is None:
            raise self.error(f"a row needs an 'id' (got keys {sorted(self.fields)})")
        return key

    def path(self, value: str | Path) -> Path:
        """``value`` resolved against the dataset's folder when it is relative."""
        path = Path(value)
        return path if path.is_absolute() else self.base / path

    @property
    def code(self) -> str | None:
        value = self.fields.get("code")
        return str(value) if value else None

    @property
    def mesh(self) -> Path | None:
        value = self.fields.get("mesh")
        return self.path(str(value)) if value else None

    @property
    def has_messages(self) -> bool:
        return "messages" in self.fields

    def messages(self, *, check_images: bool = False) -> list[dict[str, Any]]:
        """The chat, every image as ``{"type": "image", "image": <absolute path>}`` and items
        without their ``None`` keys (Arrow's padding of a mixed column).

        Raises:
            DatasetError: the row has no ``messages`` list, a message lacks ``role`` or
                ``content``, or (``check_images``) an image file does not exist.
        """
        raw = self.fields.get("messages")
        if not isinstance(raw, list):
            raise self.error("a row needs a 'messages' list (DESIGN §6)")
        messages: list[dict[str, Any]] = []
        for message in raw:
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise self.error("every message needs 'role' and 'content'")
            content = message["content"]
            if isinstance(content, list):
                parts = []
                for part in content:
                    if is_image_part(part):
                        path = self.path(str(part["image"]))
                        if check_images and not path.is_file():
                            raise self.error(f"image not found: {path}")
                        parts.append({"type": "image", "image": str(path)})
                    elif isinstance(part, dict):
                        parts.append({k: v for k, v in part.items() if v is not None})
                    else:
                        raise self.error(f"a content item must be an object, got {part!r:.60}")
                content = parts
            messages.append({"role": message["role"], "content": content})
        return messages

    @property
    def images(self) -> list[Path]:
        """The views the model is shown: the images of the chat's messages (not the
        assistant's), else the row's ``images`` list; absolute paths, in order."""
        if self.has_messages:
            return [
                Path(part["image"])
                for message in self.messages()
                if message["role"] != "assistant" and isinstance(message["content"], list)
                for part in message["content"]
                if part.get("type") == "image"
            ]
        return [self.path(p) for p in self.fields.get("images") or []]

    def assistant_text(self) -> str | None:
        """The assistant's answer (an SFT row's program), ``None`` when the row has none."""
        for message in self.fields.get("messages") or []:
            if isinstance(message, dict) and message.get("role") == "assistant":
                return content_text(message.get("content"))
        return None


def read_rows(path: str | Path, *, limit: int | None = None) -> Iterator[RowRecord]:
    """The rows of a dataset file, in file order: JSONL (one object a line; blank lines are
    skipped) or, for a ``.json`` file, one JSON list of objects.

    Raises:
        DatasetError: the file is missing, a line is not JSON, or a row is not an object; the
            message names the file and line and says what to do.
    """
    file = Path(path)
    if not file.is_file():
        raise DatasetError(
            f"{file}: no such dataset file (build one with `llm3d data build`, or pass the "
            "path of a JSONL file of chat rows)"
        )
    text = file.read_text(encoding="utf-8")
    rows: Iterator[tuple[str, Any]]
    if file.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{file}: not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise DatasetError(f"{file}: a JSON dataset must be a list of rows")
        rows = ((f"{file}[{i}]", row) for i, row in enumerate(data))
    else:
        rows = _jsonl(file, text)
    for count, (where, row) in enumerate(rows):
        if limit is not None and count >= limit:
            return
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: a row must be a JSON object")
        yield RowRecord(row, file.parent, where)


def _jsonl(file: Path, text: str) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{file}:{number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{file}:{number}: not valid JSON: {exc}") from exc
