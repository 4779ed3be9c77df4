"""What every ``llm3d`` subcommand shares: the consoles, the ``--config``/``--json`` options,
loading the configuration with a clean exit, and JSON output.

The command modules import this, never ``llm3d.cli`` (the roof that nothing imports).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from llm3d.config import Config, load_config
from llm3d.exceptions import ConfigError

__all__ = ["ConfigOption", "JsonOption", "console", "emit_json", "err_console", "load"]

console = Console()
# Errors are never wrapped: one message stays one line in a log, whatever the terminal width.
err_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML file overriding configs/default.yaml.", show_default=False
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object instead of a table.")
]


def load(config_path: Path | None) -> Config:
    """Load the configuration or exit with status 2 and the reason."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        err_console.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc


def emit_json(payload: Any) -> None:
    """Write one JSON object to stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
