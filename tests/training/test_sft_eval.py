"""SFT's periodic evaluation through the evaluation runner and the real reward service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import make_config
from training.backends.local import LocalBackend
from training.data import load_examples
from training.runlog import read_metrics
from training.sft_eval import eval_runner_evaluator
from training.sft_trainer import SFTTrainer


@pytest.mark.blender
@pytest.mark.slow
def test_sft_evaluates_through_the_eval_runner(
    tiny_model: Path, dataset: Path, tmp_path: Path, reward_service: str
) -> None:
    config = make_config(
        tiny_model,
        tmp_path,
        sft_max_steps=2,
        eval_every=2,
        eval_limit=2,
        reward_url=reward_service,
        max_new_tokens=16,
    )
    rows = load_examples(dataset)
    evaluator = eval_runner_evaluator(config, dataset, tmp_path / "run" / "eval")
    trainer = SFTTrainer(
        config,
        LocalBackend(config.training),
        rows,
        tmp_path / "run",
        held_out=rows[:2],
        evaluator=evaluator,
    )
    trainer.train(progress=False)

    evals = read_metrics(tmp_path / "run" / "metrics.jsonl", "eval")
    assert len(evals) == 1 and evals[0]["step"] == 2
    record = evals[0]
    assert record["eval_nll"] > 0
    assert record["eval_tasks"] == 2 and record["eval_completions"] == 2
    assert record["eval_execution_rate"] == 0.0  # a random tiny model writes no program
    report = json.loads((tmp_path / "run" / "eval" / "step-000002" / "report.json").read_text())
    assert report["settings"]["policy"] == "training"
    assert len(report["records"]) == 2
