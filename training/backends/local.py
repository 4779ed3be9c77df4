"""The ``local`` backend: torch + transformers + peft on this machine's GPU (or CPU).

Qwen2.5-VL-7B-Instruct as in the seed (any ``Qwen2_5_VLForConditionalGeneration``
checkpoint: a hub id in the cache or a folder, e.g. the tiny one of
:mod:`training.tiny`), LoRA adapters on the language model's attention and MLP
projections (rank, alpha, targets from config; the vision tower stays frozen), bf16 where
the GPU has it, gradient checkpointing, AdamW. ``training.lora_rank: 0`` trains every
weight instead (a small model from scratch, ``configs/small_cpu.yaml``): checkpoints and
the KL reference then hold all weights by parameter name (``model_weights.safetensors``). The losses are those of
:mod:`training.backends.base`, computed in torch.

The policy is one function, :func:`policy_logprobs`: ``log_softmax(logits / T)`` with the
image placeholder tokens masked out (a completion holding one would be read as an image).
Sampling draws from it (a logits processor that also records each drawn token's
log-prob, so only ``sequences × vocabulary`` floats of one step are ever held, never
``× tokens``) and training, the KL reference and the held-out NLL compute it: sampled and
recomputed log-probs agree. The checkpoint's own ``generation_config`` (Qwen ships
``repetition_penalty``, ``top_k``, ``top_p``, ``temperature``) is replaced by a neutral one:
transformers fills every sampling field left unset from it, which would sample another
distribution than the one trained.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm3d.chat import is_image_part
from llm3d.config import TrainingConfig
from llm3d.exceptions import ConfigError, TrainingBackendError
from training.backends.base import Completion, Datum, LossFn, StepResult

__all__ = ["LocalBackend", "LocalPrompt", "policy_logprobs"]

logger = logging.getLogger(__name__)

Message = dict[str, Any]
ADAM_BETAS = (0.9, 0.95)  # Tinker's defaults, so both backends take the same steps
ADAM_EPS = 1e-8
LORA_WEIGHTS = "adapter_model.safetensors"  # peft's name
FULL_WEIGHTS = "model_weights.safetensors"  # lora_rank 0: every weight, by parameter name
VISION_TOKENS = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def _import(name: str) -> Any:
    """torch / transformers / peft, imported when used (typed loosely: their stubs vary)."""
    return importlib.import_module(name)


@dataclass(frozen=True, eq=False)
class LocalPrompt:
    """A rendered prompt: token ids (image pads expanded) and the images' pixels."""

    input_ids: tuple[int, ...]
    mm_token_type_ids: tuple[int, ...] | None
    pixel_values: Any  # torch.Tensor (patches, dim) or None
    image_grid_thw: Any  # torch.Tensor (images, 3) or None

    def __len__(self) -> int:
        return len(self.input_ids)


def _image_paths(messages: Sequence[Message]) -> list[str]:
    paths: list[str] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            continue
        paths.extend(str(p["image"]) for p in content if is_image_part(p))
    return paths


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def policy_logprobs(logits: Any, temperature: float, masked: Sequence[int]) -> Any:
    """The policy's log-probs: ``log_softmax(logits / temperature)``, ``masked`` ids at -inf.

    Parameters
    ----------
    logits : (..., vocab) float tensor
        The model's raw next-token logits.
    temperature : float
        > 0; the sampling temperature (1: the model's own distribution).
    masked : sequence of int
        Token ids the policy never emits (the image placeholders).

    Returns
    -------
    (..., vocab) float32 tensor
    """
    torch = _import("torch")

    scores = logits.float()
    if masked:
        scores = scores.index_fill(-1, torch.tensor(list(masked), device=scores.device), -torch.inf)
    if temperature != 1.0:
        scores = scores / temperature
    return torch.log_softmax(scores, dim=-1)


class _PolicySampler:
    """A logits processor that makes ``generate`` draw from :func:`policy_logprobs` and
    records the log-prob of every drawn token, holding one step's distribution at a time.

    ``generate`` calls it once a new token: by the next call that token is the last of
    ``input_ids``, so its log-prob is read from the distribution kept from the call before;
    :meth:`finish` reads the last one from the returned sequences.
    """

    def __init__(self, temperature: float, masked: Sequence[int]) -> None:
        self.temperature = temperature
        self.masked = list(masked)
        self.previous: Any = None
        self.chosen: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.previous is not None:
            self.chosen.append(self.previous.gather(1, input_ids[:, -1:])[:, 0])
        self.previous = policy_logprobs(scores, self.temperature, self.masked)
        return self.previous

    def finish(self, last_tokens: Any) -> Any:
        """(sequences, new tokens) log-probs, given the last drawn token of each sequence."""
        torch = _import("torch")

        if self.previous is not None:
            self.chosen.append(self.previous.gather(1, last_tokens[:, None])[:, 0])
            self.previous = None
        return torch.stack(self.chosen, dim=1) if self.chosen else torch.zeros(0)


class LocalBackend:
    """Train and sample a Qwen2.5-VL with LoRA (or in full: ``lora_rank`` 0) in this process.

    Args:
        config: the ``training`` section (``base_model``, ``lora_*``, ``micro_batch_size``...).
        seed: seeds the LoRA initialisation.
    """

    name = "local"
    tempered_training = True

    def __init__(self, config: TrainingConfig, *, seed: int = 0) -> None:
        from training.backends.qwen import load_processor

        torch = _import("torch")
        peft = _import("peft")
        transformers = _import("transformers")

        self.config = config
        self.device = torch.device(
            config.device
            if config.device != "auto"
            else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        use_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if use_bf16 else torch.float32
        image_kwargs = {
            k: v
            for k, v in (
                ("min_pixels", config.image_min_pixels),
                ("max_pixels", config.image_max_pixels),
            )
            if v is not None
        }
        try:
            self.processor = load_processor(config.base_model, **image_kwargs)
            base = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
                config.base_model, dtype=self.dtype
            )
        except OSError as exc:
            raise ConfigError(
                f"training.base_model = {config.base_model!r} could not be loaded ({exc}); give "
                "a Qwen2.5-VL folder or a hub id already downloaded, or use --tiny"
            ) from exc
        self.tokenizer = self.processor.tokenizer
        self.eos_id = int(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_id)
        # never sampled: a completion holding an image placeholder would be read as an image
        self.vision_ids = [
            int(self.tokenizer.convert_tokens_to_ids(t))
            for t in VISION_TOKENS
            if self.tokenizer.convert_tokens_to_ids(t) is not None
        ]
        self._neutral_generation_config(base, transformers)
        base.to(self.device)
        if config.gradient_checkpointing:
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        torch.manual_seed(seed)
        self.full = config.lora_rank == 0
        if self.full:
            # lora_rank 0: every weight is trained (a small model from scratch)
            self.model = base
        else:
            targets = "|".join(re.escape(t) for t in config.lora_targets)
            lora = peft.LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                lora_dropout=0.0,
                # the language model only: the vision tower's MLP has the same names
                target_modules=rf".*language_model.*\.({targets})",
            )
            self.model = peft.get_peft_model(base, lora)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError(f"no LoRA target matched training.lora_targets={config.lora_targets}")
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0
        )
        self._reference: dict[str, Any] | None = None
        logger.info(
            "local backend: %s on %s (%s), %d trainable %s parameters",
            config.base_model,
            self.device,
            self.dtype,
            sum(p.numel() for p in self.params),
            "(all)" if self.full else "LoRA",
        )

    def _neutral_generation_config(self, base: Any, transformers: Any) -> None:
        """Replace the checkpoint's generation settings: only our config decides sampling."""
        neutral = transformers.GenerationConfig(eos_token_id=self.eos_id, pad_token_id=self.pad_id)
        mine = base.generation_config.to_diff_dict()
        dropped = {
            k: v
            for k, v in mine.items()
            if k not in ("eos_token_id", "pad_token_id", "bos_token_id", "transformers_version")
        }
        if dropped:
            logger.info("ignoring the checkpoint's generation settings %s", dropped)
        base.generation_config = neutral

    # ------------------------------------------------------------------ rendering

    def render_prompt(self, messages: Sequence[Message]) -> LocalPrompt:
        """Chat template + image processor; image pads expanded to their patch count."""
        from PIL import Image

        text = self.processor.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        images = []
        for path in _image_paths(messages):
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        encoded = self.processor(text=[text], images=images or None, return_tensors="pt")
        mm = encoded.get("mm_token_type_ids")
        return LocalPrompt(
            input_ids=tuple(int(t) for t in encoded["input_ids"][0]),
            mm_token_type_ids=tuple(int(t) for t in mm[0]) if mm is not None else None,
            pixel_values=encoded.get("pixel_values"),
            image_grid_thw=encoded.get("image_grid_thw"),
        )

    def encode_completion(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [*ids, self.eos_id]

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(tokens), skip_special_tokens=True))

    def prompt_length(self, prompt: LocalPrompt) -> int:
        return len(prompt)

    # ------------------------------------------------------------------ forward

    def _batch(self, data: Sequence[Datum], *, left_pad: bool = False) -> dict[str, Any]:
        torch = _import("torch")

        vision = set(self.vision_ids)
        if any(vision.intersection(d.completion) for d in data):
            raise ValueError(
                "a completion contains an image placeholder token (<|image_pad|>, ...): "
                "only prompts may hold images"
            )
        rows = [(list(d.prompt.input_ids) + list(d.completion), d) for d in data]
        width = max(len(r) for r, _ in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        mm = torch.zeros((len(rows), width), dtype=torch.long)
        pixels, grids = [], []
        for i, (row, d) in enumerate(rows):
            sl = slice(width - len(row), width) if left_pad else slice(0, len(row))
            ids[i, sl] = torch.tensor(row)
            mask[i, sl] = 1
            if d.prompt.mm_token_type_ids is not None:
                types = list(d.prompt.mm_token_type_ids) + [0] * len(d.completion)
                mm[i, sl] = torch.tensor(types)
            if d.prompt.pixel_values is not None:
                pixels.append(d.prompt.pixel_values)
                grids.append(d.prompt.image_grid_thw)
        batch: dict[str, Any] = {
            "input_ids": ids.to(self.device),
            "attention_mask": mask.to(self.device),
        }
        if any(d.prompt.mm_token_type_ids is not None for d in data):
            batch["mm_token_type_ids"] = mm.to(self.device)
        if pixels:
            batch["pixel_values"] = torch.cat(pixels).to(self.device, self.dtype)
            batch["image_grid_thw"] = torch.cat(grids).to(self.device)
        return batch

    def _completion_logprobs(self, data: Sequence[Datum], temperature: float) -> list[Any]:
        """Per datum, a tensor of the completion tokens' log-probs (with grad if enabled)."""
        torch = _import("torch")

        batch = self._batch(data)
        logits = self.model(**batch).logits
        out = []
        for i, d in enumerate(data):
            p, c = len(d.prompt), len(d.completion)
            rows = policy_logprobs(logits[i, p - 1 : p + c - 1], temperature, self.vision_ids)
            target = torch.tensor(d.completion, device=rows.device)
            out.append(rows.gather(1, target[:, None])[:, 0])
        return out

    def logprobs(
        self, data: Sequence[Datum], *, reference: bool = False, temperature: float = 1.0
    ) -> list[list[float]]:
        torch = _import("torch")

        result: list[list[float]] = []
        self.model.eval()
        with torch.no_grad(), self._reference_weights(reference):
            for chunk in _chunks(data, self.config.micro_batch_size):
                result.extend(t.tolist() for t in self._completion_logprobs(chunk, temperature))
        return result

    # ------------------------------------------------------------------ KL reference

    @property
    def weights_file(self) -> str:
        """The file of a checkpoint folder holding the trained weights."""
        return FULL_WEIGHTS if self.full else LORA_WEIGHTS

    def _adapter_state(self) -> dict[str, Any]:
        """A copy of the trained weights: the LoRA adapter, or every weight (``lora_rank 0``)."""
        if self.full:
            return {n: p.detach().clone() for n, p in self.model.named_parameters()}
        state: dict[str, Any] = _import("peft").get_peft_model_state_dict(self.model)
        return {k: v.detach().clone() for k, v in state.items()}

    def _set_state(self, state: dict[str, Any], source: str) -> None:
        """Load what :meth:`_adapter_state` returned (or a checkpoint's file of it)."""
        if not self.full:
            result = _import("peft").set_peft_model_state_dict(self.model, state)
            unexpected = list(getattr(result, "unexpected_keys", None) or [])
        else:
            torch = _import("torch")

            params = dict(self.model.named_parameters())
            unexpected = sorted(set(state) ^ set(params))
            if not unexpected:
                with torch.no_grad():
                    for name, param in params.items():
                        param.copy_(state[name])
        if unexpected:
            raise ConfigError(f"checkpoint {source} does not fit this model: {unexpected[:3]}")

    def _write_state(self, path: Path) -> None:
        """The trained weights into the folder ``path`` (``weights_file`` and, for LoRA,
        the adapter's config)."""
        if self.full:
            save_file = _import("safetensors.torch").save_file
            save_file(
                {k: v.contiguous() for k, v in self._adapter_state().items()},
                str(path / FULL_WEIGHTS),
            )
        else:
            self.model.save_pretrained(str(path))

    @contextlib.contextmanager
    def _reference_weights(self, reference: bool) -> Iterator[None]:
        """The frozen reference's adapter swapped in (and the policy's back afterwards)."""
        if not reference:
            yield
            return
        if self._reference is None:
            raise ConfigError("no KL reference: freeze_reference() or load_reference() first")
        policy = self._adapter_state()
        self._set_state(self._reference, "reference")
        try:
            yield
        finally:
            self._set_state(policy, "policy")

    def freeze_reference(self, directory: Path) -> str:
        """The current adapter as the KL reference, kept in memory and saved in ``directory``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._write_state(path)
        self._reference = self._adapter_state()
        return str(path)

    def load_reference(self, ref: str) -> None:
        load_file = _import("safetensors.torch").load_file

        weights = Path(ref) / self.weights_file
        if not weights.is_file():
            raise ConfigError(f"no KL reference at {ref} (expected {weights.name})")
        self._reference = load_file(str(weights), device=str(self.device))

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFn,
        *,
        clip_low: float = 0.2,
        clip_high: float = 0.2,
        temperature: float = 1.0,
    ) -> StepResult:
        torch = _import("torch")

        self.model.train()
        total, clipped, n_tokens = 0.0, 0.0, 0
        logprobs: list[list[float]] = []
        for chunk in _chunks(data, self.config.micro_batch_size):
            lps = self._completion_logprobs(chunk, temperature)
            loss = torch.zeros((), device=self.device)
            for d, lp in zip(chunk, lps, strict=True):
                logprobs.append(lp.detach().tolist())
                n_tokens += len(d.completion)
                if loss_fn == "cross_entropy":
                    if d.weights is None:
                        raise ValueError("cross_entropy needs Datum.weights")
                    w = torch.tensor(d.weights, device=lp.device)
                    loss = loss - (w * lp).sum()
                    continue
                if d.advantages is None or d.sampling_logprobs is None:
                    raise ValueError(f"{loss_fn} needs Datum.advantages and sampling_logprobs")
                adv = torch.tensor(d.advantages, device=lp.device)
                old = torch.tensor(d.sampling_logprobs, device=lp.device)
                ratio = torch.exp(lp - old)
                if loss_fn == "ppo":
                    bounded = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
                    loss = loss - torch.minimum(ratio * adv, bounded * adv).sum()
                    # the clipped term is the min (and has no gradient) only where it is lower
                    clipped += float((bounded * adv < ratio * adv).sum())
                else:
                    loss = loss - (ratio * adv).sum()
            loss.backward()
            total += float(loss.detach())
        metrics = {"clip_fraction": clipped / max(n_tokens, 1)} if loss_fn == "ppo" else {}
        return StepResult(loss=total, logprobs=logprobs, n_tokens=n_tokens, metrics=metrics)

    def optim_step(self, learning_rate: float) -> dict[str, float]:
        torch = _import("torch")

        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        clip = self.config.grad_clip_norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": float(norm)}

    # ------------------------------------------------------------------ sampling

    def sample(
        self,
        prompts: Sequence[LocalPrompt],
        n: int,
        *,
        max_tokens: int,
        temperature: float,
        seed: int,
    ) -> list[list[Completion]]:
        """``n`` completions a prompt (``generate`` on left-padded prompt batches), drawn
        from :func:`policy_logprobs` at ``temperature`` with each token's log-prob."""
        torch = _import("torch")
        transformers = _import("transformers")
        # every sampling field set: generate() fills unset ones from the model's config
        gen = transformers.GenerationConfig(
            do_sample=True,
            temperature=1.0,  # the policy sampler divides by the temperature itself
            top_k=0,
            top_p=1.0,
            min_p=None,
            typical_p=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            max_new_tokens=max_tokens,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
            num_return_sequences=n,
            return_dict_in_generate=True,
        )
        per_call = max(1, self.config.sampling_batch_size // n)
        torch.manual_seed(seed)
        self.model.eval()
        results: list[list[Completion]] = []
        with torch.no_grad():
            for chunk in _chunks(prompts, per_call):
                data = [Datum(prompt=p, completion=()) for p in chunk]
                batch = self._batch(data, left_pad=True)
                width = batch["input_ids"].shape[1]
                policy = _PolicySampler(temperature, self.vision_ids)
                out = self.model.generate(
                    **batch,
                    generation_config=gen,
                    logits_processor=transformers.LogitsProcessorList([policy]),
                )
                new = out.sequences[:, width:]
                chosen = policy.finish(new[:, -1]).cpu() if new.shape[1] else None
                tokens = new.cpu()
                for j in range(len(chunk)):
                    group = []
                    for k in range(j * n, (j + 1) * n):
                        row = tokens[k].tolist()
                        stopped = self.eos_id in row
                        end = row.index(self.eos_id) + 1 if stopped else len(row)
                        ids = tuple(row[:end])
                        lps = chosen[k, :end] if chosen is not None else torch.zeros(0)
                        if not bool(torch.isfinite(lps).all()):
                            raise TrainingBackendError(
                                "a sampled token has probability 0 under the policy: something "
                                "besides the policy shaped the sampling distribution"
                            )
                        group.append(
                            Completion(
                                tokens=ids,
                                logprobs=tuple(lps.tolist()),
                                text=self.decode(ids),
                                stopped=stopped,
                            )
                        )
                    results.append(group)
        return results

    # ------------------------------------------------------------------ checkpoints

    def save(self, directory: Path, name: str) -> str:
        torch = _import("torch")

        path = Path(directory) / name
        path.mkdir(parents=True, exist_ok=True)
        self._write_state(path)
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        return str(path)

    def load(self, ref: str, *, optimizer: bool = True) -> None:
        torch = _import("torch")
        load_file = _import("safetensors.torch").load_file

        path = Path(ref)
        weights = path / self.weights_file
        if not weights.is_file():
            kind = "full-model" if self.full else "LoRA"
            raise ConfigError(f"no {kind} checkpoint at {path} (expected {weights.name})")
        self._set_state(load_file(str(weights), device=str(self.device)), str(path))
        state_file = path / "optimizer.pt"
        if optimizer and state_file.is_file():
            self.optimizer.load_state_dict(torch.load(state_file, map_location=self.device))
