"""A small dataset built from the bpy_lib examples, in the format of DESIGN §6.

Each example program is run in Blender (in this process), its mesh written as the ground
truth (``meshes/<id>.ply``), its views rendered with :func:`worker.render.render_views`
(``images/<id>/<view>.png``), and one row a sample written: ``sample`` rows
(``{id, category, difficulty, n_parts, code, images, mesh}``) or ``chat`` rows (Qwen2.5-VL
messages: system reference, user images + instruction, assistant program).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bpy_lib import examples
from bpy_lib.export import write
from llm3d.config import RenderConfig
from worker.render import render_views

#: name → (category, difficulty)
EVAL_OBJECTS = {
    "mug": ("container", "easy"),
    "table": ("furniture", "easy"),
    "chair": ("furniture", "medium"),
    "bottle": ("container", "medium"),
}
TRAIN_OBJECTS = {
    "stool": ("furniture", "easy"),
    "bench": ("furniture", "easy"),
    "vase": ("container", "easy"),
    "bowl": ("container", "easy"),
    "wine_glass": ("container", "medium"),
    "round_table": ("furniture", "medium"),
}


def build_split(
    out_dir: Path,
    objects: dict[str, tuple[str, str]],
    split: str,
    *,
    kind: str = "sample",
    resolution: int = 64,
) -> Path:
    """Write ``out_dir/<split>.jsonl`` (+ meshes and images) for ``objects``; return its path."""
    (out_dir / "meshes").mkdir(parents=True, exist_ok=True)
    render = RenderConfig(resolution=resolution, workbench_aa="OFF")
    by_name = {p.stem: p for p in examples.paths()}
    rows = []
    for name, (category, difficulty) in objects.items():
        path = by_name[name]
        code = path.read_text(encoding="utf-8")
        vertices, faces = examples.run(path)
        sample_id = f"{split}-{name}"
        mesh = Path("meshes") / f"{sample_id}.ply"
        write(out_dir / mesh, vertices, faces)
        views = render_views(vertices, faces, out_dir / "images" / sample_id, config=render)
        images = [str(v.relative_to(out_dir)) for v in views]
        n_parts = len(re.findall(r"#\s*part_\d+", code))
        row = {
            "id": sample_id,
            "category": category,
            "difficulty": difficulty,
            "n_parts": n_parts,
            "mesh": str(mesh),
        }
        if kind == "chat":
            row["messages"] = [
                {"role": "system", "content": "You write bpy_lib programs."},
                {
                    "role": "user",
                    "content": [{"type": "image", "image": i} for i in images]
                    + [{"type": "text", "text": "Write the bpy_lib program of this object."}],
                },
                {"role": "assistant", "content": code},
            ]
        else:
            row.update({"code": code, "images": images})
        rows.append(row)
    split_path = out_dir / f"{split}.jsonl"
    split_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return split_path
