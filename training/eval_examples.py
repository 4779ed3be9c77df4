"""A small evaluation dataset built from the ``bpy_lib`` example programs (Blender-only).

``python -m training.eval_examples OUT`` writes ``OUT/eval.jsonl`` (10 objects) and
``OUT/sft.jsonl`` (the other 22: what the retrieval baseline retrieves from), each row in
the format of DESIGN §6 (:mod:`llm3d.chat`'s keys): ``id``/``task_id``, ``category``,
``difficulty``, ``n_parts``, ``code``, ``images``, ``mesh`` and the Qwen2.5-VL
``messages`` (system reference, user images + instruction; the assistant's program in
``sft`` rows). Each program is run in this process, its mesh written as the ground truth
(``meshes/<id>.ply``) and its views rendered with :func:`worker.render.render_views`.

It exists so that ``scripts/run_eval.sh`` and the tests run the evaluation end to end
without the data pipeline; the real splits come from ``llm3d data build``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bpy_lib import examples
from bpy_lib.export import write
from environments.blender_3d.dataset import DEFAULT_SYSTEM_PREFIX, INSTRUCTION
from llm3d.config import RenderConfig
from worker.render import render_views

__all__ = ["CATEGORIES", "EVAL_NAMES", "build_examples_dataset", "build_split"]

logger = logging.getLogger(__name__)

#: example name → category
CATEGORIES = {
    **dict.fromkeys(
        [
            "bed_frame",
            "bench",
            "bookshelf",
            "cabinet",
            "chair",
            "coat_rack",
            "ladder",
            "office_desk",
            "round_table",
            "sofa",
            "stool",
            "table",
        ],
        "furniture",
    ),
    **dict.fromkeys(
        [
            "bottle",
            "bowl",
            "candle_holder",
            "flower_pot",
            "mailbox",
            "mug",
            "ring_box",
            "teapot",
            "vase",
            "wine_glass",
        ],
        "container",
    ),
    **dict.fromkeys(
        ["dumbbell", "gear", "hammer", "hook", "screwdriver", "spring", "wrench"], "tool"
    ),
    **dict.fromkeys(["bicycle_wheel", "desk_lamp", "picture_frame"], "other"),
}
EVAL_NAMES = [
    "chair",
    "table",
    "bookshelf",
    "mug",
    "bottle",
    "vase",
    "hammer",
    "wrench",
    "gear",
    "desk_lamp",
]


def difficulty(n_parts: int) -> str:
    """``easy`` (≤ 2 parts), ``medium`` (≤ 4), ``hard``."""
    return "easy" if n_parts <= 2 else "medium" if n_parts <= 4 else "hard"


def build_split(
    out_dir: Path,
    names: list[str] | tuple[str, ...],
    split: str,
    *,
    resolution: int = 96,
    system: str | None = None,
    categories: Mapping[str, str] = CATEGORIES,
) -> Path:
    """Write ``out_dir/<split>.jsonl`` (+ meshes and images) for the named examples.

    Args:
        out_dir: the dataset folder (paths in the rows are relative to it).
        names: example program names (``bpy_lib/examples/<name>.py``).
        split: ``eval``, ``rl`` or ``sft`` (``sft`` rows end with the assistant's program).
        resolution: of the rendered views.
        system: the system message (default: the bpy_lib reference).
    """
    from bpy_lib import reference

    (out_dir / "meshes").mkdir(parents=True, exist_ok=True)
    render = RenderConfig(resolution=resolution, workbench_aa="OFF")
    system = system or DEFAULT_SYSTEM_PREFIX + reference()
    by_name = {p.stem: p for p in examples.paths()}
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise ValueError(f"no bpy_lib example named {unknown}; choose from {sorted(by_name)}")
    rows = []
    for name in names:
        code = by_name[name].read_text(encoding="utf-8")
        vertices, faces = examples.run(by_name[name])
        sample_id = f"{split}-{name}"
        mesh = Path("meshes") / f"{sample_id}.ply"
        write(out_dir / mesh, vertices, faces)
        views = render_views(vertices, faces, out_dir / "images" / sample_id, config=render)
        images = [str(v.relative_to(out_dir)) for v in views]
        n_parts = len(re.findall(r"#\s*part_\d+", code))
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": [{"type": "text", "text": system}]},
            {
                "role": "user",
                "content": [{"type": "image", "image": i} for i in images]
                + [{"type": "text", "text": INSTRUCTION}],
            },
        ]
        if split == "sft":
            messages.append({"role": "assistant", "content": [{"type": "text", "text": code}]})
        rows.append(
            {
                "id": sample_id,
                "task_id": sample_id,
                "category": categories.get(name, "other"),
                "difficulty": difficulty(n_parts),
                "n_parts": n_parts,
                "split": split,
                "code": code,
                "mesh": str(mesh),
                "images": images,
                "messages": messages,
            }
        )
    path = out_dir / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    logger.info("wrote %d %s rows to %s", len(rows), split, path)
    return path


def build_examples_dataset(out_dir: Path, *, resolution: int = 96) -> dict[str, Path]:
    """``eval`` (:data:`EVAL_NAMES`) and ``sft`` (every other example) under ``out_dir``."""
    train = [p.stem for p in examples.paths() if p.stem not in EVAL_NAMES]
    return {
        "eval": build_split(out_dir, EVAL_NAMES, "eval", resolution=resolution),
        "sft": build_split(out_dir, train, "sft", resolution=resolution),
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if len(sys.argv) != 2:
        sys.exit("usage: python -m training.eval_examples OUT_DIR")
    for split_path in build_examples_dataset(Path(sys.argv[1])).values():
        logger.info("%s", split_path)
