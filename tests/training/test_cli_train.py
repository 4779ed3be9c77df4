"""``llm3d sft --tiny`` as a user runs it: a run folder, a JSON summary, resume from latest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm3d.cli import app

pytest.importorskip("peft", reason="the training extra (torch, transformers, peft)")


def test_sft_tiny_runs_and_resumes_from_the_latest_checkpoint(tmp_path: Path) -> None:
    env = {"LLM3D_PATHS__RUNS_DIR": str(tmp_path), "LLM3D_LOG_LEVEL": "WARNING"}
    runner = CliRunner()
    first = runner.invoke(app, ["sft", "--tiny", "--steps", "2", "--json"], env=env)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout[first.stdout.index("{") :])
    assert summary["steps"] == 2 and summary["checkpoint"].endswith("step-000002")
    assert summary["last"]["loss"] > 0
    assert (tmp_path / "tiny" / "model" / "config.json").is_file()

    again = runner.invoke(
        app, ["sft", "--tiny", "--steps", "3", "--resume", "latest", "--json"], env=env
    )
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.stdout[again.stdout.index("{") :])
    assert resumed["steps"] == 3 and resumed["first"]["step"] == 3
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if '"train"' in x] == [1, 2, 3]


def test_rl_without_a_reward_service_says_so(tmp_path: Path) -> None:
    data = tmp_path / "rl.jsonl"
    data.write_text("", encoding="utf-8")
    env = {"LLM3D_PATHS__RUNS_DIR": str(tmp_path)}
    result = CliRunner().invoke(
        app, ["rl", "--tiny", "--reward-url", "http://127.0.0.1:9", "--steps", "1"], env=env
    )
    assert result.exit_code == 1
    assert "is the reward service running at http://127.0.0.1:9" in result.output
