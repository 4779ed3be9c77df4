"""The ``tinker`` backend: LoRA training and sampling on the Tinker service (its SDK).

Tinker does not serve Qwen2.5-VL: the base model is ``training.tinker_base_model`` (a
Qwen3-VL model by default) and is checked at start against the service's list of
supported models, with an error naming the vision models it does serve.

Prompts are rendered in Qwen's chat format (``<|im_start|>role\\n ... <|im_end|>\\n``,
images as ``<|vision_start|>`` + an :class:`tinker.types.ImageChunk` + ``<|vision_end|>``,
the Qwen3-VL-Instruct layout) into a :class:`tinker.types.ModelInput`. Training datums
follow the SDK's next-token layout: the model input is the prompt plus all completion
tokens but the last; ``target_tokens`` / ``weights`` / ``logprobs`` / ``advantages``
have one entry per input position, zero over the prompt.

On-policy: Tinker's training forward computes untempered log-probs, and its sampler
records log-probs of the tempered distribution, so this backend trains only at
``temperature = 1`` (``tempered_training = False``; GRPO checks it at start) and samples
with no top-k / top-p. Every sampled token must come with its log-prob: a missing one is
an error, never a made-up 0.0 (that would turn the ratio into ``p ≤ 1``). The KL
reference is a sampler of the weights GRPO started from
(:meth:`TinkerBackend.freeze_reference`), not the base model.
"""

from __future__ import annotations

import importlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llm3d.chat import is_image_part
from llm3d.config import TrainingConfig
from llm3d.exceptions import ConfigError, TrainingBackendError
from training.backends.base import Completion, Datum, LossFn, StepResult

__all__ = ["TinkerBackend", "check_base_model"]

logger = logging.getLogger(__name__)

Message = dict[str, Any]
END = "<|im_end|>"
ADAM = {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8}


def _result(value: Any) -> Any:
    """The value of an SDK future (``.result()``), or the value itself."""
    return value.result() if hasattr(value, "result") and callable(value.result) else value


def check_base_model(service: Any, base_model: str) -> list[str]:
    """Raise :class:`ConfigError` unless the service serves ``base_model``; return its list."""
    capabilities = service.get_server_capabilities()
    names = [m.model_name for m in capabilities.supported_models if m.model_name]
    if base_model in names:
        return names
    vision = [n for n in names if "VL" in n or "Qwen3.5" in n or "vision" in n.lower()]
    hint = ""
    if "Qwen2.5-VL" in base_model:
        hint = " Tinker serves no Qwen2.5-VL model; train Qwen2.5-VL with training.backend=local."
    raise ConfigError(
        f"Tinker does not serve training.tinker_base_model={base_model!r}.{hint} "
        f"Vision models it serves: {', '.join(vision) or 'none'}"
        f"{'; all models: ' + ', '.join(names) if names else ''}. "
        "Set training.tinker_base_model to one of them."
    )


def _image_bytes(path: str) -> tuple[bytes, str, int, int]:
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        fmt = (image.format or "").lower()
        if fmt in ("png", "jpeg"):
            return Path(path).read_bytes(), fmt, width, height
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue(), "png", width, height


def _untempered(temperature: float) -> None:
    if temperature != 1.0:
        raise ConfigError(
            f"Tinker trains the untempered policy only: training.temperature={temperature} "
            "would make GRPO off-policy (the sampler's log-probs are tempered, the training "
            "forward's are not); set training.temperature to 1.0 or train with "
            "training.backend=local"
        )


def _complete(values: Sequence[float | None] | None, n: int, what: str) -> tuple[float, ...]:
    """The ``n`` log-probs Tinker returned, or :class:`TrainingBackendError` for any missing."""
    if values is None or len(values) != n or any(v is None for v in values):
        have = "no" if values is None else sum(v is not None for v in values)
        raise TrainingBackendError(
            f"Tinker returned {have} log-probs for {n} {what} tokens: GRPO needs the log-prob "
            "of every token (a made-up value would bias the importance ratio)"
        )
    return tuple(float(v) for v in values if v is not None)


class TinkerBackend:
    """Train and sample on Tinker.

    Args:
        config: the ``training`` section (``tinker_base_model``, ``lora_rank``, ...).
        seed: seeds the LoRA initialisation.
        service_client: a ``tinker.ServiceClient`` (default: a new one; needs
            ``TINKER_API_KEY``). Tests pass a stand-in built from the SDK's types.
        tokenizer: the base model's tokenizer (default: the training client's).
        image_processor: the base model's image processor, for the images' token counts
            (default: ``AutoImageProcessor.from_pretrained(tinker_base_model)``).
    """

    name = "tinker"
    tempered_training = False

    def __init__(
        self,
        config: TrainingConfig,
        *,
        seed: int = 0,
        service_client: Any = None,
        tokenizer: Any = None,
        image_processor: Any = None,
    ) -> None:
        from tinker import types

        self.types = types
        self.config = config
        self.base_model = config.tinker_base_model
        if config.lora_rank == 0:
            raise ConfigError(
                "training.lora_rank=0 (full fine-tuning) is a local-backend option: Tinker "
                "trains LoRA adapters only; give a rank >= 1"
            )
        if service_client is None:
            import os

            import tinker

            if not os.environ.get("TINKER_API_KEY"):
                raise ConfigError(
                    "training.backend=tinker needs a Tinker API key: export TINKER_API_KEY=... "
                    "(or train with training.backend=local)"
                )
            service_client = tinker.ServiceClient()
        self.service = service_client
        check_base_model(self.service, self.base_model)
        self.training = _result(
            self.service.create_lora_training_client(
                base_model=self.base_model, rank=config.lora_rank, seed=seed
            )
        )
        self.tokenizer = tokenizer if tokenizer is not None else self.training.get_tokenizer()
        if image_processor is None:
            transformers: Any = importlib.import_module("transformers")
            image_processor = transformers.AutoImageProcessor.from_pretrained(self.base_model)
        self.image_processor = image_processor
        self.eos_id = int(self.tokenizer.convert_tokens_to_ids(END))
        self._sampler: Any = None
        self._reference: Any = None

    # ------------------------------------------------------------------ rendering

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def image_chunk(self, path: str) -> Any:
        """An ``ImageChunk`` with the token count the base model's processor gives."""
        data, fmt, width, height = _image_bytes(path)
        patches = self.image_processor.get_number_of_image_patches(height, width, {})
        tokens = int(patches) // int(self.image_processor.merge_size) ** 2
        return self.types.ImageChunk(data=data, format=fmt, expected_tokens=tokens)

    def render_prompt(self, messages: Sequence[Message]) -> Any:
        """Qwen chat format as a ``ModelInput``: text chunks around image chunks."""
        chunks: list[Any] = []
        pending: list[int] = []

        def text(value: str) -> None:
            pending.extend(self._encode(value))

        def flush() -> None:
            if pending:
                chunks.append(self.types.EncodedTextChunk(tokens=list(pending)))
                pending.clear()

        for message in messages:
            text(f"<|im_start|>{message['role']}\n")
            content = message["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for part in parts:
                if is_image_part(part):
                    text("<|vision_start|>")
                    flush()
                    chunks.append(self.image_chunk(str(part["image"])))
                    text("<|vision_end|>")
                else:
                    text(str(part.get("text", "")))
            text(f"{END}\n")
        text("<|im_start|>assistant\n")
        flush()
        return self.types.ModelInput(chunks=chunks)

    def encode_completion(self, text: str) -> list[int]:
        return [*self._encode(text), self.eos_id]

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(tokens), skip_special_tokens=True))

    def prompt_length(self, prompt: Any) -> int:
        return int(prompt.length)

    # ------------------------------------------------------------------ training

    def to_datum(self, datum: Datum, loss_fn: LossFn) -> Any:
        """The SDK ``Datum``: prompt + completion[:-1] in, one loss row per input position."""
        prompt = datum.prompt
        pad = prompt.length - 1
        completion = list(datum.completion)
        # a completion of one token (only <|im_end|>) adds no input: no empty chunk
        model_input = (
            prompt.append(self.types.EncodedTextChunk(tokens=completion[:-1]))
            if len(completion) > 1
            else prompt
        )
        tensor = self.types.TensorData.from_numpy
        inputs = {"target_tokens": tensor(np.array([0] * pad + completion, dtype=np.int64))}

        def floats(values: Sequence[float]) -> Any:
            return tensor(np.array([0.0] * pad + list(values), dtype=np.float32))

        if loss_fn == "cross_entropy":
            if datum.weights is None:
                raise ValueError("cross_entropy needs Datum.weights")
            inputs["weights"] = floats(datum.weights)
        else:
            if datum.advantages is None or datum.sampling_logprobs is None:
                raise ValueError(f"{loss_fn} needs Datum.advantages and sampling_logprobs")
            inputs["logprobs"] = floats(datum.sampling_logprobs)
            inputs["advantages"] = floats(datum.advantages)
        return self.types.Datum(model_input=model_input, loss_fn_inputs=inputs)

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFn,
        *,
        clip_low: float = 0.2,
        clip_high: float = 0.2,
        temperature: float = 1.0,
    ) -> StepResult:
        _untempered(temperature)
        datums = [self.to_datum(d, loss_fn) for d in data]
        loss_config = (
            {"clip_low_threshold": 1.0 - clip_low, "clip_high_threshold": 1.0 + clip_high}
            if loss_fn == "ppo"
            else None
        )
        output = _result(self.training.forward_backward(datums, loss_fn, loss_config))
        logprobs = []
        for d, out in zip(data, output.loss_fn_outputs, strict=True):
            values = out["logprobs"].data
            logprobs.append([float(v) for v in values[len(values) - len(d.completion) :]])
        metrics = {k: float(v) for k, v in output.metrics.items()}
        loss = metrics.pop("loss:sum", None)
        if loss is None:  # derive it from the log-probs for cross-entropy
            loss = -sum(
                w * lp
                for d, lps in zip(data, logprobs, strict=True)
                for w, lp in zip(d.weights or (), lps, strict=False)
            )
        return StepResult(
            loss=float(loss),
            logprobs=logprobs,
            n_tokens=sum(len(d.completion) for d in data),
            metrics=metrics,
        )

    def optim_step(self, learning_rate: float) -> dict[str, float]:
        params = self.types.AdamParams(
            learning_rate=learning_rate, grad_clip_norm=self.config.grad_clip_norm, **ADAM
        )
        response = _result(self.training.optim_step(params))
        self._sampler = None  # the next sample() uses the new weights (on-policy)
        metrics = getattr(response, "metrics", None) or {}
        return {k: float(v) for k, v in metrics.items()}

    # ------------------------------------------------------------------ sampling

    def sampler(self) -> Any:
        """A sampling client on the current weights (made again after every update)."""
        if self._sampler is None:
            self._sampler = _result(self.training.save_weights_and_get_sampling_client())
        return self._sampler

    def sample(
        self,
        prompts: Sequence[Any],
        n: int,
        *,
        max_tokens: int,
        temperature: float,
        seed: int,
    ) -> list[list[Completion]]:
        sampler = self.sampler()
        futures = [
            sampler.sample(
                prompt=prompt,
                num_samples=n,
                sampling_params=self.types.SamplingParams(
                    max_tokens=max_tokens,
                    temperature=temperature,
                    top_k=-1,  # no truncation: the policy itself
                    top_p=1.0,
                    seed=seed + i,
                    stop=[self.eos_id],
                ),
            )
            for i, prompt in enumerate(prompts)
        ]
        groups = []
        for future in futures:
            response = _result(future)
            group = []
            for seq in response.sequences:
                tokens = tuple(int(t) for t in seq.tokens)
                logprobs = _complete(seq.logprobs, len(tokens), "sampled")
                group.append(
                    Completion(
                        tokens=tokens,
                        logprobs=logprobs,
                        text=self.decode(tokens),
                        stopped=seq.stop_reason == "stop",
                    )
                )
            groups.append(group)
        return groups

    def logprobs(
        self, data: Sequence[Datum], *, reference: bool = False, temperature: float = 1.0
    ) -> list[list[float]]:
        _untempered(temperature)
        if reference:
            if self._reference is None:
                raise ConfigError("no KL reference: freeze_reference() or load_reference() first")
            client = self._reference
        else:
            client = self.sampler()
        futures = [
            client.compute_logprobs(
                d.prompt.append(self.types.EncodedTextChunk(tokens=list(d.completion)))
            )
            for d in data
        ]
        out = []
        for d, future in zip(data, futures, strict=True):
            values = _result(future)
            tail = values[len(values) - len(d.completion) :]
            out.append(list(_complete(tail, len(d.completion), "scored")))
        return out

    # ------------------------------------------------------------------ KL reference

    def freeze_reference(self, directory: Path) -> str:
        """Save the current weights for sampling; a sampler of them is the KL reference.

        Returns the ``tinker://`` path of the saved weights (also written to
        ``directory/tinker_path.txt``).
        """
        label = f"{Path(directory).parent.name}-{Path(directory).name}"
        response = _result(self.training.save_weights_for_sampler(name=label))
        path = str(response.path)
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "tinker_path.txt").write_text(path + "\n", encoding="utf-8")
        self.load_reference(path)
        return path

    def load_reference(self, ref: str) -> None:
        self._reference = _result(self.service.create_sampling_client(model_path=ref))

    # ------------------------------------------------------------------ checkpoints

    def save(self, directory: Path, name: str) -> str:
        """``save_state`` on Tinker; the returned ``tinker://`` path is also written locally."""
        label = f"{Path(directory).name}-{name}"
        response = _result(self.training.save_state(name=label))
        path = str(response.path)
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "tinker_path.txt").write_text(path + "\n", encoding="utf-8")
        return path

    def load(self, ref: str, *, optimizer: bool = True) -> None:
        """Continue from a ``tinker://`` state (weights, and optimizer unless told not to)."""
        if optimizer:
            future = self.service.create_training_client_from_state_with_optimizer(ref)
        else:
            future = self.service.create_training_client_from_state(ref)
        self.training = _result(future)
        self._sampler = None
