"""SFT on the local backend with the tiny Qwen2.5-VL: the mask, learning, checkpoints, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import make_config
from training.backends.local import LocalBackend
from training.data import load_examples
from training.runlog import latest_checkpoint, read_metrics
from training.sft_trainer import SFTTrainer, supervised_datum


def test_loss_mask_covers_exactly_the_assistant_tokens(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    config = make_config(tiny_model, tmp_path)
    backend = LocalBackend(config.training)
    example = load_examples(dataset)[0]
    datum = supervised_datum(backend, example)

    # the prompt + completion are exactly the chat template's rendering of the whole chat
    full_text = backend.processor.apply_chat_template(list(example.messages), tokenize=False)
    assert full_text.endswith("<|im_end|>\n")
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in example.images]
    full = backend.processor(text=[full_text], images=images, return_tensors="pt")
    full_ids = full["input_ids"][0].tolist()[:-1]  # the template's trailing "\n" is not trained
    assert list(datum.prompt.input_ids) + list(datum.completion) == full_ids

    # weight 1 on every completion token, and the completion is the program + end of turn
    assert datum.weights == (1.0,) * len(datum.completion)
    assert backend.decode(datum.completion) == example.target
    assert datum.completion[-1] == backend.eos_id
    assert backend.tokenizer.decode(list(datum.completion)).endswith("<|im_end|>")
    # nothing of the prompt is in the loss: the system text, images and instruction
    prompt_text = backend.tokenizer.decode(list(datum.prompt.input_ids))
    assert prompt_text.endswith("<|im_start|>assistant\n")
    assert "<|image_pad|>" in prompt_text


def _fixed_batch_nll(backend: LocalBackend, data: list) -> float:  # type: ignore[type-arg]
    lps = backend.logprobs(data)
    return -sum(map(sum, lps)) / sum(len(lp) for lp in lps)


def test_sft_lowers_loss_and_checkpoint_reloads_identically(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    config = make_config(tiny_model, tmp_path, sft_max_steps=20, sft_epochs=20, batch_size=2)
    rows = load_examples(dataset)
    backend = LocalBackend(config.training)
    fixed = [supervised_datum(backend, r) for r in rows[:2]]
    before = _fixed_batch_nll(backend, fixed)

    trainer = SFTTrainer(config, backend, rows, tmp_path / "run", held_out=rows[:2])
    records = trainer.train(progress=False)

    assert len(records) == 20
    after = _fixed_batch_nll(backend, fixed)
    assert after < before - 0.3, (before, after)
    assert records[-1]["loss"] < records[0]["loss"]
    # curriculum: the first step's rows come first in curriculum order
    assert trainer.method.batch_at(0) == trainer.method.rows[:2]

    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None and checkpoint.name == "step-000020"
    fresh = LocalBackend(config.training)
    assert _fixed_batch_nll(fresh, fixed) == pytest.approx(before, abs=1e-5)
    fresh.load(str(checkpoint / "model"))
    assert fresh.logprobs(fixed) == backend.logprobs(fixed)

    log = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(1, 21))
    evals = [r for r in log if r["kind"] == "eval"]
    assert evals and evals[-1]["step"] == 20 and evals[-1]["eval_nll"] > 0
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


def test_sft_resume_gives_the_same_next_steps(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    rows = load_examples(dataset)
    config = make_config(tiny_model, tmp_path, sft_max_steps=4, sft_epochs=3, save_every=2)

    straight = SFTTrainer(config, LocalBackend(config.training), rows, tmp_path / "a")
    full = straight.train(progress=False)

    first = make_config(tiny_model, tmp_path, sft_max_steps=2, sft_epochs=3, save_every=2)
    SFTTrainer(first, LocalBackend(first.training), rows, tmp_path / "b").train(progress=False)
    resumed = SFTTrainer(config, LocalBackend(config.training), rows, tmp_path / "b")
    rest = resumed.train(resume=tmp_path / "b" / "checkpoints" / "step-000002", progress=False)

    assert [r["step"] for r in rest] == [3, 4]
    assert [r["loss"] for r in rest] == [r["loss"] for r in full[2:]]
    assert [r["grad_norm"] for r in rest] == [r["grad_norm"] for r in full[2:]]
    probe = [supervised_datum(straight.backend, r) for r in rows[:2]]
    assert straight.backend.logprobs(probe) == resumed.backend.logprobs(probe)
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl", "train")]
    assert steps == [1, 2, 3, 4]
