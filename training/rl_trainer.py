"""GRPO against the reward service, through either backend (DESIGN §7, issue 10).

One step:

1. **sample**: ``training.batch_size`` prompts (a seeded walk over the RL rows), each
   ``training.group_size`` completions from the current weights (on-policy: the
   weights updated by the previous step);
2. **reward**: every completion scored in one ``POST /reward/batch`` call of
   :class:`~llm3d.client.RewardClient` (the reward may run on another machine);
3. **advantages**: ``reward − mean(group)``, no division by the standard deviation;
   completions with ``infra_error`` (reward null) are excluded, groups whose remaining
   rewards are all equal carry no signal and are dropped; optional KL penalty
   ``kl_coef · (log π − log π_ref)`` per token, subtracted from the advantage, where
   ``π_ref`` is the policy this run started from (the ``--init-from`` weights), frozen at
   its first step and kept in its checkpoints;
4. **update**: the clipped importance-ratio (``ppo``) loss on all kept completions, one
   Adam step. Token-level normalisation: advantages are divided by the batch's
   completion-token count, so the loss is a per-token mean.

On-policy: the sampled log-probs, the trained ones and the reference's are all of
``softmax(logits / training.temperature)``, nothing else applied (see
:mod:`training.backends.base`); on fresh samples the importance ratio is 1. A backend that
trains only the untempered policy (Tinker) accepts only ``temperature = 1``.

Each step is one JSONL record: mean reward, execution rate, mean F@0.05, the share of each
status, tokens, seconds of each phase; plus ``reward.png``. The loop around the step
(checkpoints, resume, the run log) is :class:`training.loop.Trainer`'s, shared with SFT.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from llm3d.config import Config
from llm3d.exceptions import ConfigError
from llm3d.schemas import ExecStatus, RewardResponse, RewardResult
from training.backends.base import Backend, Completion, Datum
from training.data import Example
from training.loop import Curve, Trainer

__all__ = ["GRPO", "GRPOTrainer", "Group", "RewardScorer", "ensure_tasks", "group_advantages"]

logger = logging.getLogger(__name__)

#: The "execution rate" counts ``ok`` results (as the evaluation runner's reports do).
EXECUTED = {ExecStatus.OK}


class RewardScorer(Protocol):
    """What the trainer needs of :class:`llm3d.client.RewardClient`."""

    def score_batch(
        self,
        items: Sequence[dict[str, Any]],
        *,
        request_id: str | None = None,
        timeout_s: float | None = None,
        points: int | None = None,
    ) -> RewardResponse: ...


@dataclass
class Group:
    """One prompt and its completions (and, once scored, their results)."""

    example: Example
    prompt: Any
    completions: list[Completion]
    results: list[RewardResult] | None = None


def ensure_tasks(client: Any, rows: Sequence[Example]) -> int:
    """Register with the reward service the ground truths of rows it does not know.

    Rows with a ``task_id`` are scored against it; a task the service lacks is added
    (``POST /tasks``) from the row's program. Returns how many were added.

    Raises:
        ConfigError: a row's task is unknown and the row has no program to register.
    """
    wanted = {r.task_id: r for r in rows if r.task_id is not None}
    if not wanted:
        return 0
    known = {t.task_id for t in client.tasks().tasks}
    added = 0
    for task_id, row in wanted.items():
        if task_id in known:
            continue
        if row.reference_code is None:
            raise ConfigError(
                f"the reward service does not know task {task_id!r} and the row has no "
                "program to register: start it with api.datasets: [<the RL JSONL>]"
            )
        client.add_task(task_id, {"code": row.reference_code}, source="llm3d rl")
        added += 1
    if added:
        logger.info("registered %d ground truths with the reward service", added)
    return added


def group_advantages(rewards: Sequence[float | None]) -> list[float | None] | None:
    """``reward − group mean`` over the non-null rewards; None when the group is dropped.

    Null rewards (``infra_error``) get a null advantage and take no part in the mean. A
    group is dropped when fewer than two rewards remain or all remaining ones are equal.
    """
    valid = [r for r in rewards if r is not None]
    if len(valid) < 2 or max(valid) - min(valid) < 1e-9:
        return None
    mean = sum(valid) / len(valid)
    return [None if r is None else r - mean for r in rewards]


class GRPO:
    """The GRPO method of :class:`~training.loop.Trainer` (see :class:`GRPOTrainer`).

    Its batch is the step's sampled groups; its loss the clipped importance ratio on
    their advantages after the reward service has scored them.

    Args:
        config: the whole configuration (``training`` section, ``seed``).
        backend: a :class:`~training.backends.base.Backend`.
        rows: the RL prompts (with their ground truths).
        scorer: the reward service's client.
        reference_dir: where the KL reference is saved when ``kl_coef > 0``.

    Raises:
        ConfigError: ``training.temperature`` is not 1 and the backend cannot train a
            tempered policy (GRPO would be off-policy).
    """

    kind = "rl"
    title = "GRPO"
    batch_seconds = "seconds_sample"
    eval_every = 0
    curves = (
        Curve(
            "train", ("reward_mean", "execution_rate", "f_score_0.05"), "reward.png", "GRPO reward"
        ),
    )

    def __init__(
        self,
        config: Config,
        backend: Backend,
        rows: Sequence[Example],
        scorer: RewardScorer,
        *,
        reference_dir: Path,
    ) -> None:
        if not rows:
            raise ValueError("GRPO needs at least one prompt row")
        self.config = config
        self.tc = config.training
        if self.tc.temperature != 1.0 and not backend.tempered_training:
            raise ConfigError(
                f"training.temperature={self.tc.temperature}: the {backend.name} backend "
                "trains the untempered policy only, so GRPO samples must be drawn at "
                "temperature 1.0 to be on-policy"
            )
        self.backend = backend
        self.rows = list(rows)
        self.scorer = scorer
        self.reference_dir = Path(reference_dir)
        self.reference: str | None = None

    def total_steps(self) -> int:
        return self.tc.rl_steps

    def rows_at(self, step: int) -> list[Example]:
        """The prompts of step ``step``: consecutive slices of a seeded shuffle per epoch."""
        n = self.tc.batch_size
        out: list[Example] = []
        position = step * n
        while len(out) < n:
            epoch, index = divmod(position, len(self.rows))
            order = list(self.rows)
            random.Random(f"{self.config.seed}:rl:{epoch}").shuffle(order)
            out.append(order[index])
            position += 1
        return out

    def batch(self, step: int) -> list[Group]:
        """``group_size`` completions for each prompt of the step (current weights)."""
        rows = self.rows_at(step)
        prompts = [self.backend.render_prompt(r.prompt) for r in rows]
        samples = self.backend.sample(
            prompts,
            self.tc.group_size,
            max_tokens=self.tc.max_new_tokens,
            temperature=self.tc.temperature,
            seed=self.config.seed * 1_000_003 + step,
        )
        return [Group(r, p, c) for r, p, c in zip(rows, prompts, samples, strict=True)]

    def score(self, groups: Sequence[Group]) -> None:
        """All completions of the step in one reward-service call; results set on groups."""
        items = [
            g.example.reward_item(f"{i}-{j}", c.text)
            for i, g in enumerate(groups)
            for j, c in enumerate(g.completions)
        ]
        response = self.scorer.score_batch(
            items, timeout_s=self.tc.reward_timeout_s, points=self.tc.reward_points
        )
        by_id = {r.id: r for r in response.results}
        for i, g in enumerate(groups):
            g.results = [by_id[f"{i}-{j}"] for j in range(len(g.completions))]

    def build_data(self, groups: Sequence[Group]) -> tuple[list[Datum], dict[str, Any]]:
        """Datums of the kept completions, with normalised (and KL-shaped) advantages."""
        kept: list[tuple[Group, Completion, float]] = []
        dropped = 0
        for g in groups:
            assert g.results is not None, "score() before build_data()"
            advantages = group_advantages([r.reward for r in g.results])
            if advantages is None:
                dropped += 1
                continue
            kept.extend(
                (g, c, a) for c, a in zip(g.completions, advantages, strict=True) if a is not None
            )
        stats: dict[str, Any] = {"groups_kept": len(groups) - dropped, "groups_dropped": dropped}
        if not kept:
            return [], stats
        n_tokens = sum(len(c.tokens) for _, c, _ in kept)
        raw = [
            Datum(prompt=g.prompt, completion=c.tokens, sampling_logprobs=c.logprobs)
            for g, c, _ in kept
        ]
        kl_terms: list[list[float]] = [[0.0] * len(d.completion) for d in raw]
        if self.tc.kl_coef > 0:
            self._freeze_reference()
            reference = self.backend.logprobs(raw, reference=True, temperature=self.tc.temperature)
            kl_terms = [
                [s - r for s, r in zip(c.logprobs, ref, strict=True)]
                for (_, c, _), ref in zip(kept, reference, strict=True)
            ]
            stats["kl"] = sum(map(sum, kl_terms)) / n_tokens
        data = [
            Datum(
                prompt=d.prompt,
                completion=d.completion,
                sampling_logprobs=d.sampling_logprobs,
                advantages=tuple((a - self.tc.kl_coef * k) / n_tokens for k in kls),
            )
            for d, (_, _, a), kls in zip(raw, kept, kl_terms, strict=True)
        ]
        stats["train_tokens"] = n_tokens
        stats["datums"] = len(data)
        return data, stats

    def update(self, data: Sequence[Datum], learning_rate: float) -> dict[str, Any]:
        """One clipped-ratio loss gradient and one Adam step (nothing when ``data`` is empty)."""
        if not data:
            return {"loss": None}
        result = self.backend.forward_backward(
            data,
            self.tc.loss_fn,
            clip_low=self.tc.clip_low,
            clip_high=self.tc.clip_high,
            temperature=self.tc.temperature,
        )
        optim = self.backend.optim_step(learning_rate)
        return {"loss": result.loss, **result.metrics, **optim}

    def learn(self, groups: list[Group], learning_rate: float) -> dict[str, Any]:
        """Score the groups, build the datums, one update; the step's record fields."""
        t0 = time.perf_counter()
        self.score(groups)
        t1 = time.perf_counter()
        data, stats = self.build_data(groups)
        update = self.update(data, learning_rate)
        return {
            **step_metrics(groups),
            **stats,
            **update,
            "seconds_reward": t1 - t0,
            "seconds_update": time.perf_counter() - t1,
        }

    def evaluate(self, step: int) -> dict[str, Any] | None:
        return None

    def describe(self, record: Mapping[str, Any]) -> str:
        return f"GRPO reward {record['reward_mean'] or 0:.3f}"

    def _freeze_reference(self) -> None:
        """The KL reference: the weights of the run's first step (before any update)."""
        if self.reference is None:
            self.reference = self.backend.freeze_reference(self.reference_dir)
            logger.info("KL reference: the starting policy, saved at %s", self.reference)

    def state(self) -> dict[str, Any]:
        return {"kl_reference": self.reference} if self.reference is not None else {}

    def restore(self, state: Mapping[str, Any]) -> None:
        ref = state.get("kl_reference")
        if ref is not None:
            self.backend.load_reference(str(ref))
            self.reference = str(ref)
        elif self.tc.kl_coef > 0:
            logger.warning(
                "the checkpoint keeps no KL reference: the weights it resumes from become one"
            )


class GRPOTrainer(Trainer[list[Group]]):
    """One GRPO run: :class:`GRPO` in the shared loop.

    Args:
        config: the whole configuration (``training`` section, ``seed``).
        backend: a :class:`~training.backends.base.Backend`.
        rows: the RL prompts (with their ground truths).
        scorer: the reward service's client.
        run_dir: where logs, checkpoints and curves go.
    """

    method: GRPO

    def __init__(
        self,
        config: Config,
        backend: Backend,
        rows: Sequence[Example],
        scorer: RewardScorer,
        run_dir: Path,
    ) -> None:
        method = GRPO(config, backend, rows, scorer, reference_dir=Path(run_dir) / "reference")
        super().__init__(config, backend, run_dir, method)


def step_metrics(groups: Sequence[Group]) -> dict[str, Any]:
    """Mean reward, execution rate, mean F@0.05, status shares and token counts of a step."""
    results = [r for g in groups for r in (g.results or [])]
    completions = [c for g in groups for c in g.completions]
    valid = [r for r in results if r.reward is not None]
    statuses = Counter(r.status for r in results)
    n = max(len(results), 1)
    scored = [r for r in results if r.status is not ExecStatus.INFRA_ERROR]
    return {
        "reward_mean": sum(r.reward for r in valid if r.reward is not None) / len(valid)
        if valid
        else None,
        "reward_max": max((r.reward for r in valid if r.reward is not None), default=None),
        "execution_rate": sum(r.status in EXECUTED for r in scored) / max(len(scored), 1),
        "f_score_0.05": sum(r.metrics.get("f_score_0.05", 0.0) for r in scored)
        / max(len(scored), 1),
        **{f"status_{s.value}": statuses.get(s, 0) / n for s in ExecStatus},
        "completions": len(completions),
        "sampled_tokens": sum(len(c.tokens) for c in completions),
        "stopped_rate": sum(c.stopped for c in completions) / max(len(completions), 1),
        "infra_errors": statuses.get(ExecStatus.INFRA_ERROR, 0),
    }
