"""The JSONL splits of the data pipeline, as samples and as the columns verifiers expects.

A split is a JSONL file written by ``datagen`` (DESIGN §6). Two row shapes are read:

- a **chat row**: ``{"id", "messages": [system, user, (assistant)], "category",
  "difficulty", "n_parts", "mesh", ...}`` in the Qwen2.5-VL format (user content parts
  ``{"type": "image", "image": path}`` and ``{"type": "text", "text": ...}``); the
  assistant's content, when present, is the reference program;
- a **sample row**: ``{"id", "category", "difficulty", "n_parts", "code", "images": [paths],
  "mesh"}``; the prompt is built here: a system message with the ``bpy_lib`` reference and a
  user message with the images and :data:`INSTRUCTION`.

Relative paths are relative to the JSONL file. The row's ``id`` is the ``task_id`` under
which the reward service knows its ground truth (:mod:`api.registry` reads the same rows).

For verifiers (:meth:`Blender3DDataset.to_hf`) every message content becomes a list of
OpenAI content parts and every image an ``image_url`` part holding a ``data:`` URL: the
images reach the model as images, never as paths in ``info``.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm3d.chat import RowRecord, content_text, read_rows
from llm3d.exceptions import DatasetError

__all__ = [
    "DEFAULT_SYSTEM_PREFIX",
    "INSTRUCTION",
    "Blender3DDataset",
    "DatasetError",
    "Sample",
    "image_data_url",
    "openai_messages",
    "read_split",
]

INSTRUCTION = (
    "These images show one object from several views. Write a bpy_lib program that builds "
    "it: `from bpy_lib import *`, one `# part_k: label` comment per part, modeling calls, "
    "and `export_scene()` last. Answer with the program in one ```python block."
)
DEFAULT_SYSTEM_PREFIX = (
    "You are a 3D modeling assistant. You write Blender Python against bpy_lib, "
    "a small modeling library. Its reference:\n\n"
)


@dataclass(frozen=True)
class Sample:
    """One evaluation/training task.

    Attributes:
        id: the task id (also the reward service's ``task_id``).
        category, difficulty, n_parts: for per-group reports (``"unknown"`` / 0 when absent).
        images: the views shown to the model, absolute paths.
        messages: the prompt in the Qwen2.5-VL chat format (system, user), absolute paths.
        code: the reference program, when the row has one.
        mesh: the ground-truth mesh file, when the row has one.
        meta: the row's other keys.
    """

    id: str
    category: str
    difficulty: str
    n_parts: int
    images: tuple[Path, ...]
    messages: tuple[dict[str, Any], ...]
    code: str | None = None
    mesh: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _system_text() -> str:
    from bpy_lib import reference  # needs bpy; only for rows without a system message

    return DEFAULT_SYSTEM_PREFIX + reference()


def _sample(record: RowRecord) -> Sample:
    sample_id = record.key  # the reward service's id of the ground truth (task_id, else id)
    code = record.code
    messages: list[dict[str, Any]] = []
    images: list[Path] = record.images  # the one rule of which images are the views
    if record.has_messages:
        for message in record.messages():
            if message["role"] == "assistant":
                code = code or content_text(message["content"])
                continue
            messages.append(message)
        if not images:
            raise record.error(f"task {sample_id!r} has no image in its messages")
    else:
        if not images:
            raise record.error(f"task {sample_id!r} needs 'messages' (a chat row) or 'images'")
        messages = [
            {"role": "system", "content": _system_text()},
            {
                "role": "user",
                "content": [{"type": "image", "image": str(p)} for p in images]
                + [{"type": "text", "text": INSTRUCTION}],
            },
        ]
    fields = record.fields
    known = {"id", "task_id", "category", "difficulty", "n_parts", "code", "images", "mesh"}
    return Sample(
        id=sample_id,
        category=str(fields.get("category") or "unknown"),
        difficulty=str(fields.get("difficulty") or "unknown"),
        n_parts=int(fields.get("n_parts") or 0),
        images=tuple(images),
        messages=tuple(messages),
        code=code or None,
        mesh=record.mesh,
        meta={k: v for k, v in fields.items() if k not in known and k != "messages"},
    )


def read_split(path: str | Path, *, limit: int | None = None) -> list[Sample]:
    """Read a split file into samples, in file order.

    Args:
        path: a JSONL file of chat rows or sample rows.
        limit: keep only the first ``limit`` samples.

    Raises:
        DatasetError: when the file is missing, a row is not JSON, or lacks an id or images.
    """
    samples: list[Sample] = []
    seen: set[str] = set()
    for record in read_rows(path, limit=limit):
        sample = _sample(record)
        if sample.id in seen:
            raise record.error(f"task id {sample.id!r} appears twice")
        seen.add(sample.id)
        samples.append(sample)
    return samples


def image_data_url(path: str | Path) -> str:
    """A ``data:`` URL holding the image file (PNG/JPEG/WebP) base64-encoded."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def openai_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Qwen-format messages → OpenAI chat messages (every content a list of parts).

    ``{"type": "image", "image": path}`` becomes ``{"type": "image_url", "image_url":
    {"url": "data:image/png;base64,..."}}``; string contents become one text part (so every
    row has the same shape, which Arrow needs).
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        else:
            for part in content:
                if part.get("type") == "image":
                    url = image_data_url(part["image"])
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                else:
                    parts.append({"type": "text", "text": str(part.get("text", ""))})
        out.append({"role": message["role"], "content": parts})
    return out


class Blender3DDataset:
    """A split as samples, and as a ``datasets.Dataset`` for verifiers.

    Args:
        path: the split's JSONL file.
        limit: keep only the first ``limit`` samples.
    """

    def __init__(self, path: str | Path, *, limit: int | None = None) -> None:
        self.path = Path(path)
        self.samples = read_split(self.path, limit=limit)

    def __len__(self) -> int:
        return len(self.samples)

    def rows(self) -> list[dict[str, Any]]:
        """One verifiers row a sample: ``prompt``, ``answer`` (the task id), ``info``, ``task``."""
        rows = []
        for sample in self.samples:
            info = {
                "task_id": sample.id,
                "category": sample.category,
                "difficulty": sample.difficulty,
                "n_parts": sample.n_parts,
            }
            rows.append(
                {
                    "prompt": openai_messages(sample.messages),
                    "answer": sample.id,
                    # a JSON string: Arrow cannot hold free-form dicts across rows
                    "info": json.dumps(info),
                    "task": "blender-3d",
                }
            )
        return rows

    def to_hf(self) -> Any:
        """A ``datasets.Dataset`` with the columns verifiers reads."""
        from datasets import Dataset

        return Dataset.from_list(self.rows())
