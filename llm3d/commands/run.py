"""``llm3d run PROGRAM.py``: run one program through the sandboxed executor.

The same path every reward takes (policy check, warm fork server, forked child, limits), so
what this command prints is what the reward would see. Exit status 0 when the program's status
is ``ok``, 1 for any other program outcome, 2 for usage or configuration errors, 3 when the
executor itself failed (``infra_error``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from worker.types import ExecResult

from llm3d.commands.common import ConfigOption, JsonOption

__all__ = ["run_command", "write_obj"]


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as Wavefront OBJ (``v`` and 1-based ``f`` lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii") as handle:
        handle.write(f"# llm3d run: {len(vertices)} vertices, {len(faces)} triangles\n")
        np.savetxt(handle, np.asarray(vertices, dtype=np.float64), fmt="v %.6f %.6f %.6f")
        np.savetxt(handle, np.asarray(faces, dtype=np.int64) + 1, fmt="f %d %d %d")


def _as_dict(result: ExecResult, program: Path, exported: Path | None) -> dict[str, object]:
    return {
        "program": str(program),
        "status": result.status.value,
        "error": result.error,
        "vertices": len(result.vertices),
        "faces": len(result.faces),
        "seconds": round(result.seconds, 4),
        "stdout": result.stdout,
        "stderr": result.stderr,
        "diagnostics": result.diagnostics,
        "exported": str(exported) if exported else None,
    }


def run_command(
    program: Annotated[
        Path,
        typer.Argument(help="The program (Python using bpy_lib) to run.", show_default=False),
    ],
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write the resulting mesh here (.obj).", show_default=False),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.001, help="Wall-clock limit in seconds (default: config)."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run one program in the sandbox; print its status, mesh counts and time."""
    from llm3d.commands.common import console, emit_json, err_console, load
    from llm3d.schemas import ExecStatus
    from worker.execution.executor import Executor

    cfg = load(config)
    try:
        code = program.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err_console.print(f"[bold red]cannot read {escape(str(program))}:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if export is not None and export.suffix.lower() != ".obj":
        err_console.print(f"[bold red]--export must end in .obj[/] (got {escape(str(export))})")
        raise typer.Exit(2)
    with Executor(cfg.executor) as executor:
        result = executor.run(code, timeout_s=timeout)
    exported = None
    if export is not None and len(result.faces):
        write_obj(export, result.vertices, result.faces)
        exported = export
    if as_json:
        emit_json(_as_dict(result, program, exported))
    else:
        colour = "green" if result.ok else "bold red"
        table = Table(title=f"llm3d run {escape(str(program))}", show_header=False)
        table.add_column("key", style="cyan")
        table.add_column("value")
        table.add_row("status", f"[{colour}]{result.status.value}[/]")
        if result.error:
            table.add_row("error", escape(result.error))
        table.add_row("mesh", f"{len(result.vertices)} vertices, {len(result.faces)} triangles")
        table.add_row("time", f"{result.seconds * 1000:.1f} ms")
        if exported:
            table.add_row("exported", escape(str(exported)))
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text.strip():
                table.add_row(name, escape(text.rstrip()[-1000:]))
        console.print(table)
    if result.status is ExecStatus.INFRA_ERROR:
        raise typer.Exit(3)
    if not result.ok:
        raise typer.Exit(1)
