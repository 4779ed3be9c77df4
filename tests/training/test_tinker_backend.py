"""The Tinker backend against a stand-in service built from the SDK's own types.

The stand-in records every request and answers with SDK response objects, so the tests
check what the backend sends (datums, image chunks, loss inputs, Adam parameters, sampling
parameters) and that it reads the answers correctly. No network, no API key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tinker = pytest.importorskip("tinker", reason="the tinker extra is needed")
from tinker import types  # noqa: E402

from llm3d.exceptions import ConfigError, TrainingBackendError  # noqa: E402
from tests.training.conftest import make_config  # noqa: E402
from training.backends.base import Datum  # noqa: E402
from training.backends.tinker import TinkerBackend  # noqa: E402
from training.data import load_examples  # noqa: E402
from training.rl_trainer import GRPOTrainer  # noqa: E402
from training.runlog import read_state, write_state  # noqa: E402
from training.sft_trainer import SFTTrainer  # noqa: E402

BASE = "Qwen/Qwen3-VL-30B-A3B-Instruct"
SERVED = [BASE, "Qwen/Qwen3-VL-235B-A22B-Instruct", "Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B"]


@dataclass
class Done:
    """An already-resolved SDK future."""

    value: Any

    def result(self) -> Any:
        return self.value


@dataclass
class StandInSampler:
    version: int
    calls: list[tuple[str, Any]] = field(default_factory=list)
    with_logprobs: bool = True

    def sample(
        self, prompt: types.ModelInput, num_samples: int, sampling_params: types.SamplingParams
    ) -> Done:
        self.calls.append(("sample", (prompt, num_samples, sampling_params)))
        sequences = [
            types.SampledSequence(
                stop_reason="stop" if i % 2 == 0 else "length",
                sequence_id=f"s{i}",
                tokens_np=np.array([40 + i, 41, 7], dtype=np.int32),
                logprobs_np=np.array([-0.5, -1.0, -0.25], dtype=np.float32)
                if self.with_logprobs
                else None,
            )
            for i in range(num_samples)
        ]
        return Done(types.SampleResponse(sequences=sequences))

    def compute_logprobs(self, prompt: types.ModelInput) -> Done:
        self.calls.append(("compute_logprobs", prompt))
        if not self.with_logprobs:
            return Done([None] * prompt.length)
        return Done([None] + [-0.1 * self.version - 1.0] * (prompt.length - 1))


@dataclass
class StandInTraining:
    tokenizer: Any
    calls: list[tuple[str, Any]] = field(default_factory=list)
    version: int = 0

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def forward_backward(
        self, data: list[types.Datum], loss_fn: str, loss_fn_config: Any = None
    ) -> Done:
        self.calls.append(("forward_backward", (data, loss_fn, loss_fn_config)))
        outputs = [
            {
                "logprobs": types.TensorData.from_numpy(
                    np.linspace(-1.0, -2.0, d.model_input.length, dtype=np.float32)
                )
            }
            for d in data
        ]
        return Done(
            types.ForwardBackwardOutput(
                loss_fn_output_type="ArrayRecord",
                loss_fn_outputs=outputs,
                metrics={"loss:sum": 3.5},
            )
        )

    def optim_step(self, params: types.AdamParams) -> Done:
        self.calls.append(("optim_step", params))
        self.version += 1
        return Done(types.OptimStepResponse(metrics={"grad_norm": 0.5}))

    def save_weights_and_get_sampling_client(self) -> Done:
        self.calls.append(("sampling_client", self.version))
        return Done(StandInSampler(self.version))

    def save_state(self, name: str) -> Done:
        self.calls.append(("save_state", name))
        return Done(types.SaveWeightsResponse(path=f"tinker://run-1/weights/{name}"))

    def save_weights_for_sampler(self, name: str) -> Done:
        self.calls.append(("save_weights_for_sampler", name))
        path = f"tinker://run-1/sampler_weights/{name}"
        return Done(types.SaveWeightsForSamplerResponse(path=path))


@dataclass
class StandInService:
    tokenizer: Any
    models: list[str] = field(default_factory=lambda: list(SERVED))
    calls: list[tuple[str, Any]] = field(default_factory=list)
    trainings: list[StandInTraining] = field(default_factory=list)

    def get_server_capabilities(self) -> types.GetServerCapabilitiesResponse:
        return types.GetServerCapabilitiesResponse(
            supported_models=[types.SupportedModel(model_name=m) for m in self.models]
        )

    def create_lora_training_client(self, base_model: str, rank: int, seed: int) -> Done:
        self.calls.append(("create_lora_training_client", (base_model, rank, seed)))
        self.trainings.append(StandInTraining(self.tokenizer))
        return Done(self.trainings[-1])

    def create_training_client_from_state_with_optimizer(self, path: str) -> Done:
        self.calls.append(("from_state", path))
        self.trainings.append(StandInTraining(self.tokenizer))
        return Done(self.trainings[-1])

    def create_training_client_from_state(self, path: str) -> Done:
        self.calls.append(("weights_from_state", path))
        self.trainings.append(StandInTraining(self.tokenizer))
        return Done(self.trainings[-1])

    def create_sampling_client(
        self, model_path: str | None = None, base_model: str | None = None
    ) -> Done:
        self.calls.append(("sampling_client", model_path or base_model))
        return Done(StandInSampler(-10))


@pytest.fixture
def parts(tiny_model: Path) -> tuple[Any, Any]:
    from training.backends.qwen import load_processor

    processor = load_processor(tiny_model)
    return processor.tokenizer, processor.image_processor


def _backend(
    parts: tuple[Any, Any], tmp_path: Path, **training: Any
) -> tuple[TinkerBackend, StandInService]:
    tokenizer, image_processor = parts
    values = {"lora_rank": 16, **training}
    config = make_config(
        Path("unused"), tmp_path, backend="tinker", tinker_base_model=BASE, **values
    )
    service = StandInService(tokenizer)
    backend = TinkerBackend(
        config.training,
        seed=7,
        service_client=service,
        tokenizer=tokenizer,
        image_processor=image_processor,
    )
    return backend, service


def test_unserved_base_model_names_the_alternatives(parts: tuple[Any, Any], tmp_path: Path) -> None:
    tokenizer, image_processor = parts
    config = make_config(
        Path("unused"), tmp_path, backend="tinker", tinker_base_model="Qwen/Qwen2.5-VL-7B-Instruct"
    )
    with pytest.raises(ConfigError) as info:
        TinkerBackend(
            config.training,
            service_client=StandInService(tokenizer),
            tokenizer=tokenizer,
            image_processor=image_processor,
        )
    message = str(info.value)
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in message and "training.backend=local" in message
    assert BASE in message and "Qwen/Qwen3-VL-235B-A22B-Instruct" in message
    assert "training.tinker_base_model" in message


def test_full_fine_tuning_is_refused(parts: tuple[Any, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lora_rank=0"):
        _backend(parts, tmp_path, lora_rank=0)


def test_prompt_has_image_chunks_with_the_processors_token_counts(
    parts: tuple[Any, Any], dataset: Path, tmp_path: Path, tiny_model: Path
) -> None:
    backend, service = _backend(parts, tmp_path)
    assert service.calls == [("create_lora_training_client", (BASE, 16, 7))]
    example = load_examples(dataset)[0]
    prompt = backend.render_prompt(example.prompt)

    kinds = [type(c).__name__ for c in prompt.chunks]
    assert kinds == [
        "EncodedTextChunk",
        "ImageChunk",
        "EncodedTextChunk",
        "ImageChunk",
        "EncodedTextChunk",
    ]
    images = [c for c in prompt.chunks if isinstance(c, types.ImageChunk)]
    assert [c.data for c in images] == [p.read_bytes() for p in example.images]
    assert all(c.format == "png" for c in images)
    # the same count of image tokens as the Qwen processor expands for these images
    from training.backends.local import LocalBackend

    local = LocalBackend(make_config(tiny_model, tmp_path).training)
    pads = local.render_prompt(example.prompt).input_ids.count(
        local.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    )
    assert sum(c.expected_tokens or 0 for c in images) == pads
    text = [
        backend.tokenizer.decode(list(c.tokens))
        for c in prompt.chunks
        if isinstance(c, types.EncodedTextChunk)
    ]
    assert text[0].startswith("<|im_start|>system\n") and text[0].endswith("<|vision_start|>")
    assert text[1] == "<|vision_end|><|vision_start|>"
    assert text[2].endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert backend.prompt_length(prompt) == prompt.length


def test_datums_follow_the_sdk_layout_for_both_losses(
    parts: tuple[Any, Any], dataset: Path, tmp_path: Path
) -> None:
    backend, service = _backend(parts, tmp_path)
    example = load_examples(dataset)[0]
    prompt = backend.render_prompt(example.prompt)
    completion = tuple(backend.encode_completion("box(size=[1, 1, 1])"))
    n, p = len(completion), prompt.length

    sft = backend.to_datum(Datum(prompt, completion, weights=(0.5,) * n), "cross_entropy")
    assert sft.model_input.length == p + n - 1
    assert sft.model_input.chunks[-1].tokens == list(completion[:-1])
    target = sft.loss_fn_inputs["target_tokens"]
    assert target.dtype == "int64" and target.data == [0] * (p - 1) + list(completion)
    assert sft.loss_fn_inputs["weights"].data == [0.0] * (p - 1) + [0.5] * n
    assert set(sft.loss_fn_inputs) == {"target_tokens", "weights"}

    rl = backend.to_datum(
        Datum(prompt, completion, advantages=(0.25,) * n, sampling_logprobs=(-1.5,) * n), "ppo"
    )
    assert set(rl.loss_fn_inputs) == {"target_tokens", "logprobs", "advantages"}
    assert rl.loss_fn_inputs["advantages"].data == [0.0] * (p - 1) + [0.25] * n
    assert rl.loss_fn_inputs["logprobs"].data == [0.0] * (p - 1) + [-1.5] * n

    result = backend.forward_backward(
        [Datum(prompt, completion, advantages=(0.25,) * n, sampling_logprobs=(-1.5,) * n)],
        "ppo",
        clip_low=0.2,
        clip_high=0.28,
    )
    name, (data, loss_fn, loss_config) = service.trainings[0].calls[-1]
    assert name == "forward_backward" and loss_fn == "ppo" and len(data) == 1
    assert loss_config == pytest.approx({"clip_low_threshold": 0.8, "clip_high_threshold": 1.28})
    # the completion's log-probs are the last n positions of the stand-in's answer
    expected = np.linspace(-1.0, -2.0, p + n - 1, dtype=np.float32)[-n:]
    assert result.logprobs[0] == pytest.approx(expected.tolist())
    assert result.loss == 3.5 and result.n_tokens == n


def test_optim_step_and_on_policy_sampling(
    parts: tuple[Any, Any], dataset: Path, tmp_path: Path
) -> None:
    backend, service = _backend(parts, tmp_path, grad_clip_norm=0.5)
    training = service.trainings[0]
    prompt = backend.render_prompt(load_examples(dataset)[0].prompt)

    groups = backend.sample([prompt, prompt], 4, max_tokens=64, temperature=0.9, seed=100)
    assert len(groups) == 2 and all(len(g) == 4 for g in groups)
    first = groups[0][0]
    assert first.tokens == (40, 41, 7) and first.logprobs == (-0.5, -1.0, -0.25)
    assert first.stopped and not groups[0][1].stopped
    assert first.text == backend.decode([40, 41, 7])
    sampler = backend.sampler()
    _, (sent, n, params) = sampler.calls[0]
    assert sent is prompt and n == 4
    assert params.max_tokens == 64 and params.temperature == 0.9 and params.seed == 100
    assert params.top_k == -1 and params.top_p == 1.0, "the policy itself, not truncated"
    assert params.stop == [backend.eos_id]
    assert sampler.calls[1][1][2].seed == 101

    metrics = backend.optim_step(3e-4)
    name, adam = training.calls[-1]
    assert name == "optim_step" and isinstance(adam, types.AdamParams)
    assert adam.learning_rate == 3e-4 and adam.grad_clip_norm == 0.5 and adam.beta2 == 0.95
    assert metrics == {"grad_norm": 0.5}
    # after the update the next sample comes from the new weights
    backend.sample([prompt], 2, max_tokens=8, temperature=1.0, seed=0)
    assert [c for c in training.calls if c[0] == "sampling_client"] == [
        ("sampling_client", 0),
        ("sampling_client", 1),
    ]

    datum = Datum(prompt, (40, 41, 7))
    assert backend.logprobs([datum])[0] == pytest.approx([-1.1] * 3)
    # the KL reference is the policy GRPO starts from, never silently the base model
    with pytest.raises(ConfigError, match="no KL reference"):
        backend.logprobs([datum], reference=True)
    assert not [c for c in service.calls if c[0] == "sampling_client"]


def test_sft_trainer_runs_on_the_tinker_backend_and_resumes(
    parts: tuple[Any, Any], dataset: Path, tmp_path: Path
) -> None:
    backend, service = _backend(parts, tmp_path, sft_max_steps=2, batch_size=3)
    config = make_config(Path("unused"), tmp_path, backend="tinker", sft_max_steps=2, batch_size=3)
    rows = load_examples(dataset)
    trainer = SFTTrainer(config, backend, rows, tmp_path / "run")
    records = trainer.train(progress=False)

    assert [r["loss"] for r in records] == [3.5, 3.5]
    training = service.trainings[0]
    steps = [c for c in training.calls if c[0] == "forward_backward"]
    assert len(steps) == 2 and all(c[1][1] == "cross_entropy" and len(c[1][0]) == 3 for c in steps)
    # weights sum to 1 over the batch: the loss is the mean NLL per program token
    total = sum(sum(d.loss_fn_inputs["weights"].data) for d in steps[0][1][0])
    assert total == pytest.approx(1.0, abs=1e-5)
    assert ("save_state", "step-000002-model") in training.calls
    saved = tmp_path / "run" / "checkpoints" / "step-000002"
    assert (
        saved / "tinker_path.txt"
    ).read_text().strip() == "tinker://run-1/weights/step-000002-model"

    trainer.resume(saved)
    assert service.calls[-1] == ("from_state", "tinker://run-1/weights/step-000002-model")
    assert backend.training is service.trainings[-1] and trainer.step == 2


def test_missing_api_key_is_a_clear_error(
    parts: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    config = make_config(Path("unused"), tmp_path, backend="tinker")
    with pytest.raises(ConfigError, match="TINKER_API_KEY"):
        TinkerBackend(config.training)


# ---------------------------------------------------------------------- on-policy (issue 24)


def test_missing_logprobs_are_an_error_not_zero(
    parts: tuple[Any, Any], dataset: Path, tmp_path: Path
) -> None:
    backend, _ = _backend(parts, tmp_path)
    prompt = backend.render_prompt(load_examples(dataset)[0].prompt)
    backend._sampler = StandInSampler(0, with_logprobs=False)

    with pytest.raises(TrainingBackendError, match="no log-probs for 3 sampled tokens"):
        backend.sample([prompt], 2, max_tokens=8, temperature=1.0, seed=0)
    with pytest.raises(TrainingBackendError, match="0 log-probs for 3 scored tokens"):
        backend.logprobs([Datum(prompt, (40, 41, 7))])


def test_a_completion_of_only_the_end_token_adds_no_empty_chunk(
    parts: tuple[Any, Any], dataset: Path, tmp_path: Path
) -> None:
    backend, _ = _backend(parts, tmp_path)
    prompt = backend.render_prompt(load_examples(dataset)[0].prompt)
    end = (backend.eos_id,)

    datum = backend.to_datum(
        Datum(prompt, end, advantages=(0.5,), sampling_logprobs=(-0.1,)), "ppo"
    )
    assert all(c.length > 0 for c in datum.model_input.chunks)
    assert datum.model_input.length == prompt.length
    assert datum.loss_fn_inputs["target_tokens"].data == [0] * (prompt.length - 1) + [end[0]]
    assert datum.loss_fn_inputs["advantages"].data == [0.0] * (prompt.length - 1) + [0.5]


def test_grpo_on_tinker_needs_temperature_one(
    parts: tuple[Any, Any], dataset: Path, tmp_path: Path
) -> None:
    from tests.training.test_rl import FakeScorer

    backend, _ = _backend(parts, tmp_path)
    rows = load_examples(dataset)
    config = make_config(Path("unused"), tmp_path, backend="tinker", temperature=0.7)
    with pytest.raises(ConfigError, match="temperature"):
        GRPOTrainer(config, backend, rows, FakeScorer(), tmp_path / "run")
    prompt = backend.render_prompt(rows[0].prompt)
    datum = Datum(prompt, (40, 7), advantages=(1.0, 1.0), sampling_logprobs=(-1.0, -1.0))
    with pytest.raises(ConfigError, match=r"temperature=0\.5"):
        backend.forward_backward([datum], "ppo", temperature=0.5)


def test_grpo_kl_reference_on_tinker_is_the_starting_policy_and_survives_resume(
    parts: tuple[Any, Any], dataset: Path, tmp_path: Path
) -> None:
    from tests.training.test_rl import FakeScorer

    rows = load_examples(dataset)
    settings = {"kl_coef": 0.1, "group_size": 4, "batch_size": 2, "save_every": 1}
    backend, service = _backend(parts, tmp_path, **settings)
    config = make_config(Path("unused"), tmp_path, backend="tinker", **settings)
    sft = tmp_path / "sft" / "checkpoints" / "step-000010"
    write_state(sft, {"trainer": "sft", "step": 10, "ref": "tinker://sft/weights/step-10"})

    trainer = GRPOTrainer(config, backend, rows, FakeScorer(), tmp_path / "run")
    trainer.init_from(sft)
    records = trainer.train(steps=2, progress=False)

    assert any(r["loss"] is not None for r in records), "the fake rewards must give signal"
    assert ("weights_from_state", "tinker://sft/weights/step-10") in service.calls
    started = service.trainings[-1]
    # the reference: the SFT weights saved for sampling before the first update
    saved = [c for c in started.calls if c[0] in ("save_weights_for_sampler", "optim_step")]
    assert saved[0] == ("save_weights_for_sampler", "run-reference")
    path = "tinker://run-1/sampler_weights/run-reference"
    assert ("sampling_client", path) in service.calls
    assert ("sampling_client", BASE) not in service.calls
    state = read_state(tmp_path / "run" / "checkpoints" / "step-000001")
    assert state["kl_reference"] == path

    again, service2 = _backend(parts, tmp_path, **settings)
    resumed = GRPOTrainer(config, again, rows, FakeScorer(), tmp_path / "run")
    resumed.resume(tmp_path / "run" / "checkpoints" / "step-000001")
    assert ("sampling_client", path) in service2.calls
    assert resumed.method.reference == path
