"""The dataset rows in Qwen2.5-VL chat format (DESIGN §6) and their schema (no Blender).

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
the dataset folder (the JSONL files' folder), as :mod:`api.registry` and
``training/data.py`` read them. SFT rows end with the assistant's program; RL and eval rows
have no assistant message; every row carries ``task_id`` (the reward service registers the ground
truth ``mesh`` under it: ``api.datasets: [DATA/rl.jsonl]`` or ``POST /tasks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ChatRow", "Message", "instruction", "make_messages"]

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


class ChatRow(BaseModel):
    """One row of sft/rl/eval JSONL (the schema the tests validate against)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    task_id: str
    category: str
    difficulty: Literal["easy", "medium", "hard"]
    complexity: float
    n_parts: int = Field(ge=1)
    split: Literal["sft", "rl", "eval"]
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
