"""Training rows (DESIGN §6): reading the chat-format JSONL, curriculum order, batches.

A row is one JSON object a line, in Qwen2.5-VL chat format::

    {"id": "chair-0001", "category": "chair", "difficulty": "easy", "n_parts": 3,
     "task_id": "chair-0001",                                   # optional (RL, eval)
     "messages": [
       {"role": "system", "content": "<the bpy_lib reference>"},
       {"role": "user", "content": [{"type": "image", "image": "images/chair-0001/front.png"},
                                    ...,
                                    {"type": "text", "text": "Write the bpy_lib program ..."}]},
       {"role": "assistant", "content": "from bpy_lib import *\\n..."}]}    # SFT rows

Relative image paths are relative to the JSONL file's folder. The RL ground truth is the
row's ``task_id`` when the reward service knows it, else its ``code`` or assistant program
sent inline as ``reference.code``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm3d.chat import content_text, is_image_part, read_rows
from llm3d.exceptions import ConfigError

__all__ = [
    "DIFFICULTY_ORDER",
    "SHORT_SYSTEM_PROMPT",
    "Example",
    "batches",
    "curriculum_order",
    "load_examples",
    "system_override",
    "with_system",
    "write_example_dataset",
]

logger = logging.getLogger(__name__)

#: Curriculum rank of each difficulty label; unknown labels go last.
DIFFICULTY_ORDER = {"easy": 0, "medium": 1, "hard": 2}

Message = dict[str, Any]

#: ``training.system_prompt: short``: the system message instead of the ~2,400-token
#: bpy_lib reference (a small model trained from scratch learns the API from the programs).
SHORT_SYSTEM_PROMPT = "You write Blender models with bpy_lib (from bpy_lib import *)."


@dataclass(frozen=True)
class Example:
    """One training row.

    Attributes:
        id: the row's id (unique in its file).
        messages: the chat, images as ``{"type": "image", "image": <absolute path>}``.
        difficulty: ``easy`` / ``medium`` / ``hard`` (curriculum order).
        n_parts: number of parts of the object (curriculum tie-break).
        task_id: the ground truth's id at the reward service, if it has one.
        reference_code: a ``bpy_lib`` program building the ground truth, if known.
        meta: every other field of the row.
    """

    id: str
    messages: tuple[Message, ...]
    difficulty: str = "medium"
    n_parts: int = 0
    task_id: str | None = None
    reference_code: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> list[Message]:
        """The messages before the assistant's answer (what the model sees)."""
        return [m for m in self.messages if m["role"] != "assistant"]

    @property
    def target(self) -> str:
        """The assistant's program (SFT target): the assistant message, else the row's own
        program (an RL or eval row's ``code``, which is what an SFT row's answer is: its
        held-out NLL). Raises ConfigError if the row has neither."""
        for m in self.messages:
            if m["role"] == "assistant":
                return content_text(m["content"])
        if self.reference_code is not None:
            return self.reference_code
        raise ConfigError(
            f"row {self.id!r} has no assistant message and no program: it cannot be an SFT row"
        )

    @property
    def images(self) -> list[Path]:
        """The image paths of the prompt, in order."""
        return [Path(c["image"]) for m in self.prompt for c in _parts(m) if is_image_part(c)]

    def reward_item(self, item_id: str, code: str) -> dict[str, Any]:
        """A reward-service item scoring ``code`` against this row's ground truth."""
        if self.task_id is not None:
            return {"id": item_id, "code": code, "task_id": self.task_id}
        ref = self.reference_code
        if ref is None:
            try:
                ref = self.target
            except ConfigError:
                ref = None
        if ref is None:
            raise ConfigError(
                f"row {self.id!r} has no ground truth: give it a task_id, a code field or an "
                "assistant message"
            )
        return {"id": item_id, "code": code, "reference": {"code": ref}}


def _parts(message: Message) -> list[dict[str, Any]]:
    content = message["content"]
    return [] if isinstance(content, str) else list(content)


def load_examples(
    path: str | Path, *, limit: int | None = None, system: str | None = None
) -> list[Example]:
    """Read a chat-format JSONL file (DESIGN §6) into :class:`Example` rows, in file order
    (through :func:`llm3d.chat.read_rows`, the one reader of dataset rows).

    ``system``: replaces every row's system message (e.g. :data:`SHORT_SYSTEM_PROMPT`).

    Raises:
        ConfigError: the file is missing, a line is not JSON, or a row is malformed (a
            :class:`~llm3d.exceptions.DatasetError`); the message names the file and line.
    """
    known = {"id", "messages", "difficulty", "n_parts", "task_id", "code"}
    examples = [
        Example(
            id=record.id or record.where,
            messages=tuple(with_system(record.messages(check_images=True), system)),
            difficulty=str(record.fields.get("difficulty", "medium")),
            n_parts=int(record.fields.get("n_parts", 0) or 0),
            task_id=record.task_id,
            reference_code=record.code,
            meta={k: v for k, v in record.fields.items() if k not in known},
        )
        for record in read_rows(path, limit=limit)
    ]
    if not examples:
        raise ConfigError(f"dataset {path} has no rows")
    return examples


def with_system(messages: Sequence[Message], system: str | None) -> list[Message]:
    """The chat with its system message's content replaced by ``system`` (None: as is); the
    one rule training, the SFT evaluator and the local eval policy apply alike."""
    if system is None:
        return list(messages)
    return [{**m, "content": system} if m["role"] == "system" else m for m in messages]


def system_override(system_prompt: str) -> str | None:
    """What ``training.system_prompt`` makes of the rows' system message (None: keep it)."""
    return SHORT_SYSTEM_PROMPT if system_prompt == "short" else None


def curriculum_order(examples: Sequence[Example]) -> list[Example]:
    """Easy → medium → hard, then by ``complexity`` (the dataset builder's score) or
    ``n_parts``; stable, so the file's order breaks ties."""

    def key(e: Example) -> tuple[int, float]:
        rank = DIFFICULTY_ORDER.get(e.difficulty, len(DIFFICULTY_ORDER))
        return rank, float(e.meta.get("complexity", e.n_parts))

    return sorted(examples, key=key)


def batches(
    examples: Sequence[Example], batch_size: int, *, epoch: int, seed: int, shuffle: bool
) -> Iterator[list[Example]]:
    """The batches of one epoch: curriculum order, or a seeded shuffle of it per epoch.

    The last partial batch is kept. Same ``(epoch, seed)``, same batches: resuming at step
    ``k`` replays exactly the batches a run without interruption would see.
    """
    order = list(examples)
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


# ----------------------------------------------------------------------------------------
# a small dataset from the bpy_lib examples (tests, benchmark, --tiny smoke runs)


def _difficulty(code: str) -> tuple[str, int]:
    n_parts = sum(1 for line in code.splitlines() if line.startswith("# part_"))
    hard_ops = ("difference(", "union(", "loft(", "sweep(", "revolve(", "helix(", "twist(")
    n_hard = sum(code.count(op) for op in hard_ops)
    if n_parts <= 2 and n_hard == 0:
        return "easy", n_parts
    if n_parts <= 4 and n_hard <= 1:
        return "medium", n_parts
    return "hard", n_parts


def _placeholder_image(path: Path, key: str, view: int, size: int) -> None:
    """A deterministic picture standing in for a render (colour and bars from a hash)."""
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(f"{key}:{view}".encode()).digest()
    image = Image.new("RGB", (size, size), tuple(digest[:3]))
    draw = ImageDraw.Draw(image)
    for i in range(4):
        x0, y0 = digest[3 + 2 * i] % size, digest[4 + 2 * i] % size
        draw.rectangle(
            [x0, y0, min(size - 1, x0 + size // 4), min(size - 1, y0 + size // 3)],
            fill=tuple(digest[12 + i : 15 + i]),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


INSTRUCTION = (
    "The images show one object from several views. Write a bpy_lib program that builds it: "
    "one '# part_k: name' comment per part, export_scene() at the end."
)


def write_example_dataset(
    out_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    views: int = 2,
    image_size: int = 56,
    system: str | None = None,
) -> Path:
    """Write ``train.jsonl`` in the format of DESIGN §6 from ``bpy_lib/examples``.

    The images are deterministic placeholders (not renders): the rows exercise the chat
    format, image handling, curriculum and rewards (each row's ground truth is its own
    program, sent inline) without Blender. ``system`` defaults to a one-line prompt;
    pass ``bpy_lib.reference()`` for the real one.

    Returns:
        The path of the JSONL file.
    """
    import bpy_lib.examples as examples

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = examples.paths()
    if names is not None:
        wanted = set(names)
        paths = [p for p in paths if p.stem in wanted]
    system_text = system or SHORT_SYSTEM_PROMPT
    file = out / "train.jsonl"
    with open(file, "w", encoding="utf-8") as handle:
        for path in paths:
            code = path.read_text(encoding="utf-8")
            difficulty, n_parts = _difficulty(code)
            parts: list[dict[str, Any]] = []
            for view in range(views):
                rel = Path("images") / path.stem / f"view{view}.png"
                _placeholder_image(out / rel, path.stem, view, image_size)
                parts.append({"type": "image", "image": str(rel)})
            parts.append({"type": "text", "text": INSTRUCTION})
            row = {
                "id": path.stem,
                "category": path.stem,
                "difficulty": difficulty,
                "n_parts": n_parts,
                "messages": [
                    {"role": "system", "content": system_text},
                    {"role": "user", "content": parts},
                    {"role": "assistant", "content": code},
                ],
            }
            handle.write(json.dumps(row) + "\n")
    logger.info("wrote %d rows to %s", len(paths), file)
    return file
