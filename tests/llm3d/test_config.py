"""Configuration: the four sources, their precedence, and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from llm3d.config import DEFAULT_CONFIG_PATH, Config, load_config
from llm3d.exceptions import ConfigError


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_yaml_mirrors_the_models() -> None:
    """configs/default.yaml and the built-in defaults must never drift apart."""
    assert DEFAULT_CONFIG_PATH.is_file()
    from_file = load_config(environ={})
    built_in = Config()
    assert from_file.model_dump() == built_in.model_dump()
    # every leaf of the effective config is written in the defaults file
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert set(raw) == set(Config.model_fields)
    assert all(src.startswith("file ") for src in from_file.sources.values())


def test_design_defaults() -> None:
    cfg = load_config(environ={})
    assert cfg.executor.timeout_s == 120
    assert cfg.executor.max_code_bytes == 64 * 1024
    assert cfg.metrics.train_points == 10_000
    assert cfg.metrics.eval_points == 100_000
    assert cfg.metrics.unit_cube_points == 8192
    assert cfg.metrics.fscore_thresholds == [0.01, 0.02, 0.05]
    assert cfg.render.resolution == 256
    assert [v.name for v in cfg.render.views] == ["front", "side", "top", "three_quarter"]
    assert cfg.api.backend == "inline"
    assert cfg.api.token is None


def test_precedence_of_the_four_sources(tmp_path: Path) -> None:
    override = write(
        tmp_path / "o.yaml", {"seed": 1, "metrics": {"train_points": 2000, "eval_points": 3000}}
    )
    env = {"LLM3D_SEED": "2", "LLM3D_METRICS__TRAIN_POINTS": "4000"}

    only_file = load_config(override, environ={})
    assert (only_file.seed, only_file.metrics.train_points) == (1, 2000)

    file_env = load_config(override, environ=env)
    assert (file_env.seed, file_env.metrics.train_points) == (2, 4000)
    assert file_env.metrics.eval_points == 3000  # untouched by env: still from the file
    assert file_env.metrics.unit_cube_points == 8192  # untouched by both: still the default

    all_four = load_config(override, environ=env, seed=3)
    assert all_four.seed == 3
    assert all_four.metrics.train_points == 4000

    assert all_four.sources["seed"] == "argument seed"
    assert all_four.sources["metrics.train_points"] == "env LLM3D_METRICS__TRAIN_POINTS"
    assert all_four.sources["metrics.eval_points"] == f"file {override}"
    assert all_four.sources[
        "metrics.unit_cube_points"
    ] == "file configs/default.yaml" or all_four.sources["metrics.unit_cube_points"].endswith(
        "default.yaml"
    )


def test_nested_overrides_by_keyword() -> None:
    by_dunder = load_config(environ={}, metrics__train_points=5000, api__port=9001)
    assert by_dunder.metrics.train_points == 5000
    assert by_dunder.api.port == 9001
    by_mapping = load_config(environ={}, metrics={"train_points": 6000})
    assert by_mapping.metrics.train_points == 6000
    assert by_mapping.metrics.eval_points == 100_000  # a partial section merges, not replaces


def test_nested_env_vars_including_lists_and_case() -> None:
    cfg = load_config(
        environ={
            "LLM3D_METRICS__TRAIN_POINTS": "5000",
            "llm3d_executor__timeout_s": "7.5",
            "LLM3D_EXECUTOR__ALLOWED_IMPORTS": '["bpy_lib", "math", "random"]',
            "LLM3D_API__BACKEND": "celery",
            "UNRELATED": "x",
        }
    )
    assert cfg.metrics.train_points == 5000
    assert cfg.executor.timeout_s == 7.5
    assert cfg.executor.allowed_imports == ["bpy_lib", "math", "random"]
    assert cfg.api.backend == "celery"


def test_api_token_is_secret_and_never_printed() -> None:
    cfg = load_config(environ={"LLM3D_API_TOKEN": "hunter2"})
    assert isinstance(cfg.api.token, SecretStr)
    assert cfg.api.token.get_secret_value() == "hunter2"
    assert cfg.sources["api.token"] == "env LLM3D_API_TOKEN"
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in str(cfg.flat())
    assert cfg.flat(reveal_secrets=True)["api.token"] == "hunter2"


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", {"metrics": {"train_point": 10}})
    with pytest.raises(ConfigError) as info:
        load_config(bad, environ={})
    message = str(info.value)
    assert "metrics.train_point" in message
    assert str(bad) in message
    assert "train_points" in message  # the suggestion


def test_unknown_top_level_section(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", {"metric": {"train_points": 10}})
    with pytest.raises(ConfigError, match=r"unknown key 'metric'.*Did you mean 'metrics'"):
        load_config(bad, environ={})


def test_unknown_env_vars_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"LLM3D_SEEED.*did you mean LLM3D_SEED"):
        load_config(environ={"LLM3D_SEEED": "1"})
    with pytest.raises(ConfigError, match=r"metrics\.train_point.*env LLM3D_METRICS__TRAIN_POINT"):
        load_config(environ={"LLM3D_METRICS__TRAIN_POINT": "1"})


def test_the_scripts_own_llm3d_variables_are_not_settings() -> None:
    """scripts/lib.sh reads LLM3D_VENV; with it set, every llm3d command must still load."""
    tools = {
        "LLM3D_VENV": "/opt/venv",
        "LLM3D_INFINIGEN_VENV": "/opt/ig",
        "LLM3D_FUZZ_EXAMPLES": "5",
    }
    assert load_config(environ={**tools, "LLM3D_SEED": "3"}).seed == 3


def test_unknown_keyword_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'metrics\.bogus'.*argument metrics__bogus"):
        load_config(environ={}, metrics__bogus=1)


def test_wrong_type_names_key_source_and_expected_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"LLM3D_METRICS__TRAIN_POINTS": "lots"})
    message = str(info.value)
    assert "metrics.train_points" in message
    assert "env LLM3D_METRICS__TRAIN_POINTS" in message
    assert "valid integer" in message

    bad = write(tmp_path / "bad.yaml", {"api": {"backend": "kubernetes"}})
    with pytest.raises(
        ConfigError,
        match=r"api\.backend = 'kubernetes' \(from file .*bad\.yaml\).*'inline', 'celery' or 'modal'",
    ):
        load_config(bad, environ={})

    with pytest.raises(
        ConfigError,
        match=r"executor\.timeout_s = -1 \(from argument executor__timeout_s\).*greater than 0",
    ):
        load_config(environ={}, executor__timeout_s=-1)


def test_several_errors_reported_at_once(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", {"seed": "x", "render": {"resolution": 1}})
    with pytest.raises(ConfigError) as info:
        load_config(bad, environ={})
    assert "seed" in str(info.value) and "render.resolution" in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("metrics: {train_points: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken, environ={})
    with pytest.raises(ConfigError, match="JSON"):
        load_config(environ={"LLM3D_EXECUTOR__ALLOWED_IMPORTS": "[math"})


def test_config_is_frozen() -> None:
    cfg = load_config(environ={})
    with pytest.raises(Exception, match="frozen"):
        cfg.seed = 5  # type: ignore[misc]


def test_primary_threshold_required() -> None:
    with pytest.raises(ConfigError, match=r"0\.05"):
        load_config(environ={}, metrics__fscore_thresholds=[0.01, 0.02])
