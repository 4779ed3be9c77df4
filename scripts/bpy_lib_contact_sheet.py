"""Render every bpy_lib example (Workbench) into one PNG grid, so people can see the library.

Usage: ``.venv/bin/python scripts/bpy_lib_contact_sheet.py [--out runs/bpy_lib_examples.png]
[--size 256] [--columns 6]``. Needs the ``bpy`` wheel and Pillow.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from rich.progress import track  # noqa: E402

from bpy_lib import examples  # noqa: E402

log = logging.getLogger("contact_sheet")


def _frame_camera(lo: Vector, hi: Vector, size: int) -> None:
    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("sheet_camera")
    cam_data.type = "ORTHO"
    centre = (lo + hi) / 2
    extent = max((hi - lo).length, 1e-3)
    cam_data.ortho_scale = extent * 1.05
    cam = bpy.data.objects.new("sheet_camera", cam_data)
    scene.collection.objects.link(cam)
    view = Vector((1.0, -1.4, 0.9)).normalized()
    cam.location = centre + view * (extent * 3)
    cam.rotation_euler = (-view).to_track_quat("-Z", "Y").to_euler()
    cam_data.clip_end = extent * 10
    scene.camera = cam
    render = scene.render
    render.engine = "BLENDER_WORKBENCH"
    render.resolution_x = render.resolution_y = size
    render.film_transparent = False
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "OBJECT"
    shading.show_cavity = True


def render_example(path: Path, out: Path, size: int) -> None:
    """Run one example and render it to ``out``."""
    vertices, _faces = examples.run(path)
    lo = Vector(vertices.min(axis=0).tolist())
    hi = Vector(vertices.max(axis=0).tolist())
    palette = [(0.8, 0.55, 0.35, 1), (0.45, 0.6, 0.8, 1), (0.6, 0.75, 0.45, 1), (0.8, 0.7, 0.4, 1)]
    for i, obj in enumerate(o for o in bpy.data.objects if o.type == "MESH"):
        obj.color = palette[i % len(palette)]
    _frame_camera(lo, hi, size)
    bpy.context.scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bpy_lib_examples.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--limit", type=int, default=0, help="only the first N examples")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    progs = examples.paths()[: args.limit or None]
    rows = math.ceil(len(progs) / args.columns)
    label_h = 20
    sheet = Image.new("RGB", (args.columns * args.size, rows * (args.size + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(track(progs, description="rendering examples")):
            png = Path(tmp) / f"{path.stem}.png"
            render_example(path, png, args.size)
            x, y = (i % args.columns) * args.size, (i // args.columns) * (args.size + label_h)
            with Image.open(png) as tile:
                sheet.paste(tile.convert("RGB"), (x, y + label_h))
            draw.text((x + 6, y + 4), path.stem, fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    log.info("wrote %s (%d examples)", args.out, len(progs))


if __name__ == "__main__":
    main()
