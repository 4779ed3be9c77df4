"""The local backend's sampling: left-padded prompt batches, log-probs, stop tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import make_config
from training.backends.base import Datum
from training.backends.local import LocalBackend
from training.data import load_examples


def test_sampled_logprobs_match_the_training_forward(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    backend = LocalBackend(make_config(tiny_model, tmp_path).training)
    rows = load_examples(dataset)
    # prompts of different lengths: the batch is left-padded for generate
    prompts = [backend.render_prompt(rows[0].prompt), backend.render_prompt(rows[3].prompt)]
    groups = backend.sample(prompts, 4, max_tokens=20, temperature=1.0, seed=3)

    assert [len(g) for g in groups] == [4, 4]
    completions = [(p, c) for p, g in zip(prompts, groups, strict=True) for c in g]
    data = [Datum(prompt=p, completion=c.tokens) for p, c in completions]
    forward = backend.logprobs(data)
    for (_, c), lp in zip(completions, forward, strict=True):
        assert len(c.tokens) == len(c.logprobs) <= 20
        assert lp == pytest.approx(list(c.logprobs), abs=1e-4)
        assert c.stopped == (c.tokens[-1] == backend.eos_id)
        assert not set(backend.vision_ids) & set(c.tokens), "no image placeholder is sampled"
        assert c.text == backend.decode(c.tokens)
    # the same seed gives the same completions
    again = backend.sample(prompts, 4, max_tokens=20, temperature=1.0, seed=3)
    assert [[c.tokens for c in g] for g in again] == [[c.tokens for c in g] for g in groups]


def test_gradient_checkpointing_gives_the_same_step(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    from training.sft_trainer import supervised_datum

    rows = load_examples(dataset)[:2]
    results = []
    for checkpointing in (False, True):
        config = make_config(tiny_model, tmp_path, gradient_checkpointing=checkpointing)
        backend = LocalBackend(config.training)
        data = [supervised_datum(backend, r) for r in rows]
        step = backend.forward_backward(data, "cross_entropy")
        norm = backend.optim_step(1e-2)["grad_norm"]
        results.append((step.loss, norm, backend.logprobs(data)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-5)
    assert results[0][2][0] == pytest.approx(results[1][2][0], abs=1e-5)
