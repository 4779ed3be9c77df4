"""The policies the evaluation runner can evaluate: two baselines and three model sources.

Every policy answers ``generate(sample, k) -> k completions`` (raw assistant text; the
program is extracted by :func:`llm3d.program.extract_code`) and has a
``fingerprint`` naming what produced them, which keys the runner's completions cache.

- ``oracle``: the dataset's own program. The ceiling the reward allows.
- ``constant``: the most common training program, whatever the views (the floor that
  shows whether a model reads its images at all).
- ``retrieval``: the program of the training sample whose views are nearest to the query's
  views by a cheap image descriptor (grey 16×16 thumbnails of every view, each centred and
  normalised). The floor a learned model must beat. ``k`` samples are the ``k`` nearest.
- ``openai``: any OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, hosted APIs); the
  images travel as ``image_url`` parts holding ``data:`` URLs.
- ``tinker``: a Tinker sampling client (the Tinker SDK) on a base model or a checkpoint.
- ``local``: a Qwen2.5-VL checkpoint on this machine, sampled through the ``local``
  training backend (:mod:`training.backends`; needs the ``training`` extra).
  :class:`BackendPolicy` wraps any training backend: SFT evaluates its weights with it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

from environments.blender_3d.dataset import Sample, openai_messages
from llm3d.exceptions import ConfigError, LLM3DError
from training.data import system_override, with_system

__all__ = [
    "POLICIES",
    "BackendPolicy",
    "ConstantPolicy",
    "OpenAIPolicy",
    "OraclePolicy",
    "Policy",
    "PolicyError",
    "RetrievalPolicy",
    "TinkerPolicy",
    "image_descriptor",
    "local_policy",
    "make_policy",
]

logger = logging.getLogger(__name__)

POLICIES = ("oracle", "constant", "retrieval", "openai", "tinker", "local")
THUMB = 16


class PolicyError(LLM3DError, RuntimeError):
    """A policy could not produce completions (endpoint down, model missing, bad arguments)."""


class Policy(Protocol):
    """What the evaluation runner needs of a policy."""

    name: str

    @property
    def fingerprint(self) -> str:
        """Identifies the policy and its settings: completions are cached under it."""
        ...

    def generate(self, sample: Sample, k: int) -> list[str]:
        """``k`` completions (assistant text) for ``sample``'s prompt."""
        ...


def _fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```\n"


class OraclePolicy:
    """The dataset's own program, ``k`` times (the same program scores the same)."""

    name = "oracle"
    fingerprint = "oracle"

    def generate(self, sample: Sample, k: int) -> list[str]:
        if not sample.code:
            raise PolicyError(
                f"oracle: task {sample.id!r} has no reference program (the split's rows need "
                "'code' or an assistant message)"
            )
        return [_fenced(sample.code)] * k


class ConstantPolicy:
    """One program for every task: the most common program of the training split.

    When several programs are equally common (generated parts are all distinct), the first
    of them in the split's order of the most common category is taken: the split is in
    curriculum order, so that is the simplest program of the commonest kind of object.

    Args:
        train: samples with programs (the training split).
    """

    name = "constant"

    def __init__(self, train: Sequence[Sample]) -> None:
        usable = [s for s in train if s.code]
        if not usable:
            raise PolicyError("constant: the training split has no sample with a program")
        programs = Counter(s.code for s in usable)
        top = max(programs.values())
        tied = [s for s in usable if programs[s.code] == top]
        category = Counter(s.category for s in tied).most_common(1)[0][0]
        chosen = next(s for s in tied if s.category == category)
        self.code: str = chosen.code or ""
        self.source_id = chosen.id
        self.count = top
        digest = hashlib.sha256(self.code.encode()).hexdigest()[:16]
        self.fingerprint = f"constant:{digest}"

    def generate(self, sample: Sample, k: int) -> list[str]:
        return [_fenced(self.code)] * k


def image_descriptor(paths: Sequence[str | Path]) -> npt.NDArray[np.float32]:
    """The retrieval descriptor of a set of views.

    Each view is read in grey, shrunk to 16×16 (area average), centred and scaled to unit
    length; the views are concatenated in order. The background is one flat grey in every
    rendering, so the thumbnails encode silhouette and shading.

    Returns:
        ``(len(paths) * 256,)`` float32.
    """
    from PIL import Image

    parts = []
    for path in paths:
        with Image.open(path) as image:
            grey = image.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX)
        v = np.asarray(grey, dtype=np.float32).ravel()
        v -= v.mean()
        norm = float(np.linalg.norm(v))
        parts.append(v / norm if norm > 0 else v)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class RetrievalPolicy:
    """The nearest training programs by :func:`image_descriptor` (Euclidean distance).

    Args:
        train: samples with images and programs (the training split).
        exclude_same_id: never retrieve a training sample with the query's id (leakage).
    """

    name = "retrieval"

    def __init__(self, train: Sequence[Sample], *, exclude_same_id: bool = True) -> None:
        usable = [s for s in train if s.code and s.images]
        if not usable:
            raise PolicyError(
                "retrieval: the training split has no sample with both images and a program"
            )
        self.train = usable
        self.exclude_same_id = exclude_same_id
        self.views = min(len(s.images) for s in usable)
        self.matrix = np.stack([image_descriptor(s.images[: self.views]) for s in usable])
        digest = hashlib.sha256()
        for s in usable:
            digest.update(s.id.encode())
            digest.update((s.code or "").encode())
        self.fingerprint = f"retrieval:{digest.hexdigest()[:16]}"

    def nearest(self, sample: Sample, k: int) -> list[tuple[Sample, float]]:
        """The ``k`` nearest training samples and their distances."""
        views = min(self.views, len(sample.images))
        query = image_descriptor(sample.images[:views])
        dims = views * THUMB * THUMB
        distances = np.linalg.norm(self.matrix[:, :dims] - query[None, :], axis=1)
        order = np.argsort(distances, kind="stable")
        found = [
            (self.train[i], float(distances[i]))
            for i in order
            if not (self.exclude_same_id and self.train[i].id == sample.id)
        ]
        if not found:
            raise PolicyError(f"retrieval: no training sample other than {sample.id!r}")
        return [found[i % len(found)] for i in range(k)]

    def generate(self, sample: Sample, k: int) -> list[str]:
        return [_fenced(s.code or "") for s, _ in self.nearest(sample, k)]


class OpenAIPolicy:
    """Any OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        base_url: e.g. ``http://127.0.0.1:8001/v1`` (vLLM, SGLang, Ollama) or a hosted API.
        model: the served model's name.
        api_key: default env ``OPENAI_API_KEY`` (``EMPTY`` when unset: local servers).
        temperature, top_p, max_tokens: sampling settings.
        seed: sent as ``seed`` (servers that honour it make runs repeatable).
        retries: extra attempts after connection errors, timeouts, 429 and 5xx.
        timeout: seconds per request.
        transport: an httpx transport (tests).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_tokens: int = 2048,
        seed: int | None = 0,
        retries: int = 3,
        timeout: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError("openai policy: give --base-url (e.g. http://127.0.0.1:8001/v1)")
        if not model:
            raise ConfigError("openai policy: give --model (the served model's name)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.seed = seed
        self.retries = retries
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {key}"},
            transport=transport,
        )
        self.fingerprint = (
            f"openai:{self.base_url}:{model}:t{temperature}:p{top_p}:m{max_tokens}:s{seed}"
        )

    def close(self) -> None:
        self._http.close()

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                response = self._http.post("/chat/completions", json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    data: dict[str, Any] = response.json()
                    return data
                last = f"{response.status_code}: {response.text[:300]}"
                if response.status_code != 429 and response.status_code < 500:
                    raise PolicyError(f"openai policy: {self.base_url}/chat/completions → {last}")
            if attempt < self.retries:
                time.sleep(min(2.0**attempt, 10.0))
        raise PolicyError(
            f"openai policy: {self.base_url}/chat/completions failed after "
            f"{self.retries + 1} attempts ({last}); is the server running?"
        )

    def generate(self, sample: Sample, k: int) -> list[str]:
        messages = openai_messages(sample.messages)
        texts: list[str] = []
        while len(texts) < k:
            body: dict[str, Any] = {
                "model": self.model,
                "messages": messages,
                "n": k - len(texts),
                **self.sampling,
            }
            if self.seed is not None:
                body["seed"] = self.seed + len(texts)
            choices = self._post(body).get("choices") or []
            if not choices:
                raise PolicyError(f"openai policy: no choices in the answer for {sample.id!r}")
            for choice in choices[: k - len(texts)]:
                content = (choice.get("message") or {}).get("content")
                texts.append(content if isinstance(content, str) else "")
        return texts


# Qwen chat template (Qwen2.5-VL and Qwen3-VL share it): the text around the images.
_IM_START, _IM_END = "<|im_start|>", "<|im_end|>"
_VISION_START, _VISION_END = "<|vision_start|>", "<|vision_end|>"


class TinkerPolicy:
    """A Tinker sampling client (``tinker.ServiceClient().create_sampling_client``).

    The prompt is laid out with the Qwen chat template: text chunks tokenized by
    ``tokenizer``, each image an ``ImageChunk`` (PNG bytes) between vision markers.

    Args:
        base_model: the Tinker base model (Qwen3-VL; Tinker does not serve Qwen2.5-VL).
        model_path: a ``tinker://`` checkpoint to sample from instead of the base model.
        tokenizer: has ``encode(text) -> list[int]`` and ``decode(ids) -> str`` (default:
            the sampling client's ``get_tokenizer()``).
        sampling_client: an existing sampling client (tests, or a trainer's live client).
        temperature, max_tokens, seed: sampling settings.
    """

    name = "tinker"

    def __init__(
        self,
        base_model: str,
        *,
        model_path: str | None = None,
        tokenizer: Any = None,
        sampling_client: Any = None,
        temperature: float = 0.7,
        max_tokens: int = 2048,
        seed: int | None = 0,
    ) -> None:
        if not base_model:
            raise ConfigError("tinker policy: give --model (a Tinker base model, e.g. Qwen3-VL)")
        try:
            import tinker
        except ImportError as exc:
            raise PolicyError("tinker policy: pip install 'llm3d[tinker]'") from exc
        self._types = tinker.types
        if sampling_client is None:
            if not os.environ.get("TINKER_API_KEY"):
                raise PolicyError("tinker policy: set TINKER_API_KEY (your Tinker API key)")
            service = tinker.ServiceClient()
            pending = service.create_sampling_client(
                base_model=None if model_path else base_model, model_path=model_path
            )
            # the SDK returns a future of the client (the bare future is deprecated as one)
            sampling_client = pending.result() if hasattr(pending, "result") else pending
        if tokenizer is None:
            # the served model's own tokenizer (the SDK loads it for its base model)
            tokenizer = sampling_client.get_tokenizer()
        self.client = sampling_client
        self.tokenizer = tokenizer
        self.params = tinker.types.SamplingParams(
            max_tokens=max_tokens, temperature=temperature, seed=seed, stop=[_IM_END]
        )
        self.fingerprint = f"tinker:{model_path or base_model}:t{temperature}:m{max_tokens}:s{seed}"

    def model_input(self, sample: Sample) -> Any:
        """The prompt as a ``tinker.types.ModelInput`` (text tokens and image chunks)."""
        types = self._types
        chunks: list[Any] = []
        pending = ""

        def flush() -> None:
            nonlocal pending
            if pending:
                ids = self.tokenizer.encode(pending, add_special_tokens=False)
                chunks.append(types.EncodedTextChunk(tokens=list(ids)))
                pending = ""

        for message in sample.messages:
            pending += f"{_IM_START}{message['role']}\n"
            content = message["content"]
            for part in (
                [{"type": "text", "text": content}] if isinstance(content, str) else content
            ):
                if part.get("type") == "image":
                    pending += _VISION_START
                    flush()
                    image = Path(part["image"])
                    data = (
                        image.read_bytes() if image.suffix.lower() == ".png" else _png_bytes(image)
                    )
                    chunks.append(types.ImageChunk(data=data, format="png"))
                    pending += _VISION_END
                else:
                    pending += str(part.get("text", ""))
            pending += f"{_IM_END}\n"
        pending += f"{_IM_START}assistant\n"
        flush()
        return types.ModelInput(chunks=chunks)

    def generate(self, sample: Sample, k: int) -> list[str]:
        future = self.client.sample(
            prompt=self.model_input(sample), num_samples=k, sampling_params=self.params
        )
        response = future.result() if hasattr(future, "result") else future
        return [
            str(self.tokenizer.decode(seq.tokens, skip_special_tokens=True))
            for seq in response.sequences
        ]


class BackendPolicy:
    """Samples from a training backend (:mod:`training.backends`: ``local`` or ``tinker``).

    The prompt is rendered by the backend exactly as in training. SFT evaluates its current
    weights with it: ``run_eval(settings, BackendPolicy(backend, fingerprint=f"sft:{step}"))``.

    Args:
        backend: has ``render_prompt(messages)`` and ``sample(prompts, n, max_tokens=,
            temperature=, seed=)`` returning completions with ``.text``.
        name: the policy's name in reports.
        fingerprint: what produced the completions (include the checkpoint or step: the
            completions cache is keyed by it).
        temperature: > 0 (the backends sample).
        system: replaces each prompt's system message, as training did
            (:func:`training.data.system_override` of ``training.system_prompt``); None
            keeps the split's own.
    """

    def __init__(
        self,
        backend: Any,
        *,
        name: str = "local",
        fingerprint: str | None = None,
        temperature: float = 0.7,
        max_tokens: int = 2048,
        seed: int = 0,
        system: str | None = None,
    ) -> None:
        if temperature <= 0:
            raise ConfigError(
                f"{name} policy: temperature must be > 0 (the backend samples), got {temperature}"
            )
        self.backend = backend
        self.name = name
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.system = system
        self.fingerprint = (
            fingerprint or f"{name}:{id(backend)}:t{temperature}:m{max_tokens}:s{seed}"
        )
        self._lock = threading.Lock()

    def generate(self, sample: Sample, k: int) -> list[str]:
        # one backend, one model: the runner may call generate() from several threads
        with self._lock:
            prompt = self.backend.render_prompt(with_system(sample.messages, self.system))
            (group,) = self.backend.sample(
                [prompt],
                k,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                seed=self.seed,
            )
        return [str(c.text) for c in group]


def local_policy(
    checkpoint: str | Path,
    *,
    config: Any = None,
    temperature: float = 0.7,
    max_tokens: int = 2048,
    seed: int = 0,
) -> BackendPolicy:
    """A Qwen2.5-VL checkpoint on this machine, through the ``local`` training backend.

    Args:
        checkpoint: a model folder (``save_pretrained``), a hub id already downloaded, or
            the ``model`` folder of a training checkpoint (``checkpoints/step-N/model``: the
            trained weights, full or LoRA, which are loaded onto ``training.base_model``).
        config: the llm3d configuration (its ``training`` section: device, image pixels,
            and for a training checkpoint its base model and LoRA settings).

    Raises:
        ConfigError: when no checkpoint is given or the folder does not exist.
        PolicyError: when torch/transformers/peft are not installed.
    """
    if not checkpoint:
        raise ConfigError("local policy: give --checkpoint (a Qwen2.5-VL model folder)")
    text = str(checkpoint)
    if not Path(text).exists() and (text.startswith((".", "/")) or text.count("/") != 1):
        raise ConfigError(
            f"local policy: checkpoint {text} does not exist (a model folder, or a hub id "
            "like Qwen/Qwen2.5-VL-7B-Instruct already downloaded)"
        )
    from llm3d.config import load_config

    config = config or load_config()
    from training.backends.local import FULL_WEIGHTS, LORA_WEIGHTS

    # a training checkpoint holds only the trained weights: they go onto the configured base
    # model (loading the folder as a model would build or read other weights)
    trained = any((Path(text) / name).is_file() for name in (FULL_WEIGHTS, LORA_WEIGHTS))
    update = {"backend": "local"} if trained else {"backend": "local", "base_model": text}
    training = config.training.model_copy(update=update)
    try:
        from training.backends import make_backend

        backend = make_backend(config.model_copy(update={"training": training}))
    except ImportError as exc:
        raise PolicyError(
            "local policy needs torch, transformers and peft: pip install torch==2.13.0 "
            "'llm3d[training]'"
        ) from exc
    if trained:
        backend.load(text, optimizer=False)
    resolved = Path(text).resolve() if Path(text).exists() else text
    system = system_override(config.training.system_prompt)
    return BackendPolicy(
        backend,
        name="local",
        fingerprint=(
            f"local:{resolved}:t{temperature}:m{max_tokens}:s{seed}:{config.training.system_prompt}"
        ),
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        system=system,
    )


def make_policy(
    name: str,
    *,
    train: Callable[[], Sequence[Sample]] | None = None,
    base_url: str | None = None,
    model: str | None = None,
    checkpoint: str | None = None,
    temperature: float = 0.7,
    max_tokens: int = 2048,
    seed: int = 0,
    config: Any = None,
) -> Policy:
    """Build a policy by name (the ``--policy`` of ``llm3d eval``).

    Args:
        name: one of :data:`POLICIES`.
        train: returns the training samples (``constant``, ``retrieval``; called lazily).
        base_url, model: the endpoint and model (``openai``; ``model`` for ``tinker``).
        checkpoint: ``local``: a model folder; ``tinker``: a ``tinker://`` checkpoint.
        config: the llm3d configuration (``local``: its ``training`` section).

    Raises:
        ConfigError: for an unknown name or a missing argument.
    """
    if name == "oracle":
        return OraclePolicy()
    if name == "constant":
        if train is None:
            raise ConfigError("constant policy: give the training split (--train-split)")
        return ConstantPolicy(train())
    if name == "retrieval":
        if train is None:
            raise ConfigError("retrieval policy: give the training split (--train-split)")
        return RetrievalPolicy(train())
    if name == "openai":
        return OpenAIPolicy(
            base_url or "",
            model or "",
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
        )
    if name == "tinker":
        return TinkerPolicy(
            model or "",
            model_path=checkpoint,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
        )
    if name == "local":
        return local_policy(
            checkpoint or "",
            config=config,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
        )
    raise ConfigError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")


def _png_bytes(path: str | Path) -> bytes:
    """The image re-encoded as PNG (Tinker image chunks are PNG or JPEG)."""
    from PIL import Image

    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
