"""Supervised fine-tuning (LoRA) on the SFT split, through either backend.

The loop: rows in curriculum order (easy → hard; or a seeded shuffle per epoch), batches of
``training.batch_size``, the loss on the assistant's tokens only (the program and its
end-of-turn token; the system prompt, the images and the instruction have weight 0), Adam
steps, the held-out split evaluated every ``eval_every`` steps, checkpoints every
``save_every`` steps. Resuming from a checkpoint restores weights, optimizer and position,
so the run continues exactly as if it had not stopped.

Evaluation always reports the held-out mean negative log-likelihood per target token
(``eval_nll``); an ``evaluator`` (e.g. the evaluation runner generating programs and
scoring them through the reward service) adds its metrics beside it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llm3d.config import Config
from training.backends.base import Backend, Datum
from training.data import Example, batches, curriculum_order
from training.runlog import RunLog, plot_curves, read_metrics, read_state, write_state

__all__ = ["Evaluator", "SFTTrainer", "supervised_datum"]

logger = logging.getLogger(__name__)

#: ``evaluator(backend, rows, step) -> metrics``: extra held-out metrics (the eval runner).
Evaluator = Callable[[Backend, Sequence[Example], int], dict[str, float]]


def supervised_datum(backend: Backend, example: Example, weight: float = 1.0) -> Datum:
    """The prompt and the assistant's program, weight ``weight`` on every program token."""
    prompt = backend.render_prompt(example.prompt)
    completion = backend.encode_completion(example.target)
    return Datum(prompt=prompt, completion=tuple(completion), weights=(weight,) * len(completion))


class SFTTrainer:
    """One SFT run.

    Args:
        config: the whole configuration (``training`` section, ``seed``).
        backend: a :class:`~training.backends.base.Backend`.
        train: the SFT rows.
        run_dir: where logs, checkpoints and curves go.
        held_out: rows evaluated every ``training.eval_every`` steps.
        evaluator: extra evaluation (see :data:`Evaluator`).
    """

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
        self.config = config
        self.tc = config.training
        self.backend = backend
        self.rows = curriculum_order(train)
        self.held_out = list(held_out)[: self.tc.eval_limit]
        self.evaluator = evaluator
        self.run_dir = Path(run_dir)
        self.steps_per_epoch = math.ceil(len(self.rows) / self.tc.batch_size)
        total = self.steps_per_epoch * self.tc.sft_epochs
        self.total_steps = min(total, self.tc.sft_max_steps or total)
        self.step = 0

    # ------------------------------------------------------------------ pieces

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

    def train_step(self) -> dict[str, Any]:
        """One optimizer step on the next batch; returns its log record."""
        start = time.perf_counter()
        rows = self.batch_at(self.step)
        data, n_tokens = self.data_for(rows)
        result = self.backend.forward_backward(data, "cross_entropy")
        optim = self.backend.optim_step(self.tc.learning_rate)
        self.step += 1
        return {
            "kind": "train",
            "step": self.step,
            "epoch": (self.step - 1) // self.steps_per_epoch,
            "loss": result.loss,
            "tokens": n_tokens,
            "prompt_tokens": sum(self.backend.prompt_length(d.prompt) for d in data),
            "sequences": len(data),
            "learning_rate": self.tc.learning_rate,
            "difficulty": sorted({r.difficulty for r in rows}),
            "seconds": time.perf_counter() - start,
            **optim,
        }

    def evaluate(self) -> dict[str, Any]:
        """Held-out mean NLL per target token, plus the evaluator's metrics."""
        start = time.perf_counter()
        record: dict[str, Any] = {"kind": "eval", "step": self.step}
        if self.held_out:
            data = [supervised_datum(self.backend, r) for r in self.held_out]
            logprobs = self.backend.logprobs(data)
            n = sum(len(lp) for lp in logprobs)
            record["eval_nll"] = -sum(sum(lp) for lp in logprobs) / max(n, 1)
            record["eval_rows"] = len(data)
        if self.evaluator is not None:
            record.update(self.evaluator(self.backend, self.held_out, self.step))
        record["seconds"] = time.perf_counter() - start
        return record

    def save(self) -> Path:
        """A checkpoint of the backend and the trainer's position."""
        folder = self.run_dir / "checkpoints" / f"step-{self.step:06d}"
        ref = self.backend.save(folder, "model")
        write_state(
            folder,
            {
                "trainer": "sft",
                "step": self.step,
                "backend": self.backend.name,
                "ref": ref,
                "seed": self.config.seed,
            },
        )
        logger.info("checkpoint at step %d: %s", self.step, folder)
        return folder

    def resume(self, checkpoint: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        state = read_state(checkpoint)
        self.backend.load(str(state["ref"]))
        self.step = int(state["step"])
        logger.info("resumed SFT at step %d from %s", self.step, checkpoint)

    # ------------------------------------------------------------------ loop

    def train(self, *, resume: Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
        """Run to ``total_steps``; returns the train records of this call."""
        if resume is not None:
            self.resume(resume)
        log = RunLog(
            self.run_dir,
            wandb_project=self.tc.wandb_project,
            config=self.config.model_dump(mode="json"),
            resume_step=self.step if resume is not None else None,
        )
        records: list[dict[str, Any]] = []
        from rich.progress import Progress

        try:
            with Progress(disable=not progress, transient=True) as bar:
                task = bar.add_task("SFT", total=self.total_steps, completed=self.step)
                while self.step < self.total_steps:
                    record = self.train_step()
                    log.log(record)
                    records.append(record)
                    bar.update(
                        task, completed=self.step, description=f"SFT loss {record['loss']:.3f}"
                    )
                    every = self.tc.eval_every
                    if every and self.step % every == 0 and (self.held_out or self.evaluator):
                        log.log(self.evaluate())
                    if self.tc.save_every and self.step % self.tc.save_every == 0:
                        self.save()
            if not self.tc.save_every or self.step % self.tc.save_every:
                self.save()
            every = self.tc.eval_every
            evaluated_now = bool(every) and self.step % every == 0
            if (self.held_out or self.evaluator) and not evaluated_now:
                log.log(self.evaluate())
        finally:
            log.close()
        rows = read_metrics(log.path)
        plot_curves(
            [r for r in rows if r.get("kind") == "train"],
            ["loss"],
            self.run_dir / "loss.png",
            title="SFT loss",
        )
        plot_curves(
            [r for r in rows if r.get("kind") == "eval"],
            ["eval_nll"],
            self.run_dir / "eval.png",
            title="held-out NLL",
        )
        return records
