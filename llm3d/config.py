"""Configuration: one Pydantic model per part, loaded from four sources.

Precedence, lowest first (DESIGN §8):

1. ``configs/default.yaml`` (it mirrors the models' defaults, a test keeps them equal),
2. another YAML file given to :func:`load_config` (``--config FILE`` on the CLI),
3. ``LLM3D_`` environment variables, nested with ``__``
   (``LLM3D_SEED=123``, ``LLM3D_METRICS__TRAIN_POINTS=5000``; lists and mappings as JSON),
4. keyword arguments: ``load_config(yaml_path, seed=123, metrics__train_points=5000)``.

Unknown keys and wrong types raise :class:`~llm3d.exceptions.ConfigError` naming the key,
the file or variable it came from, and what was expected. The loaded
:class:`Config` remembers where each value came from (``config.sources``), which
``llm3d config show`` prints. Secrets are ``SecretStr``: printed as ``**********``.

Parsing of YAML files and environment variables is pydantic-settings' own
(``YamlConfigSettingsSource``, ``EnvSettingsSource``); this module only merges the
sources in order while recording provenance, so that errors can name their origin.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources import YamlConfigSettingsSource

from llm3d.exceptions import ConfigError
from llm3d.sections import (
    AddonConfig,
    ApiConfig,
    DataConfig,
    EvalConfig,
    ExecutorConfig,
    FarmConfig,
    MetricsConfig,
    ModalConfig,
    PathsConfig,
    RenderConfig,
    RewardConfig,
    TrainingConfig,
    ViewConfig,
)

ENV_PREFIX = "LLM3D_"
ENV_NESTED_DELIMITER = "__"
REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "default.yaml"

# Environment variables that DESIGN.md names directly rather than by their nested path.
ENV_ALIASES: dict[str, str] = {"LLM3D_API_TOKEN": "api.token"}
#: LLM3D_ variables of the scripts and the test suite, not settings: the loader leaves them
#: alone (any other unknown LLM3D_ variable is an error, so that a typo never goes unnoticed).
TOOL_ENV: frozenset[str] = frozenset(
    {
        "LLM3D_VENV",  # scripts/lib.sh: the virtual environment to use
        "LLM3D_INFINIGEN_VENV",  # scripts/setup_infinigen.sh: the Infinigen sidecar's
        "LLM3D_FUZZ_EXAMPLES",  # tests: Hypothesis examples of the sandbox fuzzer
        "LLM3D_TEST_REDIS_URL",  # tests: the Redis database the farm tests use
        "LLM3D_BENCH_REDIS_URL",  # benchmarks/farm_bench.py
    }
)
# The seed's Phase 5 names of the deployed reward service (scripts/deploy_reward_api.sh prints
# them): read when the LLM3D_ variable of the same setting is unset.
SEED_ENV_ALIASES: dict[str, str] = {
    "MODAL_ENDPOINT": "LLM3D_TRAINING__REWARD_URL",
    "MODAL_TOKEN": "LLM3D_API_TOKEN",
}

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AddonConfig",
    "ApiConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ExecutorConfig",
    "FarmConfig",
    "MetricsConfig",
    "ModalConfig",
    "PathsConfig",
    "RenderConfig",
    "RewardConfig",
    "TrainingConfig",
    "ViewConfig",
    "load_config",
]


class Config(BaseSettings):
    """The whole configuration. Build it with :func:`load_config`, not directly."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        validate_default=True,
    )

    seed: int = 0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    paths: PathsConfig = Field(default_factory=PathsConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    farm: FarmConfig = Field(default_factory=FarmConfig)
    modal: ModalConfig = Field(default_factory=ModalConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    addon: AddonConfig = Field(default_factory=AddonConfig)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _fine_reward_needs_its_threshold(self) -> Config:
        if self.reward.variant == "gated-fine" and 0.02 not in self.metrics.fscore_thresholds:
            raise ValueError(
                "reward.variant gated-fine scores with F@0.02: add 0.02 to "
                "metrics.fscore_thresholds"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only explicit data: load_config() has already merged files and environment.
        return (init_settings,)

    @property
    def sources(self) -> dict[str, str]:
        """Dotted key → where its value came from (``default``, a file, a variable, an argument)."""
        return dict(self._sources)

    def flat(self, *, reveal_secrets: bool = False) -> dict[str, Any]:
        """The effective values as one flat ``{"metrics.train_points": 10000, ...}`` mapping."""
        flat = dict(_flatten(self.model_dump(mode="json")))
        if reveal_secrets:
            for key, value in _flatten(self.model_dump()):
                if isinstance(value, SecretStr):
                    flat[key] = value.get_secret_value()
        return flat


# ----------------------------------------------------------------------------------------
# loading


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and _is_section(dotted):
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value


def _is_section(dotted: str) -> bool:
    """True when ``dotted`` names a nested model (not a free-form dict field)."""
    model: type[BaseModel] = Config
    for part in dotted.split("."):
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return True


def _merge(
    target: dict[str, Any],
    update: Mapping[str, Any],
    origin: str,
    sources: dict[str, str],
    prefix: str = "",
) -> None:
    """Deep-merge ``update`` into ``target``, recording ``origin`` for every leaf it sets."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and _is_section(dotted):
            node = target.setdefault(key, {})
            if not isinstance(node, dict):
                node = target[key] = {}
            _merge(node, value, origin, sources, dotted + ".")
        else:
            target[key] = value
            sources[dotted] = origin


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path} (pass an existing YAML file)")
    try:
        data = YamlConfigSettingsSource(Config, yaml_file=path)()
    except Exception as exc:  # yaml.YAMLError and OS errors, reported with the file name
        raise ConfigError(f"{_display(path)}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{_display(path)}: the top level must be a mapping of section names")
    return data


def _read_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``LLM3D_`` variables as a nested mapping, and dotted key → variable name."""
    aliased = {
        target: environ[seed]
        for seed, target in SEED_ENV_ALIASES.items()
        if environ.get(seed) and target not in environ
    }
    environ = {**environ, **aliased}
    names: dict[str, str] = {}
    data: dict[str, Any] = {}
    unknown: list[str] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in TOOL_ENV:
            continue
        if upper in ENV_ALIASES:
            dotted = ENV_ALIASES[upper]
        else:
            dotted = upper[len(ENV_PREFIX) :].lower().replace(ENV_NESTED_DELIMITER, ".")
        top = dotted.split(".")[0]
        if top not in Config.model_fields:
            unknown.append(name)
            continue
        names[dotted] = name
    if unknown:
        raise ConfigError(_unknown_message(unknown[0], "", "the environment", env=True))
    if not names:
        return data, names
    # pydantic-settings does the parsing (JSON for lists/mappings, nesting by "__").
    env = {
        ENV_PREFIX + k.upper().replace(".", ENV_NESTED_DELIMITER): environ[v]
        for k, v in names.items()
    }
    source = EnvSettingsSource(
        Config,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
    )
    source.env_vars = {k.lower(): v for k, v in env.items()}
    try:
        data = source()
    except Exception as exc:  # SettingsError on malformed JSON
        raise ConfigError(f"environment: {exc} (lists and mappings must be JSON)") from exc
    # A nested variable that names no field of its section is silently dropped by the
    # source when the section is not a complete mapping; catch it here instead.
    flat_keys = {k for k, _ in _flatten(data)}
    for dotted, name in names.items():
        if dotted not in flat_keys and not any(k.startswith(dotted + ".") for k in flat_keys):
            raise ConfigError(_unknown_message(dotted, "", f"environment variable {name}"))
    return data, names


def _unknown_message(key: str, _prefix: str, origin: str, *, env: bool = False) -> str:
    if env:
        known = [ENV_PREFIX + k.upper() for k in Config.model_fields]
        close = difflib.get_close_matches(key.upper(), known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return (
            f"unknown setting {key} in {origin}: LLM3D_ variables must name a field "
            f"(nested with __, e.g. LLM3D_METRICS__TRAIN_POINTS){hint}"
        )
    return f"unknown key '{key}' in {origin}"


def _describe_error(error: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    loc = [str(p) for p in error["loc"]]
    dotted = ".".join(loc)
    origin = "the default configuration"
    for i in range(len(loc), 0, -1):
        candidate = ".".join(loc[:i])
        if candidate in sources:
            origin = sources[candidate]
            break
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = loc[:-1]
        model: type[BaseModel] = Config
        for part in parent:
            annotation = model.model_fields[part].annotation if part in model.model_fields else None
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
        known = list(model.model_fields)
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        section = ".".join(parent) or "the top level"
        return (
            f"unknown key '{dotted}' (from {origin}). Known keys in {section}: "
            f"{', '.join(known)}.{hint}"
        )
    expected = error["msg"]
    if not loc:  # a rule across sections: the message names the keys
        return str(expected).removeprefix("Value error, ")
    value = error.get("input")
    return f"{dotted} = {value!r} (from {origin}): {expected}"


def load_config(
    yaml_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    defaults_path: str | Path | None = None,
    **overrides: Any,
) -> Config:
    """Load the effective configuration.

    Args:
        yaml_path: a YAML file that overrides ``configs/default.yaml``.
        environ: the environment to read ``LLM3D_`` variables from (default ``os.environ``).
        defaults_path: the defaults file (default ``configs/default.yaml`` when it exists).
        **overrides: the highest-precedence values; nested with ``__``
            (``metrics__train_points=5000``) or given as a section mapping
            (``metrics={"train_points": 5000}``).

    Returns:
        The validated, frozen :class:`Config`; ``config.sources`` says where each value came from.

    Raises:
        ConfigError: for a missing or malformed file, an unknown key or a wrong type; the
            message names the key, its source and what was expected.
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}

    default_file = Path(defaults_path) if defaults_path else DEFAULT_CONFIG_PATH
    if default_file.is_file():
        _merge(merged, _read_yaml(default_file), f"file {_display(default_file)}", sources)
    elif defaults_path:
        raise ConfigError(f"defaults file not found: {default_file}")

    if yaml_path is not None:
        path = Path(yaml_path)
        _merge(merged, _read_yaml(path), f"file {_display(path)}", sources)

    env_data, env_names = _read_env(os.environ if environ is None else environ)
    env_sources: dict[str, str] = {}
    _merge(merged, env_data, "env", env_sources)
    for dotted in env_sources:
        name = env_names.get(dotted) or next(
            (v for k, v in env_names.items() if dotted.startswith(k + ".")), "LLM3D_*"
        )
        sources[dotted] = f"env {name}"

    kwargs: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(ENV_NESTED_DELIMITER)
        node = kwargs
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    _merge(merged, kwargs, "argument", sources)
    for dotted, origin in list(sources.items()):
        if origin == "argument":
            sources[dotted] = f"argument {dotted.replace('.', ENV_NESTED_DELIMITER)}"

    try:
        config = Config(**merged)
    except ValidationError as exc:
        lines = [_describe_error(err, sources) for err in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
    config._sources = {key: sources.get(key, "built-in default") for key in config.flat()}
    for key in sources:
        for flat_key in config._sources:
            if flat_key.startswith(key + ".") and config._sources[flat_key] == "built-in default":
                config._sources[flat_key] = sources[key]
    return config
