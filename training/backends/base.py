"""The one small interface both trainers drive (DESIGN §7), and the types it speaks.

A backend renders chat messages to its own prompt form (token ids and pixels for
``local``, a Tinker ``ModelInput`` with image chunks for ``tinker``), samples completions
with their log-probs, and trains on :class:`Datum` s: a prompt, the completion's tokens,
and per-token ``weights`` (SFT) or ``advantages`` + ``sampling_logprobs`` (GRPO).

The loss functions mean what Tinker's mean, so both backends learn the same thing:

- ``cross_entropy``: ``-Σ_t weights_t · log p(token_t)`` (a sum; the trainer normalises
  the weights so the sum is a mean over the batch's target tokens);
- ``ppo``: ``-Σ_t min(r_t · A_t, clip(r_t, 1-ε_low, 1+ε_high) · A_t)`` with
  ``r_t = exp(log p(token_t) − sampling_logprob_t)`` (the clipped importance ratio);
- ``importance_sampling``: ``-Σ_t r_t · A_t`` (no clip).

On-policy (issue 24): ``sample`` records, for every token, its log-prob under exactly the
distribution it was drawn from, and ``forward_backward`` / ``logprobs`` compute the same
distribution for the same ``temperature``: the importance ratio of freshly sampled tokens
is 1. The policy is ``softmax(logits / temperature)`` with nothing else applied: no
top-k, top-p, min-p or repetition penalty, whatever the checkpoint's own generation
settings say. A backend that can only train the untempered policy (Tinker) says so with
``tempered_training = False``, and GRPO then accepts only ``temperature = 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "LOSS_FUNCTIONS",
    "Backend",
    "Completion",
    "Datum",
    "LossFn",
    "StepResult",
]

LossFn = Literal["cross_entropy", "ppo", "importance_sampling"]
LOSS_FUNCTIONS: tuple[LossFn, ...] = ("cross_entropy", "ppo", "importance_sampling")

Message = dict[str, Any]


@dataclass(frozen=True)
class Datum:
    """One training sequence: ``prompt`` followed by ``completion``.

    Attributes:
        prompt: the backend's rendered prompt (from :meth:`Backend.render_prompt`).
        completion: token ids after the prompt (the assistant's answer and its end token).
        weights: per completion token, the cross-entropy weight (``cross_entropy``).
        advantages: per completion token, the advantage (``ppo``/``importance_sampling``).
        sampling_logprobs: per completion token, its log-prob under the sampling policy.
    """

    prompt: Any
    completion: tuple[int, ...]
    weights: tuple[float, ...] | None = None
    advantages: tuple[float, ...] | None = None
    sampling_logprobs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.completion)
        for name in ("weights", "advantages", "sampling_logprobs"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Datum.{name} has {len(value)} values for {n} completion tokens")


@dataclass(frozen=True)
class Completion:
    """One sampled answer.

    Attributes:
        tokens: generated ids, the end-of-turn token included when the model stopped.
        logprobs: log-prob of each token under the sampling policy.
        text: the decoded answer (special tokens removed).
        stopped: True when the model ended its turn (False: cut at ``max_tokens``).
    """

    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    stopped: bool


@dataclass(frozen=True)
class StepResult:
    """What :meth:`Backend.forward_backward` reports.

    Attributes:
        loss: the summed loss of the batch (see the module docstring).
        logprobs: per datum, the log-prob of each completion token before the update.
        n_tokens: completion tokens in the batch.
        metrics: backend extras (e.g. the share of clipped ratios).
    """

    loss: float
    logprobs: list[list[float]]
    n_tokens: int
    metrics: dict[str, float]


@runtime_checkable
class Backend(Protocol):
    """What a trainer needs from a model: render, sample, score, train, save, load."""

    name: str
    #: True when ``forward_backward`` and ``logprobs`` take any ``temperature``.
    tempered_training: bool

    def render_prompt(self, messages: Sequence[Message]) -> Any:
        """The prompt (system, user with images) with the assistant's header appended."""
        ...

    def encode_completion(self, text: str) -> list[int]:
        """The assistant's answer as token ids, ending with the end-of-turn token."""
        ...

    def decode(self, tokens: Sequence[int]) -> str:
        """Token ids back to text (special tokens dropped)."""
        ...

    def prompt_length(self, prompt: Any) -> int:
        """Tokens the prompt occupies in the context (image tokens included)."""
        ...

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFn,
        *,
        clip_low: float = 0.2,
        clip_high: float = 0.2,
        temperature: float = 1.0,
    ) -> StepResult:
        """Accumulate the gradient of ``loss_fn`` over ``data`` (no parameter change).

        ``temperature``: the policy's (``ppo``, ``importance_sampling``): the one the
        ``sampling_logprobs`` were sampled at. ``metrics["clip_fraction"]`` (``ppo``): the
        share of tokens where the clipped term of the min was taken.
        """
        ...

    def optim_step(self, learning_rate: float) -> dict[str, float]:
        """Apply the accumulated gradient with Adam, then clear it."""
        ...

    def logprobs(
        self, data: Sequence[Datum], *, reference: bool = False, temperature: float = 1.0
    ) -> list[list[float]]:
        """Log-prob of each completion token under the policy at ``temperature``;
        ``reference=True``: under the frozen reference (:meth:`freeze_reference`)."""
        ...

    def freeze_reference(self, directory: Path) -> str:
        """Keep the current weights, frozen, as the KL reference; save them in ``directory``.

        Returns what :meth:`load_reference` takes to restore the same reference (a resumed
        run keeps the reference its start froze).
        """
        ...

    def load_reference(self, ref: str) -> None:
        """Use what :meth:`freeze_reference` returned as the KL reference."""
        ...

    def sample(
        self,
        prompts: Sequence[Any],
        n: int,
        *,
        max_tokens: int,
        temperature: float,
        seed: int,
    ) -> list[list[Completion]]:
        """``n`` completions for each prompt from the current weights, drawn from
        ``softmax(logits / temperature)``, each token's log-prob under it recorded."""
        ...

    def save(self, directory: Path, name: str) -> str:
        """Save weights and optimizer state; returns what :meth:`load` takes."""
        ...

    def load(self, ref: str, *, optimizer: bool = True) -> None:
        """Restore what :meth:`save` returned: weights, and the optimizer state unless
        ``optimizer=False`` (starting a new run from another run's weights, e.g. GRPO
        from the SFT adapter)."""
        ...
