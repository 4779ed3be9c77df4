"""Supervised fine-tuning (LoRA) on the SFT split, through either backend.

The method: rows in curriculum order (easy → hard; or a seeded shuffle per epoch),
batches of ``training.batch_size``, the loss on the assistant's tokens only (the program
and its end-of-turn token; the system prompt, the images and the instruction have weight
0), one Adam step a batch, the held-out split evaluated every ``eval_every`` steps. The
loop around it (checkpoints every ``save_every`` steps, resume with identical results,
the run log and curves) is :class:`training.loop.Trainer`'s, shared with GRPO.

Evaluation always reports the held-out mean negative log-likelihood per target token
(``eval_nll``); an ``evaluator`` (e.g. the evaluation runner generating programs and
scoring them through the reward service) adds its metrics beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm3d.config import Config
from training.backends.base import Backend, Datum
from training.data import Example, batches, curriculum_order
from training.loop import Curve, Trainer

__all__ = ["SFT", "Evaluator", "SFTBatch", "SFTTrainer", "supervised_datum"]

#: ``evaluator(backend, rows, step) -> metrics``: extra held-out metrics (the eval runner).
Evaluator = Callable[[Backend, Sequence[Example], int], dict[str, float]]


def supervised_datum(backend: Backend, example: Example, weight: float = 1.0) -> Datum:
    """The prompt and the assistant's program, weight ``weight`` on every program token."""
    prompt = backend.render_prompt(example.prompt)
    completion = backend.encode_completion(example.target)
    return Datum(prompt=prompt, completion=tuple(completion), weights=(weight,) * len(completion))


@dataclass(frozen=True)
class SFTBatch:
    """The rows of one step and their datums (weights summing to 1 over the batch)."""

    epoch: int
    rows: list[Example]
    data: list[Datum]
    n_tokens: int


class SFT:
    """The SFT method of :class:`~training.loop.Trainer` (see :class:`SFTTrainer`).

    Args:
        config: the whole configuration (``training`` section, ``seed``).
        backend: a :class:`~training.backends.base.Backend`.
        train: the SFT rows.
        held_out: rows evaluated every ``training.eval_every`` steps.
        evaluator: extra evaluation (see :data:`Evaluator`).
    """

    kind = "sft"
    title = "SFT"
    batch_seconds = "seconds_data"
    curves = (
        Curve("train", ("loss",), "loss.png", "SFT loss"),
        Curve("eval", ("eval_nll",), "eval.png", "held-out NLL"),
    )

    def __init__(
        self,
        config: Config,
        backend: Backend,
        train: Sequence[Example],
        *,
        held_out: Sequence[Example] = (),
        evaluator: Evaluator | None = None,
    ) -> None:
        self.config = config
        self.tc = config.training
        self.backend = backend
        self.rows = curriculum_order(train)
        self.held_out = list(held_out)[: self.tc.eval_limit]
        self.evaluator = evaluator
        self.eval_every = self.tc.eval_every
        self.steps_per_epoch = math.ceil(len(self.rows) / self.tc.batch_size)

    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.tc.sft_epochs
        return min(total, self.tc.sft_max_steps or total)

    def batch_at(self, step: int) -> list[Example]:
        """The rows of step ``step`` (0-based); a pure function of the step and the seed."""
        epoch, index = divmod(step, self.steps_per_epoch)
        for i, batch in enumerate(
            batches(
                self.rows,
                self.tc.batch_size,
                epoch=epoch,
                seed=self.config.seed,
                shuffle=self.tc.sft_shuffle,
            )
        ):
            if i == index:
                return batch
        raise IndexError(step)

    def data_for(self, rows: Sequence[Example]) -> tuple[list[Datum], int]:
        """Datums whose weights sum to 1 over the batch (the loss is the mean token NLL)."""
        data = [supervised_datum(self.backend, r) for r in rows]
        n_tokens = sum(len(d.completion) for d in data)
        scaled = [
            Datum(
                prompt=d.prompt,
                completion=d.completion,
                weights=(1.0 / n_tokens,) * len(d.completion),
            )
            for d in data
        ]
        return scaled, n_tokens

    def batch(self, step: int) -> SFTBatch:
        rows = self.batch_at(step)
        data, n_tokens = self.data_for(rows)
        return SFTBatch(step // self.steps_per_epoch, rows, data, n_tokens)

    def learn(self, batch: SFTBatch, learning_rate: float) -> dict[str, Any]:
        result = self.backend.forward_backward(batch.data, "cross_entropy")
        optim = self.backend.optim_step(learning_rate)
        return {
            "epoch": batch.epoch,
            "loss": result.loss,
            "tokens": batch.n_tokens,
            "prompt_tokens": sum(self.backend.prompt_length(d.prompt) for d in batch.data),
            "sequences": len(batch.data),
            "difficulty": sorted({r.difficulty for r in batch.rows}),
            **optim,
        }

    def evaluate(self, step: int) -> dict[str, Any] | None:
        """Held-out mean NLL per target token, plus the evaluator's metrics."""
        if not self.held_out and self.evaluator is None:
            return None
        record: dict[str, Any] = {}
        if self.held_out:
            data = [supervised_datum(self.backend, r) for r in self.held_out]
            logprobs = self.backend.logprobs(data)
            n = sum(len(lp) for lp in logprobs)
            record["eval_nll"] = -sum(sum(lp) for lp in logprobs) / max(n, 1)
            record["eval_rows"] = len(data)
        if self.evaluator is not None:
            record.update(self.evaluator(self.backend, self.held_out, step))
        return record

    def describe(self, record: Mapping[str, Any]) -> str:
        return f"SFT loss {record['loss']:.3f}"

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:
        pass


class SFTTrainer(Trainer[SFTBatch]):
    """One SFT run: :class:`SFT` in the shared loop.

    Args:
        config: the whole configuration (``training`` section, ``seed``).
        backend: a :class:`~training.backends.base.Backend`.
        train: the SFT rows.
        run_dir: where logs, checkpoints and curves go.
        held_out: rows evaluated every ``training.eval_every`` steps.
        evaluator: extra evaluation (see :data:`Evaluator`).
    """

    method: SFT

    def __init__(
        self,
        config: Config,
        backend: Backend,
        train: Sequence[Example],
        run_dir: Path,
        *,
        held_out: Sequence[Example] = (),
        evaluator: Evaluator | None = None,
    ) -> None:
        method = SFT(config, backend, train, held_out=held_out, evaluator=evaluator)
        super().__init__(config, backend, run_dir, method)
