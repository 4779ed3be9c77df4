"""The trainer learns (issue 20): tests that catch the classic trainer bugs.

Each runs the real ``local`` backend (Qwen2.5-VL classes, chat template, image processor)
on the tiny random model, trained in full (``lora_rank: 0``) with images at the
processor's smallest size (28 x 28 pixels, one image token), as ``configs/small_cpu.yaml``
does at a larger width:

- overfit: SFT on 4 rows until the loss is below 0.05 and greedy decoding gives back
  every program exactly (an off-by-one between logits and targets still lowers the loss,
  by letting the model read its target, but never decodes the programs);
- the loss counts only the assistant's tokens: it equals the usual causal-LM cross-entropy
  with every prompt token (system, images, instruction, the assistant header) labelled
  -100, and a program token's loss depends on the tokens before it only;
- GRPO's sign: rewarding completions that start with a chosen token raises that token's
  probability, and the same run with the advantages negated lowers it.

The sampled-vs-trained log-probs (importance ratio 1) are ``test_on_policy.py``'s; group
advantages and ``infra_error`` masking are ``test_rl.py``'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from llm3d.config import Config
from llm3d.schemas import ExecStatus, RewardResponse, RewardResult
from tests.training.conftest import make_config
from training import rl_trainer
from training.backends.base import Datum
from training.backends.local import LocalBackend
from training.data import Example, load_examples, system_override, write_example_dataset
from training.rl_trainer import GRPOTrainer
from training.sft_trainer import SFTTrainer, supervised_datum

#: four short example programs (~140-220 tokens each)
ROWS = ["bowl", "mug", "stool", "table"]
SMALLEST_IMAGE = 28 * 28  # patch 14 x merge 2: the processor's smallest image, one token
#: sampling at this temperature is greedy: a token drawn is the argmax unless two logits
#: are within ~1e-3 of each other (the teacher-forced check below rules that out)
GREEDY = 1e-3


def _config(tiny: Path, tmp: Path, **training: Any) -> Config:
    return make_config(
        tiny,
        tmp,
        lora_rank=0,
        image_min_pixels=SMALLEST_IMAGE,
        image_max_pixels=SMALLEST_IMAGE,
        system_prompt="short",
        **training,
    )


def _rows(tmp: Path, config: Config) -> list[Example]:
    file = write_example_dataset(tmp / "data", names=ROWS)
    return load_examples(file, system=system_override(config.training.system_prompt))


@pytest.mark.slow
def test_sft_overfits_four_rows_and_greedy_decoding_reproduces_them(
    tiny_model: Path, tmp_path: Path
) -> None:
    config = _config(tiny_model, tmp_path, batch_size=4, learning_rate=5e-3, sft_epochs=1000)
    rows = _rows(tmp_path, config)
    backend = LocalBackend(config.training)
    trainer = SFTTrainer(config, backend, rows, tmp_path / "run")
    data = trainer.method.batch(0).data  # batch_size 4: every step trains all four rows
    assert all(backend.prompt_length(d.prompt) < 150 for d in data), "one token an image"

    losses: list[float] = []
    exact = False
    while len(losses) < 250 and not exact:
        losses.append(trainer.train_step()["loss"])
        if losses[-1] < 0.05 and len(losses) % 5 == 0:
            # teacher-forced greedy check: each program token is the argmax given its prefix
            near_greedy = backend.logprobs(data, temperature=GREEDY)
            exact = all(lp > math.log(0.5) for row in near_greedy for lp in row)

    assert losses[0] > 5.0, "a random model starts near ln(vocabulary)"
    assert losses[-1] < 0.05 and exact, f"no overfit in {len(losses)} steps: {losses[-5:]}"
    prompts = [d.prompt for d in data]
    longest = max(len(d.completion) for d in data)
    decoded = backend.sample(prompts, 1, max_tokens=longest + 8, temperature=GREEDY, seed=0)
    for row, (completion,) in zip(trainer.method.batch_at(0), decoded, strict=True):
        assert completion.stopped and completion.text == row.target, row.id


def _per_token_nll(backend: LocalBackend, data: Sequence[Datum]) -> list[list[float]]:
    """What the trainer's loss sums, token by token: its own forward pass's log-probs."""
    step = backend.forward_backward(data, "cross_entropy")
    backend.optimizer.zero_grad(set_to_none=True)
    return [[-lp for lp in row] for row in step.logprobs]


def _labels_loss(backend: LocalBackend, datum: Datum, *, mask_prompt: bool) -> float:
    """The usual causal-LM loss, written independently of the backend's slicing: labels =
    the input ids (the prompt's set to -100, or not), shifted by one against the logits,
    mean cross-entropy over the labelled positions; the image placeholders excluded from
    the softmax as the policy excludes them."""
    import torch

    batch = backend._batch([datum])
    labels = batch["input_ids"].clone()
    if mask_prompt:
        labels[0, : len(datum.prompt)] = -100
    with torch.no_grad():
        logits = backend.model(**batch).logits.float()
    logits[..., backend.vision_ids] = -torch.inf
    return float(
        torch.nn.functional.cross_entropy(
            logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="mean"
        )
    )


def test_the_loss_counts_only_the_assistants_tokens(tiny_model: Path, tmp_path: Path) -> None:
    config = _config(tiny_model, tmp_path)
    backend = LocalBackend(config.training)
    row = _rows(tmp_path, config)[0]
    system, user, answer = row.messages
    images = [p for p in user["content"] if p.get("type") == "image"]
    text = [p for p in user["content"] if p.get("type") == "text"]
    variants = {
        "as is": row.prompt,
        "system": [{**system, "content": "Another, much longer system prompt. " * 5}, user],
        "one image": [system, {**user, "content": images[:1] + text}],
        "instruction": [system, {**user, "content": [*images, {"type": "text", "text": "Go."}]}],
    }
    completion = tuple(backend.encode_completion(row.target))
    # the target is exactly the program and its end-of-turn token, after the assistant header
    assert backend.decode(completion) == row.target and completion[-1] == backend.eos_id
    for name, prompt in variants.items():
        datum = supervised_datum(backend, Example(id=name, messages=(*prompt, answer)))
        prompt_text = backend.tokenizer.decode(list(datum.prompt.input_ids))
        assert prompt_text.endswith("<|im_start|>assistant\n"), name
        assert datum.completion == completion and datum.weights == (1.0,) * len(completion)
        # the trainer's per-token losses are those of causal-LM labels with the whole
        # prompt masked: the same number, and far from the loss counting the prompt too
        (nll,) = _per_token_nll(backend, [datum])
        masked = _labels_loss(backend, datum, mask_prompt=True)
        assert sum(nll) / len(nll) == pytest.approx(masked, rel=1e-5), name
        assert abs(_labels_loss(backend, datum, mask_prompt=False) - masked) > 1e-3, name

    # a token's loss depends on the tokens before it only: changing the program from
    # token k changes the losses from k on and leaves those before k unchanged
    prompt = backend.render_prompt(row.prompt)
    k = len(completion) // 2
    other = completion[:k] + tuple(backend.encode_completion("box(name='x')\nexport_scene()"))
    same, changed = _per_token_nll(
        backend,
        [
            Datum(prompt, completion, (1.0,) * len(completion)),
            Datum(prompt, other, (1.0,) * len(other)),
        ],
    )
    assert same[:k] == pytest.approx(changed[:k], abs=1e-5)
    assert same[k] != pytest.approx(changed[k], abs=1e-3)


class FirstTokenScorer:
    """The reward service's stand-in: reward 1 when a completion starts with ``prefix``.

    Answers with the service's own wire types (:class:`~llm3d.schemas.RewardResponse`),
    so the trainer's parsing, grouping and statistics all run.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def score_batch(self, items: Sequence[dict[str, Any]], **_: Any) -> RewardResponse:
        results = [
            RewardResult(
                id=item["id"],
                status=ExecStatus.OK,
                reward=float(item["code"].startswith(self.prefix)),
            )
            for item in items
        ]
        return RewardResponse(request_id="first-token", reward_version="test", results=results)


def _first_token_probability(backend: LocalBackend, rows: Sequence[Example], token: int) -> float:
    data = [Datum(prompt=backend.render_prompt(r.prompt), completion=(token,)) for r in rows]
    return sum(math.exp(lp[0]) for lp in backend.logprobs(data)) / len(data)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["grpo", "advantage-flipped"])
def test_grpo_moves_the_rewarded_first_token_the_way_the_advantage_says(
    sign: float, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(
        tiny_model,
        tmp_path,
        batch_size=4,
        group_size=8,
        learning_rate=5e-3,
        max_new_tokens=16,
        sft_epochs=100,
    )
    rows = _rows(tmp_path, config)
    backend = LocalBackend(config.training)
    # a few SFT steps so that the programs' first token ("from") is a likely first token,
    # not a certain one: GRPO groups then hold both rewards
    chosen = backend.encode_completion(rows[0].target)[0]
    sft = SFTTrainer(config, backend, rows, tmp_path / "sft")
    steps = 0
    while _first_token_probability(backend, rows, chosen) < 0.3 and steps < 100:
        sft.train_step()
        steps += 1
    before = _first_token_probability(backend, rows, chosen)
    assert 0.3 <= before < 0.9, (steps, before)

    if sign < 0:  # the deliberately broken run: every advantage negated
        real = rl_trainer.group_advantages

        def flipped(rewards: Sequence[float | None]) -> list[float | None] | None:
            advantages = real(rewards)
            return None if advantages is None else [None if a is None else -a for a in advantages]

        monkeypatch.setattr(rl_trainer, "group_advantages", flipped)
    scorer = FirstTokenScorer(backend.decode([chosen]))
    grpo = GRPOTrainer(config, backend, rows, scorer, tmp_path / "rl")
    records = [grpo.train_step() for _ in range(3)]
    after = _first_token_probability(backend, rows, chosen)

    assert sum(r["groups_kept"] for r in records) >= 3, "the groups held both rewards"
    if sign > 0:
        assert after > before + 0.1, (before, after)
    else:
        assert after < before - 0.1, (before, after)
