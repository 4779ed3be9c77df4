"""The small experiment's report (training/small_experiment.py) and its constant baseline:
standard errors over tasks, paired differences, the targets' verdicts, the held-out sample."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from environments.blender_3d.dataset import Sample
from training.policies import ConstantPolicy
from training.small_experiment import compare, per_task, policy_stats, targets, write_subset


def _rec(task: str, reward: float, f: float, status: str = "ok") -> dict[str, Any]:
    return {"task_id": task, "status": status, "reward": reward, "metrics": {"f_score_0.05": f}}


def _policy(values: dict[str, list[float]], status: str = "ok") -> list[dict[str, Any]]:
    return [_rec(t, v, v, status) for t, vs in values.items() for v in vs]


def test_standard_errors_are_over_task_means_and_differences_are_paired() -> None:
    base = _policy({"a": [0.1, 0.3], "b": [0.5, 0.5], "c": [0.2, 0.0]})
    better = _policy({"a": [0.4, 0.4], "b": [0.7, 0.9], "c": [0.3, 0.3]})
    assert per_task(base, "reward") == pytest.approx({"a": 0.2, "b": 0.5, "c": 0.1})
    stats = policy_stats(base)["reward"]
    # task means 0.2, 0.5, 0.1: mean 0.2667, sample std 0.2082, SE = std / sqrt(3)
    assert stats["tasks"] == 3 and stats["mean"] == pytest.approx(0.8 / 3)
    assert stats["se"] == pytest.approx(0.208167 / math.sqrt(3), rel=1e-4)
    diff = compare(base, better, "reward")
    # per-task differences 0.2, 0.3, 0.2: mean 0.2333, SE 0.0333, z = 7
    assert diff["mean"] == pytest.approx(0.7 / 3)
    assert diff["se"] == pytest.approx(0.057735 / math.sqrt(3), rel=1e-4)
    assert diff["significant"] and diff["z"] == pytest.approx(7.0, rel=1e-4)
    # a shift within the task-to-task noise is not significant
    noisy = _policy({"a": [0.5, 0.5], "b": [0.3, 0.3], "c": [0.2, 0.2]})
    assert not compare(base, noisy, "reward")["significant"]


def test_failed_programs_count_as_zero_f_and_infra_errors_are_left_out() -> None:
    records = [
        _rec("a", 0.05, 0.9, status="exec_failed"),  # F of a failed program is 0, not 0.9
        _rec("a", 0.8, 0.6),
        {"task_id": "b", "status": "infra_error", "reward": None, "metrics": {}},
        _rec("b", 1.0, 1.0),
    ]
    assert per_task(records, "f_score") == {"a": 0.3, "b": 1.0}
    assert per_task(records, "executed") == {"a": 0.5, "b": 1.0}


def test_targets_say_reached_or_not_with_their_numbers() -> None:
    constant = _policy({t: [0.2, 0.2] for t in "abcd"})
    sft = _policy({"a": [0.5, 0.7], "b": [0.6, 0.6], "c": [0.4, 0.8], "d": [0.5, 0.5]})
    sft[0]["status"] = "exec_failed"  # 7 of 8 executed: 87.5 %, below 90 %
    grpo = _policy({"a": [0.5, 0.7], "b": [0.6, 0.6], "c": [0.4, 0.8], "d": [0.5, 0.6]})
    found = {
        t["target"]: t
        for t in targets({"gated": {"constant": constant, "sft": sft, "grpo-gated": grpo}})
    }
    execution = found["after SFT: execution rate ≥ 90%"]
    assert execution["value"] == pytest.approx(0.875) and execution["reached"] is False
    f_target = found["after SFT: mean F@0.05 above the constant program's by > 2 SE"]
    assert f_target["reached"] is True and f_target["mean"] > 0.2
    # one task better by 0.05, three equal: a gain smaller than two standard errors
    grpo_target = found["after GRPO (gated): mean gated reward above SFT's by > 2 SE"]
    assert grpo_target["mean"] == pytest.approx(0.0125) and grpo_target["reached"] is False


def test_the_held_out_subset_is_a_seeded_sample_in_file_order(tmp_path: Path) -> None:
    src = tmp_path / "eval.jsonl"
    src.write_text("".join(json.dumps({"id": f"r{i:02d}"}) + "\n" for i in range(40)))
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert write_subset(src, first, 10, seed=3) == 10
    write_subset(src, second, 10, seed=3)
    ids = [json.loads(line)["id"] for line in first.read_text().splitlines()]
    assert first.read_text() == second.read_text() and ids == sorted(ids)
    assert ids != [f"r{i:02d}" for i in range(10)], "a sample, not the split's first rows"
    assert write_subset(src, first, 100) == 40


def _sample(i: int, category: str, code: str) -> Sample:
    return Sample(f"s{i}", category, "easy", 1, (), (), code=code)


def test_the_constant_policy_answers_the_most_common_training_program() -> None:
    train = [_sample(0, "part", "A"), _sample(1, "part", "B"), _sample(2, "obj", "B")]
    policy = ConstantPolicy(train)
    assert policy.code == "B" and policy.count == 2
    (answer, again) = policy.generate(_sample(9, "obj", "C"), 2)
    assert "B" in answer and answer == again and "C" not in answer
    # all distinct: the first program of the most common category
    distinct = [_sample(0, "obj", "X"), _sample(1, "part", "Y"), _sample(2, "part", "Z")]
    assert ConstantPolicy(distinct).code == "Y"
