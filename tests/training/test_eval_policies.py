"""The policies on their own: Tinker (a stand-in client built from SDK types), local (the
tiny Qwen2.5-VL through the local training backend), and every argument error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from environments.blender_3d.dataset import Sample
from llm3d.exceptions import ConfigError
from tests.environments.chat_server import chat_server
from training.policies import (
    BackendPolicy,
    OpenAIPolicy,
    OraclePolicy,
    PolicyError,
    TinkerPolicy,
    local_policy,
    make_policy,
)


def png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()
PROGRAM = "from bpy_lib import *\n# part_1: top\nbox()\nexport_scene()\n"


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    views = []
    for name in ("front", "top"):
        path = tmp_path / f"{name}.png"
        path.write_bytes(PNG)
        views.append(path)
    messages = (
        {"role": "system", "content": [{"type": "text", "text": "REF"}]},
        {
            "role": "user",
            "content": [{"type": "image", "image": str(p)} for p in views]
            + [{"type": "text", "text": "Write it."}],
        },
    )
    return Sample("t-1", "table", "easy", 1, tuple(views), messages, code=PROGRAM)


class ByteTokenizer:
    """Bytes as token ids: enough to check what the prompt and the decoding hold."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert not add_special_tokens  # the template is laid out by hand
        return list(text.encode())

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode()


class StandInSampler:
    """Answers ``sample`` like a Tinker ``SamplingClient``: a future of a ``SampleResponse``."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls: list[dict[str, Any]] = []

    def sample(self, prompt: Any, num_samples: int, sampling_params: Any) -> Any:
        from concurrent.futures import Future

        from tinker import types

        self.calls.append({"prompt": prompt, "n": num_samples, "params": sampling_params})
        sequences = [
            types.SampledSequence(
                stop_reason="stop",
                sequence_id=f"s{i}",
                tokens_np=np.frombuffer(self.texts[i].encode(), dtype=np.uint8).astype(np.int32),
            )
            for i in range(num_samples)
        ]
        future: Future[Any] = Future()
        future.set_result(types.SampleResponse(sequences=sequences))
        return future


def test_tinker_policy_lays_out_the_qwen_prompt_with_image_chunks(sample: Sample) -> None:
    from tinker import types

    sampler = StandInSampler(["```python\n" + PROGRAM + "```", "no idea"])
    policy = TinkerPolicy(
        "Qwen/Qwen3-VL-30B-A3B-Instruct",
        tokenizer=ByteTokenizer(),
        sampling_client=sampler,
        temperature=0.3,
        max_tokens=64,
    )
    texts = policy.generate(sample, 2)
    assert texts == ["```python\n" + PROGRAM + "```", "no idea"]
    call = sampler.calls[0]
    assert call["n"] == 2
    assert call["params"].max_tokens == 64 and call["params"].temperature == 0.3
    assert call["params"].stop == ["<|im_end|>"]
    chunks = call["prompt"].chunks
    images = [c for c in chunks if isinstance(c, types.ImageChunk)]
    assert [c.data for c in images] == [PNG, PNG]
    text = "".join(
        bytes(c.tokens).decode() if isinstance(c, types.EncodedTextChunk) else "[IMG]"
        for c in chunks
    )
    assert text == (
        "<|im_start|>system\nREF<|im_end|>\n<|im_start|>user\n<|vision_start|>[IMG]"
        "<|vision_end|><|vision_start|>[IMG]<|vision_end|>Write it.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert policy.fingerprint.startswith("tinker:Qwen/Qwen3-VL-30B-A3B-Instruct:")


def test_tinker_policy_needs_a_key_or_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with pytest.raises(PolicyError, match="TINKER_API_KEY"):
        TinkerPolicy("Qwen/Qwen3-VL-30B-A3B-Instruct", tokenizer=ByteTokenizer())
    with pytest.raises(ConfigError, match="--model"):
        TinkerPolicy("", tokenizer=ByteTokenizer())


def test_local_policy_samples_the_tiny_model(tiny_model: Path, sample: Sample) -> None:
    from llm3d.config import load_config

    config = load_config(environ={}, training={"device": "cpu"})
    policy = local_policy(tiny_model, config=config, max_tokens=6, seed=3)
    first = policy.generate(sample, 2)
    assert len(first) == 2 and all(isinstance(t, str) for t in first)
    assert policy.generate(sample, 2) == first  # seeded
    assert str(tiny_model.resolve()) in policy.fingerprint


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_local_policy_samples_a_training_checkpoints_weights(
    lora_rank: int, tiny_model: Path, tmp_path: Path
) -> None:
    """``checkpoints/step-N/model`` holds only the trained weights: the policy puts them on
    the configured base model (it once read the folder as a model and sampled random
    weights, or with ``model_init: small`` built a random model into it)."""
    import torch

    from tests.training.conftest import make_config
    from training.backends.local import LocalBackend

    config = make_config(tiny_model, tmp_path, lora_rank=lora_rank)
    trained = LocalBackend(config.training)
    with torch.no_grad():
        for p in trained.params:
            p.add_(0.05 * torch.randn_like(p))
    folder = Path(trained.save(tmp_path / "step-000001", "model"))
    policy = local_policy(folder, config=config)
    loaded = policy.backend
    for (name, mine), (_, theirs) in zip(
        trained.model.named_parameters(), loaded.model.named_parameters(), strict=True
    ):
        assert torch.equal(mine, theirs), name
    assert not (folder / "config.json").exists(), "nothing written into the checkpoint"


def test_local_policy_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--checkpoint"):
        local_policy("")
    with pytest.raises(ConfigError, match="does not exist"):
        local_policy(tmp_path / "no-model")
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        BackendPolicy(object(), temperature=0.0)


def test_backend_policy_renders_and_samples_through_the_backend(sample: Sample) -> None:
    class Completion:
        def __init__(self, text: str) -> None:
            self.text = text

    class Backend:
        def render_prompt(self, messages: list[dict[str, Any]]) -> str:
            system = messages[0]["content"]
            return "PROMPT:" + (system if isinstance(system, str) else system[0]["text"])

        def sample(self, prompts: list[str], n: int, **kw: Any) -> list[list[Completion]]:
            self.kw = kw
            return [[Completion(f"{p}#{i}") for i in range(n)] for p in prompts]

    backend = Backend()
    policy = BackendPolicy(backend, name="sft", fingerprint="sft:step-10", max_tokens=9, seed=4)
    assert policy.generate(sample, 3) == ["PROMPT:REF#0", "PROMPT:REF#1", "PROMPT:REF#2"]
    assert backend.kw == {"max_tokens": 9, "temperature": 0.7, "seed": 4}
    assert policy.fingerprint == "sft:step-10"
    # the system message the model was trained with (training.system_prompt: short), not
    # the split's own reference: a model trained on the short one answered the long one
    # with garbage
    short = BackendPolicy(backend, system="SHORT", seed=4)
    assert short.generate(sample, 1) == ["PROMPT:SHORT#0"]


def test_openai_policy_errors_name_the_endpoint(sample: Sample) -> None:
    with pytest.raises(ConfigError, match="--base-url"):
        OpenAIPolicy("", "m")
    with pytest.raises(ConfigError, match="--model"):
        OpenAIPolicy("http://127.0.0.1:1/v1", "")
    with chat_server(lambda messages: "x") as server:
        wrong = OpenAIPolicy(server.base_url + "/nope", "m", retries=3)
        with pytest.raises(PolicyError, match="404"):
            wrong.generate(sample, 1)
        assert server.requests == []  # 4xx: not retried
    dead = OpenAIPolicy("http://127.0.0.1:9/v1", "m", retries=0, timeout=2)
    with pytest.raises(PolicyError, match="is the server running"):
        dead.generate(sample, 1)


def test_make_policy_by_name() -> None:
    assert isinstance(make_policy("oracle"), OraclePolicy)
    with pytest.raises(ConfigError, match="unknown policy 'gpt'"):
        make_policy("gpt")
    with pytest.raises(ConfigError, match="--train-split"):
        make_policy("retrieval")
    with pytest.raises(PolicyError, match="no sample with both images and a program"):
        make_policy("retrieval", train=lambda: [])


def test_oracle_needs_a_reference_program(sample: Sample) -> None:
    from dataclasses import replace

    assert OraclePolicy().generate(sample, 2) == ["```python\n" + PROGRAM.rstrip() + "\n```\n"] * 2
    with pytest.raises(PolicyError, match="no reference program"):
        OraclePolicy().generate(replace(sample, code=None), 1)
