"""``llm3d data parts|assemble|build|fit|infinigen``: the data pipeline's stages (DESIGN §9).

Each stage reads the ``data`` section of the configuration (``--config FILE``), is
resumable where it writes many files, shows a progress bar, and with ``--json`` prints one
JSON summary instead of a table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llm3d.cli import ConfigOption, JsonOption

__all__ = ["data_app"]

data_app = typer.Typer(help="The data pipeline: parts, objects, datasets, the part fitter.")

OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Output folder (default: under data.out_dir).", show_default=False
    ),
]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="Run seed (default: the configuration's seed).")
]


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("worker.executor").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _summary_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, escape(str(value)))
    return table


@data_app.command("parts")
def parts_command(
    n: Annotated[
        int | None,
        typer.Option("--n", "-n", help="Kept samples wanted (default data.n_part_samples)."),
    ] = None,
    out: OutOption = None,
    seed: SeedOption = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Executor servers (default data.workers).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate single-part programs of every bpy_lib family (resumable: rerun to continue)."""
    from datagen.part_generator import generate_parts
    from llm3d.cli import console, emit_json, err_console, load

    cfg = load(config)
    data = cfg.data if workers is None else cfg.data.model_copy(update={"workers": workers})
    target = n if n is not None else data.n_part_samples
    folder = out or data.out_dir / "parts"
    _setup_logging(cfg.log_level)
    try:
        summary = generate_parts(
            folder,
            target,
            seed=cfg.seed if seed is None else seed,
            data=data,
            executor=cfg.executor,
            show_progress=not as_json,
        )
    except ValueError as exc:
        err_console.print(f"[bold red]data parts:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    result = summary.as_dict()
    if as_json:
        emit_json(result)
    else:
        console.print(_summary_table("part samples", result))
    if summary.kept < target:
        raise typer.Exit(1)
