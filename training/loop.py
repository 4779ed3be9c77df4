"""The one trainer loop that SFT and GRPO share (DESIGN §7).

A run is a :class:`Trainer` driving a :class:`Method`. The method does what differs
between SFT and GRPO: it builds the batch of a step (SFT: the step's rows as datums;
GRPO: the sampled groups) and turns it into one optimizer step with its loss
(cross-entropy; the clipped importance ratio). The trainer does everything else, the
same way for both:

- the step counter and the stop (``steps``, or the method's own total);
- each step's learning rate (:func:`scheduled_learning_rate`: warmup, then constant or a
  linear or cosine decay that ends at the stop), given to the method and logged;
- the run log (``metrics.jsonl``, mirrored to W&B), one ``"train"`` record a step with
  ``kind``, ``step`` and ``seconds`` added, and the progress bar;
- evaluation every ``eval_every`` steps and at the end (when the method evaluates);
- checkpoints every ``training.save_every`` steps and at the end:
  ``checkpoints/step-NNNNNN/`` with the backend's files and ``trainer_state.json``;
- resume from a checkpoint (weights, optimizer, position; the log is cut back to it), so
  the run continues exactly as if it had not stopped; the batch of a step is a pure
  function of the step and the seed;
- starting from another run's weights with a fresh optimizer (:meth:`Trainer.init_from`);
- the curve PNGs the method names.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from llm3d.config import Config, TrainingConfig
from llm3d.exceptions import ConfigError
from training.backends.base import Backend
from training.runlog import RunLog, plot_curves, read_metrics, read_state, write_state

__all__ = ["Curve", "Method", "Trainer", "scheduled_learning_rate"]

logger = logging.getLogger(__name__)

B = TypeVar("B")


@dataclass(frozen=True)
class Curve:
    """One PNG of the run folder: ``keys`` of the ``kind`` records against the step."""

    kind: str
    keys: tuple[str, ...]
    file: str
    title: str


def scheduled_learning_rate(tc: TrainingConfig, step: int, total: int) -> float:
    """The learning rate of step ``step`` (0-based) of a run of ``total`` steps.

    ``training.warmup_steps`` of linear warmup (step 0 at ``1 / warmup_steps`` of the peak),
    then ``training.lr_schedule``: ``constant`` at ``learning_rate``, or a ``linear`` or
    ``cosine`` decay from it to ``lr_min_ratio * learning_rate`` at the last step. A pure
    function of the step, so a resumed run continues the same schedule.
    """
    peak = tc.learning_rate
    warmup = tc.warmup_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    if tc.lr_schedule == "constant":
        return peak
    span = max(total - 1 - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    shape = progress if tc.lr_schedule == "linear" else (1 - math.cos(math.pi * progress)) / 2
    return peak * (1 - (1 - tc.lr_min_ratio) * shape)


class Method(Protocol[B]):
    """What one training method adds to the loop: its batch and its loss.

    Attributes:
        kind: written to ``trainer_state.json`` (``"sft"``, ``"rl"``); a checkpoint of
            another kind cannot be resumed (start from its weights with ``init_from``).
        title: the method's name in the progress bar and the logs.
        batch_seconds: the record key of the time spent in :meth:`batch`.
        eval_every: steps between evaluations; 0 = only at the end of the run.
        curves: the PNGs drawn from the run log when the run ends.
    """

    @property
    def kind(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def batch_seconds(self) -> str: ...

    @property
    def eval_every(self) -> int: ...

    @property
    def curves(self) -> Sequence[Curve]: ...

    def total_steps(self) -> int:
        """Where a run stops when the caller gives no ``steps``."""
        ...

    def batch(self, step: int) -> B:
        """The batch of step ``step`` (0-based): a function of the step, the seed and,
        for GRPO, the current weights, so a resumed run builds the same batches."""
        ...

    def learn(self, batch: B, learning_rate: float) -> dict[str, Any]:
        """The loss of ``batch``, its gradient and one optimizer step at ``learning_rate``;
        the record's fields."""
        ...

    def evaluate(self, step: int) -> dict[str, Any] | None:
        """Held-out metrics after step ``step``; None when the method has nothing to evaluate."""
        ...

    def describe(self, record: Mapping[str, Any]) -> str:
        """The progress bar's text after a step."""
        ...

    def state(self) -> dict[str, Any]:
        """What the method keeps in a checkpoint beside the trainer's position."""
        ...

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`state` wrote (on resume)."""
        ...


class Trainer(Generic[B]):
    """One training run of ``method`` on ``backend``, logged and checkpointed in ``run_dir``.

    Args:
        config: the whole configuration (``training`` section, ``seed``).
        backend: a :class:`~training.backends.base.Backend`.
        run_dir: where logs, checkpoints and curves go.
        method: what builds the batches and the loss (:class:`Method`).
    """

    def __init__(self, config: Config, backend: Backend, run_dir: Path, method: Method[B]) -> None:
        self.config = config
        self.tc = config.training
        self.backend = backend
        self.run_dir = Path(run_dir)
        self.method = method
        self.step = 0
        #: the run's last step: where the learning-rate schedule ends (set by :meth:`train`)
        self.total = method.total_steps()

    # ------------------------------------------------------------------ one step

    def train_step(self, batch: B | None = None) -> dict[str, Any]:
        """One optimizer step on ``batch`` (default: the method's batch of the next step)."""
        start = time.perf_counter()
        if batch is None:
            batch = self.method.batch(self.step)
        built = time.perf_counter()
        learning_rate = scheduled_learning_rate(self.tc, self.step, self.total)
        learned = self.method.learn(batch, learning_rate)
        self.step += 1
        return {
            "kind": "train",
            "step": self.step,
            "learning_rate": learning_rate,
            **learned,
            self.method.batch_seconds: built - start,
            "seconds": time.perf_counter() - start,
        }

    def evaluate(self) -> dict[str, Any] | None:
        """The method's held-out metrics at the current step, as an ``"eval"`` record."""
        start = time.perf_counter()
        metrics = self.method.evaluate(self.step)
        if metrics is None:
            return None
        return {
            "kind": "eval",
            "step": self.step,
            **metrics,
            "seconds": time.perf_counter() - start,
        }

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> Path:
        """A checkpoint of the backend, the trainer's position and the method's state."""
        folder = self.run_dir / "checkpoints" / f"step-{self.step:06d}"
        ref = self.backend.save(folder, "model")
        write_state(
            folder,
            {
                "trainer": self.method.kind,
                "step": self.step,
                "backend": self.backend.name,
                "ref": ref,
                "seed": self.config.seed,
                **self.method.state(),
            },
        )
        logger.info("checkpoint at step %d: %s", self.step, folder)
        return folder

    def resume(self, checkpoint: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`: weights, optimizer, position.

        Raises:
            ConfigError: the checkpoint is not one of this method's (an SFT checkpoint
                given to GRPO: start from its weights with :meth:`init_from`).
        """
        state = read_state(checkpoint)
        kind = state.get("trainer")
        if kind is not None and kind != self.method.kind:
            raise ConfigError(
                f"{checkpoint} is a {kind!r} checkpoint, not a {self.method.kind!r} one: "
                "resume only continues a run of the same method (start from its weights "
                "with --init-from instead)"
            )
        self.backend.load(str(state["ref"]))
        self.step = int(state["step"])
        self.method.restore(state)
        logger.info("resumed %s at step %d from %s", self.method.title, self.step, checkpoint)

    def init_from(self, checkpoint: Path) -> None:
        """Start from another run's weights (e.g. the SFT adapter), with a fresh optimizer."""
        state = read_state(checkpoint)
        self.backend.load(str(state["ref"]), optimizer=False)
        logger.info("%s starts from the weights of %s", self.method.title, checkpoint)

    # ------------------------------------------------------------------ the loop

    def train(
        self, *, steps: int | None = None, resume: Path | None = None, progress: bool = True
    ) -> list[dict[str, Any]]:
        """Run until ``steps`` steps are done in total (default: the method's total).

        Args:
            steps: where to stop, counted from the start of the run (not of this call).
            resume: a checkpoint folder to continue from.
            progress: show a progress bar.

        Returns:
            The ``"train"`` records of this call.
        """
        if resume is not None:
            self.resume(resume)
        total = steps if steps is not None else self.method.total_steps()
        self.total = total
        log = RunLog(
            self.run_dir,
            wandb_project=self.tc.wandb_project,
            config=self.config.model_dump(mode="json"),
            resume_step=self.step if resume is not None else None,
        )
        records: list[dict[str, Any]] = []
        save_every, eval_every = self.tc.save_every, self.method.eval_every
        from rich.progress import Progress

        try:
            with Progress(disable=not progress, transient=True) as bar:
                task = bar.add_task(self.method.title, total=total, completed=self.step)
                while self.step < total:
                    record = self.train_step()
                    log.log(record)
                    records.append(record)
                    bar.update(task, completed=self.step, description=self.method.describe(record))
                    if eval_every and self.step % eval_every == 0:
                        self._log_evaluation(log)
                    if save_every and self.step % save_every == 0:
                        self.save()
            if not save_every or self.step % save_every:
                self.save()
            if not eval_every or self.step % eval_every:
                self._log_evaluation(log)
        finally:
            log.close()
        self.plot(log.path)
        return records

    def _log_evaluation(self, log: RunLog) -> None:
        record = self.evaluate()
        if record is not None:
            log.log(record)

    def plot(self, metrics: Path) -> list[Path]:
        """The method's curves from the run log; returns the PNGs written."""
        rows = read_metrics(metrics)
        written = []
        for curve in self.method.curves:
            out = plot_curves(
                [r for r in rows if r.get("kind", "train") == curve.kind],
                list(curve.keys),
                self.run_dir / curve.file,
                title=curve.title,
            )
            if out is not None:
                written.append(out)
        return written
