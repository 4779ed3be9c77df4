"""The ``llm3d`` command (DESIGN §9): the roof that imports the parts and that nothing imports.

Every command has ``--help``, reads the configuration (``--config FILE``, then ``LLM3D_``
variables) and, where it prints a result, ``--json`` prints one JSON object instead.
Subcommands of the parts live in ``llm3d/commands/`` and are added here once they work.
"""

from __future__ import annotations

import json
from contextlib import nullcontext

import typer
from rich.markup import escape
from rich.table import Table

from llm3d.commands.common import ConfigOption, JsonOption, console, emit_json, load
from llm3d.commands.data import data_app
from llm3d.commands.demo import demo_command
from llm3d.commands.eval import eval_command
from llm3d.commands.farm import health_command, serve_command, worker_command
from llm3d.commands.render import render_command
from llm3d.commands.run import run_command
from llm3d.commands.score import score_command
from llm3d.commands.train import rl_command, sft_command

app = typer.Typer(
    name="llm3d",
    help="Image-to-3D code generation with verifiable rewards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective configuration and where each value came from."""
    cfg = load(config)
    flat = cfg.flat()
    if as_json:
        data = cfg.model_dump(mode="json")
        data["api"]["token"] = flat["api.token"]
        emit_json({"config": data, "sources": cfg.sources})
        return
    table = Table(title="llm3d configuration", show_lines=False)
    table.add_column("key", style="cyan", no_wrap=True)
    table.add_column("value")
    table.add_column("source", style="dim")
    for key, value in flat.items():
        shown = json.dumps(value) if not isinstance(value, str) else value
        table.add_row(key, escape(shown), escape(cfg.sources.get(key, "built-in default")))
    console.print(table)


@app.command()
def doctor(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Check this machine: Python, Blender, Redis, disk, optional extras. Exit 1 on any FAIL."""
    from llm3d.doctor import as_dicts, run_checks

    cfg = load(config)
    with (
        console.status("checking the environment…", spinner="dots")
        if not as_json
        else nullcontext()
    ):
        checks = run_checks(cfg)
    failed = any(c.status == "FAIL" for c in checks)
    if as_json:
        emit_json({"ok": not failed, "checks": as_dicts(checks)})
    else:
        table = Table(title="llm3d doctor")
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("detail")
        table.add_column("fix", style="yellow")
        colour = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}
        for c in checks:
            table.add_row(
                c.name, f"[{colour[c.status]}]{c.status}[/]", escape(c.detail), escape(c.fix)
            )
        console.print(table)
        summary = "some checks FAILED" if failed else "all required checks passed"
        console.print(f"[{'bold red' if failed else 'green'}]{summary}[/]")
    if failed:
        raise typer.Exit(1)


# Part commands (they live in llm3d/commands/).
app.command("run")(run_command)
app.command("score")(score_command)
app.command("render")(render_command)
app.command("serve")(serve_command)
app.command("worker")(worker_command)
app.command("health")(health_command)
app.command("demo")(demo_command)
app.add_typer(data_app, name="data")
app.command("eval")(eval_command)
app.command("sft")(sft_command)
app.command("rl")(rl_command)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
