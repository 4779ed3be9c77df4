"""``llm3d render INPUT --out DIR``: the multi-view images of a mesh or a program.

INPUT is a mesh file or a ``bpy_lib`` program (run through the sandboxed executor); the
views are rendered in this process with :func:`worker.render.render_views` (the camera
rig, resolution and engine of ``render`` in the configuration).

Exit status: 0 when the views were written, 1 when a program made no renderable mesh,
2 for usage errors, 3 when the executor itself failed.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from llm3d.commands.common import ConfigOption, JsonOption
from llm3d.commands.score import LazyExecutor, load_input

__all__ = ["render_command"]


def render_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="A mesh file or a bpy_lib program (.py).", show_default=False
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the PNG views (created).")
    ] = Path("renders"),
    prefix: Annotated[str, typer.Option("--prefix", help="Put before each file name.")] = "",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Render the configured views (default: front, side, top, three-quarter) of INPUT."""
    from llm3d.commands.common import console, emit_json, err_console, load
    from llm3d.exceptions import MeshError
    from llm3d.schemas import ExecStatus

    cfg = load(config)
    with ExitStack() as stack:
        loaded = load_input(input_path, LazyExecutor(stack, cfg.executor))
    if loaded.result is not None and loaded.result.status is not ExecStatus.OK:
        status = loaded.result.status
        err_console.print(
            f"[bold red]{escape(str(input_path))} made no mesh[/] ({status.value}: "
            f"{escape(loaded.result.error or 'no error message')})",
            highlight=False,
        )
        raise typer.Exit(3 if status is ExecStatus.INFRA_ERROR else 1)
    from worker.render import render_views

    start = time.perf_counter()
    try:
        paths = render_views(loaded.vertices, loaded.faces, out, config=cfg.render, prefix=prefix)
    except MeshError as exc:
        err_console.print(
            f"[bold red]cannot render {escape(str(input_path))}:[/] {escape(str(exc))}"
        )
        raise typer.Exit(1) from exc
    seconds = time.perf_counter() - start
    if as_json:
        emit_json(
            {
                "input": str(input_path),
                "views": [str(p) for p in paths],
                "engine": cfg.render.engine,
                "resolution": cfg.render.resolution,
                "seconds": round(seconds, 4),
            }
        )
        return
    for path in paths:
        console.print(escape(str(path)))
    console.print(
        f"[green]{len(paths)} views[/] ({cfg.render.engine}, {cfg.render.resolution}²) "
        f"in {seconds * 1000:.0f} ms"
    )
