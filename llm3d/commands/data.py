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

from llm3d.commands.common import ConfigOption, JsonOption

__all__ = ["data_app"]

data_app: typer.Typer = typer.Typer(
    help="The data pipeline: parts, objects, datasets, the part fitter.", no_args_is_help=True
)

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
    logging.getLogger("worker.execution.executor").setLevel(
        max(logging.WARNING, logging.getLevelName(level))
    )


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
    from llm3d.commands.common import console, emit_json, err_console, load

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


@data_app.command("assemble")
def assemble_command(
    out: OutOption = None,
    category: Annotated[
        list[str] | None,
        typer.Option("--category", help="Only these categories (repeatable; default all)."),
    ] = None,
    n: Annotated[
        int | None, typer.Option("--n", "-n", help="Objects per category (default: the plan's).")
    ] = None,
    seed: SeedOption = None,
    infinigen: Annotated[
        Path | None,
        typer.Option(
            "--infinigen",
            help="An Infinigen parts folder (data infinigen): fit its parts, assemble each "
            "asset into one program, run and score it; objects.jsonl + rejects.jsonl.",
        ),
    ] = None,
    retry_rejects: Annotated[
        bool,
        typer.Option(
            "--retry-rejects",
            help="With --infinigen: assemble the rejected assets again (after a fitter change).",
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write object programs (one .py a object, `# part_k: label` comments) without running them,
    or, with --infinigen, turn Infinigen assets into verified object programs."""
    import json

    from datagen.dataset_builder import plan_objects
    from datagen.object_assembler import load_categories, make_object
    from llm3d.commands.common import console, emit_json, err_console, load
    from llm3d.exceptions import ConfigError

    cfg = load(config)
    if infinigen is not None:
        _assemble_infinigen(infinigen, out, cfg, as_json, retry_rejects)
        return
    try:
        categories = load_categories(cfg.data.categories_file)
    except ConfigError as exc:
        err_console.print(f"[bold red]data assemble:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    unknown = sorted(set(category or []) - set(categories))
    if unknown:
        err_console.print(
            f"[bold red]data assemble:[/] unknown categories {unknown}; "
            f"known: {', '.join(categories)}"
        )
        raise typer.Exit(2)
    chosen = {k: v for k, v in categories.items() if not category or k in category}
    run_seed = cfg.seed if seed is None else seed
    if n is None:
        objects = [obj for obj, _ in plan_objects(chosen, cfg.data, run_seed)]
    else:
        objects = [make_object(c, run_seed, i) for c in chosen.values() for i in range(n)]
    folder = out or cfg.data.out_dir / "programs"
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for obj in objects:
        (folder / f"{obj.id}.py").write_text(obj.code, encoding="utf-8")
        rows.append(
            {
                "id": obj.id,
                "category": obj.category,
                "n_parts": obj.n_parts,
                "difficulty": obj.difficulty,
                "complexity": obj.complexity,
                "ops": obj.ops,
                "path": str(folder / f"{obj.id}.py"),
            }
        )
    (folder / "programs.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    if as_json:
        emit_json({"out": str(folder), "objects": rows})
        return
    table = Table(title=f"{len(rows)} object programs in {folder}")
    for col in ("id", "parts", "difficulty", "ops"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], str(r["n_parts"]), r["difficulty"], ", ".join(r["ops"]))
    console.print(table)


def _assemble_infinigen(
    folder: Path, out: Path | None, cfg: Any, as_json: bool, retry_rejects: bool = False
) -> None:
    from datagen.infinigen_objects import assemble_assets, load_infinigen_categories
    from llm3d.commands.common import console, emit_json, err_console
    from llm3d.exceptions import ConfigError
    from worker.execution.executor import Executor

    _setup_logging(cfg.log_level)
    if not (folder / "parts.jsonl").is_file():
        err_console.print(
            f"[bold red]data assemble:[/] {escape(str(folder))} has no parts.jsonl; "
            "run `llm3d data infinigen --out DIR` first"
        )
        raise typer.Exit(2)
    try:
        categories = load_infinigen_categories(cfg.data.categories_file)
    except ConfigError as exc:
        err_console.print(f"[bold red]data assemble:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    with Executor(cfg.executor) as runner:
        summary = assemble_assets(
            folder, out, runner=runner, min_f_score=cfg.data.min_object_f_score,
            categories=categories, seed=cfg.seed, show_progress=not as_json,
            retry_rejects=retry_rejects,
        )  # fmt: skip
    if as_json:
        emit_json(summary)
    else:
        console.print(_summary_table("Infinigen objects", summary))


@data_app.command("build")
def build_command(
    out: OutOption = None,
    seed: SeedOption = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Executor servers (default data.workers).")
    ] = None,
    sources: Annotated[
        str | None,
        typer.Option(
            "--sources",
            help="Comma-separated sources: templates,infinigen,parts,composed (default data.sources).",
        ),
    ] = None,
    infinigen_dir: Annotated[
        Path | None,
        typer.Option(
            "--infinigen-dir", help="Folder with objects.jsonl (data assemble --infinigen)."
        ),
    ] = None,
    parts_dir: Annotated[
        Path | None, typer.Option("--parts-dir", help="Folder with parts.jsonl (data parts).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run and render the objects; write sft/rl/eval JSONL, meshes, a card (resumable)."""
    from datagen.dataset_builder import build_dataset
    from llm3d.commands.common import console, emit_json, err_console, load
    from llm3d.exceptions import ConfigError

    cfg = load(config)
    data = cfg.data if workers is None else cfg.data.model_copy(update={"workers": workers})
    _setup_logging(cfg.log_level)
    try:
        summary = build_dataset(
            out or data.out_dir / "objects",
            seed=cfg.seed if seed is None else seed,
            data=data,
            executor=cfg.executor,
            render=cfg.render,
            show_progress=not as_json,
            sources=[x.strip() for x in sources.split(",") if x.strip()] if sources else None,
            infinigen_dir=infinigen_dir or data.out_dir / "infinigen",
            parts_dir=parts_dir or data.out_dir / "parts",
        )
    except (ConfigError, ValueError) as exc:
        err_console.print(f"[bold red]data build:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if as_json:
        emit_json(summary.as_dict())
    else:
        console.print(_summary_table("object dataset", summary.as_dict()))
    if summary.objects == 0:
        raise typer.Exit(1)


@data_app.command("fit")
def fit_command(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="MESH|DIR",
            help="A part mesh (.obj/.ply/.stl/.glb/.off), or a parts folder (parts.jsonl).",
            show_default=False,
        ),
    ],
    families: Annotated[
        str | None,
        typer.Option("--families", help="Comma-separated families to try (default all)."),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option("--verify/--no-verify", help="Run the program in Blender and score that."),
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the program (MESH) or the rows (DIR) here."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="DIR: fit at most this many parts.")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find a bpy_lib program that reproduces a mesh (its F@0.05), or every part of a folder."""
    from contextlib import ExitStack

    from datagen.part_fitter import fit_mesh
    from llm3d.commands.common import console, emit_json, err_console, load
    from llm3d.exceptions import MeshError
    from llm3d.meshio import load_mesh

    cfg = load(config)
    _setup_logging(cfg.log_level)
    names = [n.strip() for n in families.split(",")] if families else None
    with ExitStack() as stack:
        runner = None
        if verify:
            from worker.execution.executor import Executor

            runner = stack.enter_context(Executor(cfg.executor))
        if path.is_dir():
            from datagen.fit_runner import fit_parts

            if not (path / "parts.jsonl").is_file():
                err_console.print(f"[bold red]data fit:[/] {escape(str(path))} has no parts.jsonl")
                raise typer.Exit(2)
            summary = fit_parts(
                path, out, runner=runner, limit=limit, families=names, show_progress=not as_json
            )
            if as_json:
                emit_json(summary)
            else:
                console.print(_summary_table("fitted parts", summary))
            return
        try:
            vertices, faces = load_mesh(path)
            result = fit_mesh(vertices, faces, families=names, runner=runner)
        except (ValueError, MeshError, RuntimeError) as exc:
            err_console.print(f"[bold red]data fit:[/] {escape(str(exc))}")
            raise typer.Exit(1 if isinstance(exc, RuntimeError) else 2) from exc
    if out is not None:
        out.write_text(result.program, encoding="utf-8")
    if as_json:
        emit_json({"mesh": str(path), **result.as_dict()})
        return
    console.print(escape(result.program))
    checked = "run in Blender" if result.verified else "numpy twin, not run"
    console.print(
        f"[bold]{result.family}[/]: F@0.05 = [bold]{result.f_score:.4f}[/] ({checked}), "
        f"{result.seconds:.1f} s"
    )
    if not result.transform.identity:
        centre = ", ".join(f"{c:.4g}" for c in result.transform.centre)
        console.print(
            f"moved into bpy_lib's frame: fitted = (mesh - [{centre}]) × "
            f"{result.transform.scale:.4g}"
        )


@data_app.command("infinigen")
def infinigen_command(
    factory: Annotated[
        list[str] | None,
        typer.Option(
            "--factory",
            help="Infinigen factory class (repeatable; default data.infinigen_factories).",
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds", help="Assets per factory, seeds 0..N-1 (default data.infinigen_seeds)."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds per asset (default data.infinigen_timeout_s)."),
    ] = None,
    survey: Annotated[
        bool,
        typer.Option(
            "--survey",
            help="Spawn seed 0 of every indoor factory (or each --factory) and record which "
            "run within the timeout, and why the others do not, in data.infinigen_survey "
            "(or --out); resumable.",
        ),
    ] = False,
    out: OutOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Spawn Infinigen indoor assets in the optional sidecar and split them into parts."""
    from datagen.infinigen_extractor import (
        DEFAULT_FACTORIES,
        INSTALL_HINT,
        extract_assets,
        sidecar_python,
    )
    from llm3d.commands.common import console, emit_json, load

    cfg = load(config)
    _setup_logging(cfg.log_level)
    python = sidecar_python(cfg.data.infinigen_python)
    if python is None:
        if as_json:
            emit_json({"installed": False, "hint": INSTALL_HINT})
        else:
            console.print(f"[yellow]{escape(INSTALL_HINT)}[/]")
        return
    limit = cfg.data.infinigen_timeout_s if timeout is None else timeout
    if survey:
        raw = cfg.data.out_dir / "infinigen" / "raw"  # where data infinigen looks for seed 0
        _survey(out or cfg.data.infinigen_survey, factory, python, limit, raw, as_json)
        return
    summary = extract_assets(
        out or cfg.data.out_dir / "infinigen",
        factory or list(cfg.data.infinigen_factories or DEFAULT_FACTORIES),
        list(range(cfg.data.infinigen_seeds if seeds is None else seeds)),
        python=python,
        timeout_s=limit,
        show_progress=not as_json,
    )
    if as_json:
        emit_json({"installed": True, **summary})
    else:
        console.print(_summary_table("infinigen parts", summary))
    if summary["failed"] and not summary["parts"]:
        raise typer.Exit(1)


def _survey(
    path: Path,
    factories: list[str] | None,
    python: Path,
    timeout_s: float,
    raw_dir: Path,
    as_json: bool,
) -> None:
    from datagen.infinigen_survey import survey_factories
    from llm3d.commands.common import console, emit_json

    records = survey_factories(
        path, python=python, timeout_s=timeout_s, factories=factories, raw_dir=raw_dir,
        show_progress=not as_json,
    )  # fmt: skip
    if as_json:
        emit_json({"survey": str(path), "factories": records})
        return
    table = Table(title=f"Infinigen indoor factories (seed 0, limit {timeout_s:g} s): {path}")
    for column in ("factory", "status", "seconds", "parts", "reason"):
        table.add_column(column)
    for name, rec in sorted(records.items()):
        table.add_row(
            name, rec["status"], f"{rec.get('seconds') or 0:.1f}", str(rec.get("parts", "")),
            escape(str(rec.get("reason", ""))),
        )  # fmt: skip
    console.print(table)
    ok = sum(rec["status"] == "ok" for rec in records.values())
    console.print(f"{ok} of {len(records)} factories run headless within {timeout_s:g} s")
