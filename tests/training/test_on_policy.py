"""GRPO samples exactly the policy it trains (issue 24), on the local backend.

The sampled log-probs equal the trainer's recomputed ones at any temperature and whatever
generation settings the checkpoint ships; the KL reference is the policy GRPO starts from;
``clip_fraction`` counts the tokens where the clipped term was taken; sampling holds one
step's distribution, not one per generated token.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.training.conftest import make_config
from tests.training.test_rl import FakeScorer
from training.backends.base import Datum
from training.backends.local import LocalBackend
from training.data import load_examples
from training.rl_trainer import GRPOTrainer
from training.sft_trainer import SFTTrainer, supervised_datum

#: What Qwen2.5-VL-7B-Instruct's generation_config.json sets (transformers inherits it into
#: every sampling field the caller leaves unset).
QWEN_GENERATION = {"repetition_penalty": 1.05, "temperature": 0.1, "top_p": 0.001, "top_k": 1}
#: The same leaks made large enough to change the random tiny model's tokens (its logits
#: are so flat that a 1.05 penalty seldom changes a draw).
STRONG_GENERATION = {**QWEN_GENERATION, "repetition_penalty": 3.0, "min_p": 0.2}


def _flat(values: list[list[float]]) -> list[float]:
    return [v for row in values for v in row]


def _samples(backend: LocalBackend, dataset: Path, temperature: float) -> list[tuple]:  # type: ignore[type-arg]
    rows = load_examples(dataset)
    prompts = [backend.render_prompt(rows[0].prompt), backend.render_prompt(rows[3].prompt)]
    groups = backend.sample(prompts, 4, max_tokens=24, temperature=temperature, seed=5)
    return [(p, c) for p, g in zip(prompts, groups, strict=True) for c in g]


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_sampled_logprobs_equal_the_trained_ones(
    temperature: float, tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(make_config(tiny_model, tmp_path).training)
    samples = _samples(backend, dataset, temperature)
    data = [Datum(prompt=p, completion=c.tokens) for p, c in samples]

    recomputed = backend.logprobs(data, temperature=temperature)
    for (_, c), lp in zip(samples, recomputed, strict=True):
        assert lp == pytest.approx(list(c.logprobs), abs=1e-5)
    # and the importance ratio the loss sees is 1 on every fresh token: nothing is clipped
    trained = [
        Datum(
            prompt=d.prompt,
            completion=d.completion,
            sampling_logprobs=c.logprobs,
            advantages=(1.0,) * len(d.completion),
        )
        for d, (_, c) in zip(data, samples, strict=True)
    ]
    step = backend.forward_backward(trained, "ppo", temperature=temperature)
    assert step.metrics["clip_fraction"] == 0.0
    assert step.loss == pytest.approx(-step.n_tokens, rel=1e-5)


def test_grpo_at_half_temperature_clips_nothing_on_fresh_samples(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    config = make_config(
        tiny_model, tmp_path, temperature=0.5, group_size=4, max_new_tokens=16, clip_low=0.01
    )
    trainer = GRPOTrainer(
        config, LocalBackend(config.training), load_examples(dataset), FakeScorer(), tmp_path
    )
    record = trainer.train_step()
    assert record["loss"] is not None, "the fake rewards must give signal"
    assert record["clip_fraction"] == 0.0


@pytest.mark.parametrize("settings", [QWEN_GENERATION, STRONG_GENERATION], ids=["qwen", "strong"])
def test_the_checkpoints_generation_settings_do_not_change_sampling(
    settings: dict[str, float], tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    shipped = tmp_path / "qwen-like"
    shutil.copytree(tiny_model, shipped)
    path = shipped / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **settings}))

    plain = LocalBackend(make_config(tiny_model, tmp_path).training)
    qwen = LocalBackend(make_config(shipped, tmp_path).training)
    for temperature in (1.0, 0.7):
        expected = _samples(plain, dataset, temperature)
        got = _samples(qwen, dataset, temperature)
        assert [c.tokens for _, c in got] == [c.tokens for _, c in expected]
        recomputed = qwen.logprobs(
            [Datum(prompt=p, completion=c.tokens) for p, c in got], temperature=temperature
        )
        for (_, c), lp in zip(got, recomputed, strict=True):
            assert lp == pytest.approx(list(c.logprobs), abs=1e-5)


def test_clip_fraction_counts_the_tokens_where_the_clipped_term_is_taken(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(make_config(tiny_model, tmp_path).training)
    datum = supervised_datum(backend, load_examples(dataset)[0])
    (current,) = backend.logprobs([datum])
    n = len(current)

    def clip_fraction(ratio: float, advantage: float) -> float:
        old = tuple(lp - math.log(ratio) for lp in current)
        shifted = Datum(
            datum.prompt, datum.completion, advantages=(advantage,) * n, sampling_logprobs=old
        )
        result = backend.forward_backward([shifted], "ppo", clip_low=0.2, clip_high=0.2)
        backend.optimizer.zero_grad(set_to_none=True)
        return float(result.metrics["clip_fraction"])

    # a ratio below 1 - ε with a positive advantage: the min takes the unclipped term
    assert clip_fraction(0.5, 1.0) == 0.0
    assert clip_fraction(0.5, -1.0) == 1.0
    # above 1 + ε: clipped for a positive advantage, not for a negative one
    assert clip_fraction(2.0, 1.0) == 1.0
    assert clip_fraction(2.0, -1.0) == 0.0
    assert clip_fraction(1.1, 1.0) == 0.0


def test_kl_reference_is_the_starting_policy_after_init_from_and_survives_resume(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    rows = load_examples(dataset)
    sft_config = make_config(tiny_model, tmp_path, sft_max_steps=3, learning_rate=5e-2)
    SFTTrainer(sft_config, LocalBackend(sft_config.training), rows, tmp_path / "sft").train(
        progress=False
    )
    sft = tmp_path / "sft" / "checkpoints" / "step-000003"

    config = make_config(
        tiny_model, tmp_path, kl_coef=0.5, group_size=4, max_new_tokens=16, save_every=1
    )
    trainer = GRPOTrainer(
        config, LocalBackend(config.training), rows, FakeScorer(), tmp_path / "rl"
    )
    trainer.init_from(sft)
    records = trainer.train(steps=2, progress=False)

    assert records[0]["loss"] is not None, "the fake rewards must give signal at step 1"
    assert abs(records[0]["kl"]) < 1e-5, "the starting policy is its own reference"
    # a probe: the reference stays the SFT weights while the policy moves
    probe = [supervised_datum(trainer.backend, r) for r in rows[:2]]
    sft_backend = LocalBackend(config.training)
    sft_backend.load(str(sft / "model"))
    at_sft = _flat(sft_backend.logprobs(probe))
    reference = _flat(trainer.backend.logprobs(probe, reference=True))
    assert reference == pytest.approx(at_sft, abs=1e-6)
    assert _flat(trainer.backend.logprobs(probe)) != pytest.approx(at_sft, abs=1e-4)

    resumed = GRPOTrainer(
        config, LocalBackend(config.training), rows, FakeScorer(), tmp_path / "rl"
    )
    resumed.resume(tmp_path / "rl" / "checkpoints" / "step-000001")
    reference = _flat(resumed.backend.logprobs(probe, reference=True))
    assert reference == pytest.approx(at_sft, abs=1e-6)


PEAK_SCRIPT = """
import json, resource, sys, torch
from tests.training.conftest import make_config
from training.backends.local import LocalBackend
from training.data import load_examples

torch.set_num_threads(1)
model, data, runs, tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
backend = LocalBackend(make_config(model, runs).training)
prompt = backend.render_prompt(load_examples(data)[0].prompt)
backend.sample([prompt], 8, max_tokens=16, temperature=1.0, seed=0)  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
(group,) = backend.sample([prompt], 8, max_tokens=tokens, temperature=1.0, seed=1)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kib": after - before, "tokens": sum(len(c.tokens) for c in group)}))
"""


@pytest.mark.slow
def test_sampling_memory_does_not_grow_with_tokens_times_vocabulary(
    dataset: Path, tmp_path: Path
) -> None:
    from training.tiny import build_tiny_model

    vocab = 65_536
    model = build_tiny_model(tmp_path / "wide", model_vocab_size=vocab)
    tokens = 200
    # glibc's fixed mmap threshold: freed tensors go back to the OS, so the peak RSS is
    # what sampling holds at once, not what the heap kept from earlier steps
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(PEAK_SCRIPT),
            *(str(x) for x in (model, dataset, tmp_path, tokens)),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    per_token_logits = 8 * tokens * vocab * 4 / 1024  # KiB, what output_logits would hold
    assert result["tokens"] > 8 * tokens // 2, "the random model runs to max_tokens"
    # one step's distribution (a few 8 × 65k copies, 2 MiB each) is all that is held:
    # measured 4 MiB here, against 1.1 GiB when every step's logits were kept
    assert result["grew_kib"] < per_token_logits / 8, (result, per_token_logits)
