"""The verifiers rubric: the gated reward of the reward service and its components.

Every number comes from the reward service's results (``POST /reward/batch``), which come
from the single reward definition in :mod:`worker.reward`; nothing is recomputed here.
A group (or one rollout) goes out as one batch before the functions run; each function
reads its value from the state:

==================  ======  ==============================================================
name                weight  value
==================  ======  ==============================================================
``reward``          1       the gated reward ∈ [0, 1]; **NaN for** ``infra_error``
``execution``       0       1 when the program made a usable mesh (status ``ok``), else 0
``f_score_0.05``    0       F@0.05 (0 when there is no mesh)
``chamfer_l2``      0       Chamfer-L2 (NaN when there is no mesh: undefined, not 0)
``format``          0       the format score ∈ [0, 1]
``infra_error``     0       1 when it could not be scored (worker lost, generation failed)
==================  ======  ==============================================================

The rollout's reward is exactly the ``reward`` function's value (set after verifiers sums
``value × weight``, because NaN × 0 is NaN in that sum). ``infra_error`` is surfaced, not
scored as 0. verifiers 0.1.x sums ``reward × weight``
and turns exceptions in a reward function into 0.0, so the choice is a NaN reward plus
the ``infra_error`` metric: a trainer masks on ``isnan(reward)`` (or ``infra_error == 1``).
Verifiers' own group advantage (reward − group mean) would be NaN for the whole group,
so :meth:`Blender3DRubric.score_group` recomputes it over the scored rollouts only and
gives masked rollouts advantage 0.0 (no gradient).

The full result (status, error, all metrics and components) is kept in
``state["llm3d"]`` for logging.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import verifiers as vf

from .harness import Blender3DHarness, infra_results
from .parser import Blender3DParser

__all__ = ["METRIC_FUNCS", "Blender3DRubric"]

STATE_KEY = "llm3d"
NAN = float("nan")


def _result(state: dict[str, Any]) -> dict[str, Any]:
    try:
        result: dict[str, Any] = state[STATE_KEY]
    except KeyError:
        raise KeyError(
            "no reward service result in the state: Blender3DRubric scores a group "
            "before its functions run (use it through score_group/score_rollout)"
        ) from None
    return result


def _infra(result: dict[str, Any]) -> bool:
    return bool(result["status"] == "infra_error")


def reward(state: dict[str, Any], **_: Any) -> float:
    result = _result(state)
    return NAN if _infra(result) or result["reward"] is None else float(result["reward"])


def execution(state: dict[str, Any], **_: Any) -> float:
    return float(_result(state)["status"] == "ok")


def f_score(state: dict[str, Any], **_: Any) -> float:
    return float(_result(state)["metrics"].get("f_score_0.05", 0.0))


def chamfer(state: dict[str, Any], **_: Any) -> float:
    return float(_result(state)["metrics"].get("chamfer_l2", NAN))


def format_(state: dict[str, Any], **_: Any) -> float:
    result = _result(state)
    return float(result["components"].get("format", 0.0))


def infra_error(state: dict[str, Any], **_: Any) -> float:
    return float(_infra(_result(state)))


f_score.__name__ = "f_score_0.05"
chamfer.__name__ = "chamfer_l2"
format_.__name__ = "format"

#: (function, weight): the reward first, then the logged components.
METRIC_FUNCS: tuple[tuple[Callable[..., float], float], ...] = (
    (reward, 1.0),
    (execution, 0.0),
    (f_score, 0.0),
    (chamfer, 0.0),
    (format_, 0.0),
    (infra_error, 0.0),
)


class Blender3DRubric(vf.Rubric):  # type: ignore[misc]
    """The gated reward (weight 1) and its components (weight 0), from the reward service.

    Args:
        harness: the reward service client.
        parser: extracts the program from a completion.
    """

    def __init__(self, harness: Blender3DHarness, parser: Blender3DParser | None = None) -> None:
        super().__init__(
            funcs=[f for f, _ in METRIC_FUNCS],
            weights=[w for _, w in METRIC_FUNCS],
            parser=parser or Blender3DParser(),
        )
        self.harness = harness

    async def fetch(self, states: Sequence[Any]) -> None:
        """Score the states' programs in one batch; store each result in ``state["llm3d"]``.

        A rollout whose generation failed (``state["error"]`` set by verifiers: the model
        endpoint erred, the prompt was too long) is not the program's fault either: it is
        not sent and gets an ``infra_error`` result.
        """
        codes = [self.parser.parse_answer(s.get("completion") or []) for s in states]
        send = [i for i, s in enumerate(states) if s.get("error") is None]
        task_ids = []
        for i in send:
            info = states[i].get("info") or {}
            task_ids.append(str(info.get("task_id") or states[i].get("answer")))
        scored = await self.harness.score([codes[i] for i in send], task_ids)
        results = {i: r for i, r in zip(send, scored, strict=True)}
        for i, state in enumerate(states):
            result = results.get(i)
            if result is None:
                error = f"generation failed: {type(state['error']).__name__}: {state['error']}"
                (result,) = infra_results([str(i)], error)
            state[STATE_KEY] = {**result.model_dump(mode="json"), "code": codes[i]}

    @staticmethod
    def _own_reward(state: Any) -> None:
        # verifiers sums value × weight over every function, and NaN × 0 is NaN: a weight-0
        # metric that is undefined (chamfer_l2 without a mesh) must not reach the reward.
        state["reward"] = float(state["metrics"]["reward"])

    async def score_rollout(self, state: Any, score_sem: Any) -> None:
        """Score one rollout (one batch of one)."""
        await self.fetch([state])
        await super().score_rollout(state, score_sem)
        self._own_reward(state)

    async def score_group(self, states: list[Any], score_sem: Any) -> None:
        """Score a group in one batch; advantages over the scored rollouts only."""
        if not states:
            return
        await self.fetch(states)
        unset = [
            [i for i, step in enumerate(s.get("trajectory") or []) if step.get("advantage") is None]
            for s in states
        ]
        await super().score_group(states, score_sem)
        for state in states:
            self._own_reward(state)
        rewards = [float(s["reward"]) for s in states]
        finite = [r for r in rewards if math.isfinite(r)]
        mean = sum(finite) / len(finite) if finite else 0.0
        for state, r, steps in zip(states, rewards, unset, strict=True):
            advantage = r - mean if math.isfinite(r) else 0.0
            state["advantage"] = advantage
            for i in steps:
                state["trajectory"][i]["advantage"] = advantage
