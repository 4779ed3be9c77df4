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


def test_lora_rank_0_trains_every_weight_and_checkpoints_them(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    from llm3d.exceptions import ConfigError
    from training.sft_trainer import supervised_datum

    config = make_config(tiny_model, tmp_path, lora_rank=0)
    backend = LocalBackend(config.training)
    assert backend.params == list(backend.model.parameters()), "every weight, vision included"
    rows = load_examples(dataset)[:2]
    data = [supervised_datum(backend, r) for r in rows]
    before = backend.logprobs(data)
    reference = backend.freeze_reference(tmp_path / "reference")
    backend.forward_backward(data, "cross_entropy")
    backend.optim_step(1e-2)
    after = backend.logprobs(data)
    assert sum(after[0]) > sum(before[0]) + 1.0, "the step raised the targets' log-probs"
    assert backend.logprobs(data, reference=True)[0] == pytest.approx(before[0], abs=1e-5)
    assert backend.logprobs(data)[0] == pytest.approx(after[0], abs=1e-6), "policy restored"

    saved = backend.save(tmp_path / "checkpoint", "model")
    fresh = LocalBackend(config.training)
    fresh.load(saved)
    assert fresh.logprobs(data)[0] == pytest.approx(after[0], abs=1e-5)
    fresh.load_reference(reference)
    assert fresh.logprobs(data, reference=True)[0] == pytest.approx(before[0], abs=1e-5)
    # a LoRA checkpoint is not a full one (and the reverse)
    lora = LocalBackend(make_config(tiny_model, tmp_path).training)
    with pytest.raises(ConfigError, match="full-model checkpoint"):
        fresh.load(lora.save(tmp_path / "lora", "model"))
    with pytest.raises(ConfigError, match="LoRA checkpoint"):
        lora.load(saved)


def test_the_small_cpu_config_builds_a_small_qwen25_vl_from_scratch(
    dataset: Path, tmp_path: Path
) -> None:
    pytest.importorskip("peft", reason="the training extra (torch, transformers, peft)")
    from llm3d.config import load_config
    from training.backends import make_backend

    model = tmp_path / "small"
    config = load_config(
        Path(__file__).parents[2] / "configs" / "small_cpu.yaml",
        environ={},
        training={"base_model": str(model)},
    )
    backend = make_backend(config)
    assert isinstance(backend, LocalBackend) and (model / "config.json").is_file()
    n = sum(p.numel() for p in backend.params)
    assert 2_000_000 < n < 10_000_000 and backend.params == list(backend.model.parameters())
    text = backend.model.config.get_text_config()
    assert (text.num_hidden_layers, text.hidden_size) == (4, 256)
    rows = load_examples(dataset, system=None)
    prompt = backend.render_prompt(rows[0].prompt)
    grid = prompt.image_grid_thw
    assert grid.tolist() == [[1, 2, 2]] * len(rows[0].images), "28 x 28: one token an image"
