"""GRPO: advantages, a step against the real reward service (inline backend), resume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from llm3d.client import RewardClient
from llm3d.schemas import ExecStatus, RewardResponse, RewardResult
from tests.training.conftest import make_config
from training.backends.base import Completion, Datum
from training.backends.local import LocalBackend
from training.data import Example, load_examples
from training.rl_trainer import Group, GRPOTrainer, group_advantages
from training.runlog import read_metrics

BROKEN = "from bpy_lib import *\n# part_1: seat\nbox(size=[1, 1])\nexport_scene()\n"


def test_group_advantages_subtract_the_mean_without_std() -> None:
    assert group_advantages([1.0, 0.0, 0.5, 0.5]) == [0.5, -0.5, 0.0, 0.0]
    # infra_error (None) takes no part in the mean and gets no advantage
    assert group_advantages([0.9, None, 0.1]) == pytest.approx([0.4, None, -0.4])
    # equal rewards carry no signal: the group is dropped
    assert group_advantages([0.3, 0.3, 0.3]) is None
    assert group_advantages([0.3, None]) is None


class FakeScorer:
    """A deterministic stand-in of the reward service (for tests that need no Blender)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score_batch(self, items: Sequence[dict[str, Any]], **_: Any) -> RewardResponse:
        self.calls.append(len(items))
        results = []
        for item in items:
            code = item["code"]
            if "infra" in item["id"]:
                results.append(
                    RewardResult(id=item["id"], status=ExecStatus.INFRA_ERROR, reward=None)
                )
                continue
            reward = (sum(map(ord, code)) % 7) / 7
            results.append(
                RewardResult(
                    id=item["id"],
                    status=ExecStatus.OK if reward > 0.5 else ExecStatus.EMPTY,
                    reward=reward,
                    metrics={"f_score_0.05": reward},
                )
            )
        return RewardResponse(request_id="fake", reward_version="test", results=results)


def _scripted_group(backend: LocalBackend, example: Example, texts: list[str]) -> Group:
    prompt = backend.render_prompt(example.prompt)
    completions = []
    for text in texts:
        tokens = tuple(backend.encode_completion(text))
        lp = backend.logprobs([Datum(prompt=prompt, completion=tokens)])[0]
        completions.append(Completion(tokens, tuple(lp), text, True))
    return Group(example, prompt, completions)


def _sum_logprob(backend: LocalBackend, group: Group, index: int) -> float:
    datum = Datum(prompt=group.prompt, completion=group.completions[index].tokens)
    return sum(backend.logprobs([datum])[0])


def test_build_data_excludes_infra_errors_and_applies_the_kl_penalty(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    config = make_config(tiny_model, tmp_path, group_size=3, kl_coef=0.5)
    backend = LocalBackend(config.training)
    rows = load_examples(dataset)
    trainer = GRPOTrainer(config, backend, rows, FakeScorer(), tmp_path / "run")
    group = _scripted_group(backend, rows[0], ["a = 1", "b = 22", "c = 333"])
    group.results = [
        RewardResult(id="0", status=ExecStatus.OK, reward=0.8),
        RewardResult(id="1", status=ExecStatus.INFRA_ERROR, reward=None),
        RewardResult(id="2", status=ExecStatus.EXEC_FAILED, reward=0.2),
    ]
    flat = _scripted_group(backend, rows[1], ["x", "y", "z"])
    flat.results = [RewardResult(id=str(i), status=ExecStatus.EMPTY, reward=0.0) for i in range(3)]

    data, stats = trainer.method.build_data([group, flat])

    assert stats["groups_kept"] == 1 and stats["groups_dropped"] == 1
    assert [d.completion for d in data] == [
        group.completions[0].tokens,
        group.completions[2].tokens,
    ]
    n = sum(len(d.completion) for d in data)
    # the adapter starts at zero: policy == reference, so the KL term is ~0
    assert abs(stats["kl"]) < 1e-5
    assert data[0].advantages == pytest.approx((0.3 / n,) * len(data[0].completion), abs=1e-6)
    assert data[1].advantages == pytest.approx((-0.3 / n,) * len(data[1].completion), abs=1e-6)


@pytest.mark.blender
@pytest.mark.slow
def test_grpo_step_raises_the_better_completion_against_the_real_service(
    tiny_model: Path, dataset: Path, tmp_path: Path, reward_service: str
) -> None:
    config = make_config(tiny_model, tmp_path, group_size=2, batch_size=1, learning_rate=1e-2)
    backend = LocalBackend(config.training)
    example = next(r for r in load_examples(dataset) if r.id == "stool")
    group = _scripted_group(backend, example, [example.target, BROKEN])
    before = [_sum_logprob(backend, group, i) for i in range(2)]

    with RewardClient(reward_service) as client:
        trainer = GRPOTrainer(config, backend, [example], client, tmp_path / "run")
        record = trainer.train_step([group])

    assert group.results is not None
    good, bad = group.results
    assert good.status is ExecStatus.OK and bad.status is ExecStatus.EXEC_FAILED
    assert good.reward is not None and bad.reward is not None and good.reward > bad.reward
    assert record["groups_kept"] == 1 and record["datums"] == 2
    assert record["status_ok"] == 0.5 and record["status_exec_failed"] == 0.5
    assert record["execution_rate"] == 0.5 and record["f_score_0.05"] > 0.45
    after = [_sum_logprob(backend, group, i) for i in range(2)]
    assert after[0] > before[0], "the higher-reward program became more likely"
    # the two programs share tokens (imports, export_scene), so the broken one may gain
    # too; what GRPO must do is move the policy toward the better one, relative to it
    assert after[0] - after[1] > before[0] - before[1]


@pytest.mark.blender
@pytest.mark.slow
def test_grpo_run_samples_scores_and_logs_end_to_end(
    tiny_model: Path, dataset: Path, tmp_path: Path, reward_service: str
) -> None:
    config = make_config(tiny_model, tmp_path, group_size=4, batch_size=2, max_new_tokens=16)
    rows = load_examples(dataset)
    with RewardClient(reward_service) as client:
        trainer = GRPOTrainer(config, LocalBackend(config.training), rows, client, tmp_path / "run")
        records = trainer.train(steps=2, progress=False)

    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert r["completions"] == 8 and r["sampled_tokens"] > 0
        shares = sum(v for k, v in r.items() if k.startswith("status_"))
        assert shares == pytest.approx(1.0)
        assert r["seconds"] >= r["seconds_sample"] + r["seconds_reward"]
    # a random tiny model writes no bpy_lib program: every reward is 0 (empty), no signal
    assert records[0]["status_empty"] == 1.0 and records[0]["groups_dropped"] == 2
    assert records[0]["loss"] is None
    logged = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in logged] == [1, 2]
    assert (tmp_path / "run" / "reward.png").stat().st_size > 1000
    assert (tmp_path / "run" / "checkpoints" / "step-000002" / "trainer_state.json").is_file()


def test_grpo_resume_gives_the_same_next_step(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    rows = load_examples(dataset)
    config = make_config(
        tiny_model, tmp_path, group_size=4, batch_size=2, max_new_tokens=16, save_every=2
    )
    scorer = FakeScorer()
    straight = GRPOTrainer(config, LocalBackend(config.training), rows, scorer, tmp_path / "a")
    full = straight.train(steps=3, progress=False)
    assert scorer.calls == [8, 8, 8], "one reward call per step, all completions in it"
    assert any(r["loss"] is not None for r in full), "the fake rewards must give some signal"

    first = GRPOTrainer(config, LocalBackend(config.training), rows, FakeScorer(), tmp_path / "b")
    first.train(steps=2, progress=False)
    resumed = GRPOTrainer(config, LocalBackend(config.training), rows, FakeScorer(), tmp_path / "b")
    rest = resumed.train(
        steps=3, resume=tmp_path / "b" / "checkpoints" / "step-000002", progress=False
    )

    assert len(rest) == 1 and rest[0]["step"] == 3
    keys = ["reward_mean", "sampled_tokens", "loss", "groups_kept", "f_score_0.05"]
    assert {k: rest[0][k] for k in keys} == {k: full[2][k] for k in keys}
