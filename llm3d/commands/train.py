"""``llm3d sft`` and ``llm3d rl``: the trainers of :mod:`training` (DESIGN §7, §9).

Both read ``configs/default.yaml`` + ``--config FILE`` (``configs/sft.yaml``,
``configs/rl.yaml``); flags override it. ``--tiny`` runs the real code paths on this
machine's CPU in seconds: it builds the tiny random Qwen2.5-VL and a small dataset from
the ``bpy_lib`` examples under ``paths.runs_dir/tiny/`` (once) and trains on them with the
local backend. Logs, checkpoints and curves go to ``paths.runs_dir/<run_name>/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from llm3d.commands.common import ConfigOption, JsonOption, console, emit_json, err_console
from llm3d.config import Config, load_config
from llm3d.exceptions import ConfigError, LLM3DError

__all__ = ["rl_command", "sft_command"]

BackendName = Literal["local", "tinker"]
BackendOption = Annotated[
    BackendName | None,
    typer.Option(help="local (torch+peft) or tinker (default training.backend)."),
]
StepsOption = Annotated[int | None, typer.Option(help="Stop after this many steps in total.")]
ResumeOption = Annotated[
    str | None,
    typer.Option(help="A checkpoint folder to continue from, or 'latest' (of this run)."),
]
RunNameOption = Annotated[
    str | None, typer.Option(help="Run folder name under paths.runs_dir (training.run_name).")
]
TinyOption = Annotated[
    bool,
    typer.Option(
        "--tiny",
        help="Smoke run on CPU: a tiny random Qwen2.5-VL and the bpy_lib examples as data.",
    ),
]


def _load(config_path: Path | None, overrides: dict[str, Any]) -> Config:
    try:
        return load_config(config_path, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        err_console.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc


def _tiny(config_path: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Build the tiny model and dataset (once) and return the overrides that use them."""
    import torch

    from training.data import write_example_dataset
    from training.tiny import build_tiny_model

    cfg = _load(config_path, overrides)
    root = cfg.paths.runs_dir / "tiny"
    model, data = root / "model", root / "data" / "train.jsonl"
    if not (model / "config.json").is_file():
        build_tiny_model(model, seed=cfg.seed)
    if not data.is_file():
        write_example_dataset(data.parent)
    torch.set_num_threads(1)  # the tiny model's ops are too small to split across threads
    tiny = {
        "training__backend": "local",
        "training__base_model": str(model),
        "training__device": "cpu",
        "training__gradient_checkpointing": False,
        "training__sft_data": str(data),
        "training__sft_eval_data": str(data),
        "training__rl_data": str(data),
        "training__max_new_tokens": 64,
        "training__batch_size": 2,
        "training__group_size": 4,
        "training__learning_rate": 5e-3,
        "training__eval_every": 10,
        "training__sft_epochs": 100,  # --steps (default 40 here) decides where it stops
        "training__sft_max_steps": 40,
        "training__rl_steps": 5,
        "training__eval_limit": 4,
    }
    return {**tiny, **{k: v for k, v in overrides.items() if v is not None}}


def _resume(run_dir: Path, resume: str | None) -> Path | None:
    from training.runlog import latest_checkpoint

    if resume is None:
        return None
    if resume == "latest":
        found = latest_checkpoint(run_dir)
        if found is None:
            err_console.print(f"[bold red]no checkpoint to resume in {run_dir}[/]")
            raise typer.Exit(2)
        return found
    return Path(resume)


#: ``train(config, run_dir, resume_from, progress) -> records``: one command's trainer run.
TrainFn = Callable[[Config, Path, Path | None, bool], list[dict[str, Any]]]


def _run(
    command: str,
    train: TrainFn,
    keys: list[str],
    config_path: Path | None,
    overrides: dict[str, Any],
    backend: BackendName | None,
    run_name: str | None,
    resume: str | None,
    tiny: bool,
    as_json: bool,
) -> None:
    """What ``llm3d sft`` and ``llm3d rl`` do around their trainer.

    The options both commands have (``--config``, ``--backend``, ``--run-name``,
    ``--resume``, ``--tiny``, ``--json``), the configuration, logging, the run folder, the
    checkpoint to resume from, a clean exit on errors, and the summary of ``keys``
    (table or JSON). ``train`` is the command's own part: it builds its trainer and runs it.
    """
    overrides = {**overrides, "training__backend": backend, "training__run_name": run_name}
    if tiny:
        overrides = _tiny(config_path, overrides)
    cfg = _load(config_path, overrides)
    logging.basicConfig(
        level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_dir = cfg.paths.runs_dir / cfg.training.run_name
    checkpoint = _resume(run_dir, resume)
    try:
        records = train(cfg, run_dir, checkpoint, not as_json)
    except LLM3DError as exc:
        err_console.print(f"[bold red]{command} failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    _emit(_summary(f"llm3d {command}", run_dir, records, keys), as_json)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _summary(
    title: str, run_dir: Path, records: list[dict[str, Any]], keys: list[str]
) -> dict[str, Any]:
    from training.runlog import latest_checkpoint

    checkpoint = latest_checkpoint(run_dir)
    plots = sorted(str(p) for p in run_dir.glob("*.png"))
    first, last = (records[0], records[-1]) if records else ({}, {})
    summary = {
        "run_dir": str(run_dir),
        "steps": last.get("step", 0),
        "first": {k: first.get(k) for k in keys},
        "last": {k: last.get(k) for k in keys},
        "checkpoint": str(checkpoint) if checkpoint else None,
        "metrics": str(run_dir / "metrics.jsonl"),
        "plots": plots,
    }
    table = Table(title=title)
    table.add_column("")
    table.add_column("first step")
    table.add_column("last step")
    for k in keys:
        table.add_row(k, _fmt(first.get(k)), _fmt(last.get(k)))
    summary["table"] = table
    return summary


def _emit(summary: dict[str, Any], as_json: bool) -> None:
    table = summary.pop("table")
    if as_json:
        emit_json(summary)
        return
    console.print(table)
    console.print(
        f"run folder: {summary['run_dir']}  (metrics.jsonl, checkpoints/, {len(summary['plots'])} plots)"
    )
    if summary["checkpoint"]:
        console.print(f"last checkpoint: {summary['checkpoint']}")


def sft_command(
    config: ConfigOption = None,
    data: Annotated[
        Path | None, typer.Option(help="SFT JSONL (default training.sft_data).")
    ] = None,
    eval_data: Annotated[
        Path | None, typer.Option(help="Held-out JSONL (default training.sft_eval_data).")
    ] = None,
    steps: StepsOption = None,
    backend: BackendOption = None,
    run_name: RunNameOption = None,
    resume: ResumeOption = None,
    generate_eval: Annotated[
        bool,
        typer.Option(
            help="Also generate programs for the held-out rows at each evaluation and score "
            "them with the evaluation runner (needs the reward service at training.reward_url)."
        ),
    ] = False,
    tiny: TinyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Supervised fine-tuning (LoRA): curriculum order, loss on the program tokens only."""
    overrides: dict[str, Any] = {
        "training__sft_data": str(data) if data else None,
        "training__sft_eval_data": str(eval_data) if eval_data else None,
        "training__sft_max_steps": steps,
    }

    def train(
        cfg: Config, run_dir: Path, checkpoint: Path | None, progress: bool
    ) -> list[dict[str, Any]]:
        from training.backends import make_backend
        from training.data import load_examples, system_override
        from training.sft_trainer import SFTTrainer

        tc = cfg.training
        system = system_override(tc.system_prompt)
        rows = load_examples(tc.sft_data, system=system)
        held_out = (
            load_examples(tc.sft_eval_data, limit=tc.eval_limit, system=system)
            if tc.sft_eval_data
            else []
        )
        evaluator = None
        if generate_eval:
            if tc.sft_eval_data is None:
                raise ConfigError("--generate-eval needs held-out rows: set training.sft_eval_data")
            from training.sft_eval import eval_runner_evaluator

            evaluator = eval_runner_evaluator(cfg, tc.sft_eval_data, run_dir / "eval")
        trainer = SFTTrainer(
            cfg, make_backend(cfg), rows, run_dir, held_out=held_out, evaluator=evaluator
        )
        return trainer.train(resume=checkpoint, progress=progress)

    keys = ["step", "loss", "tokens", "seconds"]
    _run("sft", train, keys, config, overrides, backend, run_name, resume, tiny, as_json)


def rl_command(
    config: ConfigOption = None,
    data: Annotated[Path | None, typer.Option(help="RL JSONL (default training.rl_data).")] = None,
    steps: StepsOption = None,
    backend: BackendOption = None,
    run_name: RunNameOption = None,
    resume: ResumeOption = None,
    reward_url: Annotated[
        str | None, typer.Option(help="The reward service (default training.reward_url).")
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(help="Start from these weights (an SFT checkpoint folder), new optimizer."),
    ] = None,
    tiny: TinyOption = False,
    as_json: JsonOption = False,
) -> None:
    """GRPO against the reward service (llm3d serve): group_size completions a prompt."""
    overrides: dict[str, Any] = {
        "training__rl_data": str(data) if data else None,
        "training__rl_steps": steps,
        "training__reward_url": reward_url,
    }

    def train(
        cfg: Config, run_dir: Path, checkpoint: Path | None, progress: bool
    ) -> list[dict[str, Any]]:
        from llm3d.client import RewardClient
        from training.backends import make_backend
        from training.data import load_examples, system_override
        from training.rl_trainer import GRPOTrainer, ensure_tasks

        tc = cfg.training
        token = cfg.api.token.get_secret_value() if cfg.api.token else None
        rows = load_examples(tc.rl_data, system=system_override(tc.system_prompt))
        with RewardClient(tc.reward_url, token=token, retries=2) as client:
            client.health()  # fail now, not after loading the model, if it is not running
            ensure_tasks(client, rows)
            trainer = GRPOTrainer(cfg, make_backend(cfg), rows, client, run_dir)
            if init_from is not None and checkpoint is None:
                trainer.init_from(init_from)
            return trainer.train(resume=checkpoint, progress=progress)

    keys = ["step", "reward_mean", "execution_rate", "f_score_0.05", "groups_kept", "seconds"]
    _run("rl", train, keys, config, overrides, backend, run_name, resume, tiny, as_json)
