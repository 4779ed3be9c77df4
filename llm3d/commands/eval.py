"""``llm3d eval --policy P``: the evaluation runner (DESIGN §9; :mod:`training.eval_runner`).

Runs a policy (``oracle``, ``retrieval``, ``openai``, ``tinker``, ``local``) over an eval
split, scores the programs with the reward service at ``metrics.eval_points`` samples and
writes ``report.json``, ``report.md``, the plots and the comparison grid into
``eval.out_dir/<policy>`` (or ``--out``). The reward service must be running
(``llm3d serve``; ``scripts/run_eval.sh`` starts one). A rerun reuses the cached
completions and scores.

Exit status: 0 when the report was written, 1 when the policy or the reward service
failed, 2 for usage errors (unknown policy, missing split or arguments).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from llm3d.commands.common import ConfigOption, JsonOption

__all__ = ["eval_command"]

PolicyName = Annotated[
    str,
    typer.Option(
        "--policy",
        "-p",
        help="oracle, constant, retrieval, openai, tinker or local.",
        show_default=False,
    ),
]


#: the columns printed on the console (report.md has them all)
CONSOLE_KEYS = frozenset(
    {
        "tasks",
        "execution_rate",
        "mean_reward",
        "f_score_mean",
        "f_score_ge_0.9",
        "chamfer_unit_x1000_median",
    }
)


def _table(report: dict[str, Any], console: Any) -> None:
    from training.eval_report import TABLE_COLUMNS, format_cell

    settings = report["settings"]
    k = int(settings["k"])
    table = Table(title=f"llm3d eval: {settings['policy']} on {settings['split']}")
    table.add_column("group", no_wrap=True)
    columns = [c for c in TABLE_COLUMNS if c[1] in CONSOLE_KEYS]
    for header, _, _ in columns:
        table.add_column(header, justify="right")
    table.add_column(f"pass@{k}", justify="right")
    results = report["results"]
    groups = [("overall", results["overall"])]
    groups += [(f"category: {n}", s) for n, s in results["by_category"].items()]
    groups += [(f"difficulty: {n}", s) for n, s in results["by_difficulty"].items()]
    for name, summary in groups:
        cells = [format_cell(summary.get(key), fmt) for _, key, fmt in columns]
        table.add_row(escape(name), *cells, format_cell(summary.get(f"pass@{k}"), "%"))
    console.print(table)
    selection = report.get("selection")
    if selection:
        best = Table(title=f"best of {k}: which candidate each task keeps")
        for header in ("selection", "F@0.05", "execution", "pass", "unit Chamfer ×1000"):
            best.add_column(header, justify="right")
        for by in ("first", "render", "oracle"):
            if by in selection:
                row = selection[by]
                best.add_row(
                    by,
                    format_cell(row["f_score_0.05"], ".3f"),
                    format_cell(row["execution_rate"], "%"),
                    format_cell(row["pass_rate"], "%"),
                    format_cell(row["chamfer_unit_x1000_median"], ".3f"),
                )
        console.print(best)
        if selection.get("seconds_per_candidate") is not None:
            console.print(
                f"[dim]render match: {selection['seconds_per_candidate']:.3f} s a candidate[/]"
            )
    for name, path in report["files"].items():
        console.print(f"[dim]{name}:[/] {escape(path)}")


def eval_command(
    policy: PolicyName,
    split: Annotated[
        str | None,
        typer.Option(help="Split name under data.out_dir or a JSONL file (default eval.split)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N tasks.")] = None,
    k: Annotated[
        int | None, typer.Option("--k", "-k", help="Completions per task (default eval.pass_k).")
    ] = None,
    points: Annotated[
        int | None, typer.Option(help="Surface samples (default metrics.eval_points).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Report folder (default eval.out_dir/P).")
    ] = None,
    train_split: Annotated[
        str | None, typer.Option(help="retrieval: the split retrieved from (eval.train_split).")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="openai: the endpoint (default eval.base_url).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="openai/tinker: the model (default eval.model).")
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="local: a model folder; tinker: a tinker:// path.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    reward_url: Annotated[
        str | None, typer.Option(help="The reward service (default training.reward_url).")
    ] = None,
    grid: Annotated[
        bool | None, typer.Option("--grid/--no-grid", help="Render the comparison grid.")
    ] = None,
    best_of: Annotated[
        int | None,
        typer.Option(
            "--best-of",
            min=1,
            help="N candidates a task, one kept by each --select way (sets -k).",
        ),
    ] = None,
    select: Annotated[
        str,
        typer.Option(
            help="With --best-of: comma-separated selections to compare: first (k = 1), "
            "render (renders closest to the input views, no ground truth), oracle (best "
            "F@0.05, the upper bound).",
        ),
    ] = "first,render,oracle",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a policy on an eval split; write the report, plots and comparison grid."""
    from llm3d.commands.common import console, emit_json, err_console, load
    from llm3d.exceptions import ConfigError, LLM3DError

    cfg = load(config)
    logging.basicConfig(level=cfg.log_level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "matplotlib", "worker.execution.executor"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from environments.blender_3d.dataset import DatasetError, read_split
    from training.eval_runner import EvalSettings, resolve_split, run_eval
    from training.policies import POLICIES, make_policy

    if policy not in POLICIES:
        err_console.print(
            f"[bold red]error:[/] unknown policy {escape(policy)!r}: choose one of "
            f"{', '.join(POLICIES)}"
        )
        raise typer.Exit(2)
    data_dir = Path(cfg.data.out_dir)
    selections: tuple[str, ...] = ()
    if best_of is not None:
        from training.best_of import SELECTIONS

        selections = tuple(s.strip() for s in select.split(",") if s.strip())
        unknown = [s for s in selections if s not in SELECTIONS]
        if unknown or not selections:
            err_console.print(
                f"[bold red]error:[/] --select {escape(select)!r}: use a comma-separated "
                f"list of {', '.join(SELECTIONS)}"
            )
            raise typer.Exit(2)
        k = best_of
    settings = EvalSettings(
        split=resolve_split(split or cfg.eval.split, data_dir),
        out_dir=out or Path(cfg.eval.out_dir) / policy,
        k=k or cfg.eval.pass_k,
        limit=limit if limit is not None else cfg.eval.limit,
        points=points or cfg.metrics.eval_points,
        pass_threshold=cfg.eval.pass_threshold,
        reward_url=reward_url or cfg.training.reward_url,
        token=cfg.api.token.get_secret_value() if cfg.api.token else None,
        batch_size=cfg.eval.batch_size,
        grid=cfg.eval.grid if grid is None else grid,
        # remote models answer in parallel; an in-process model one prompt at a time
        concurrency=cfg.eval.concurrency if policy in ("openai", "tinker") else 1,
        select=selections,
    )
    train_path = resolve_split(train_split or cfg.eval.train_split, data_dir)
    try:
        chosen = make_policy(
            policy,
            train=lambda: read_split(train_path),
            base_url=base_url or cfg.eval.base_url,
            model=model or cfg.eval.model,
            checkpoint=checkpoint,
            temperature=cfg.eval.temperature if temperature is None else temperature,
            max_tokens=cfg.eval.max_tokens,
            seed=cfg.seed,
            config=cfg,
        )
    except (ConfigError, DatasetError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    except LLM3DError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        disable=as_json,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            report = run_eval(
                settings,
                chosen,
                progress=progress,
                render=cfg.render,
                executor_config=cfg.executor,
            )
        except DatasetError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from exc
        except LLM3DError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from exc
    if as_json:
        emit_json(report)
    else:
        _table(report, console)
