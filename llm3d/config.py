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
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources import YamlConfigSettingsSource

from llm3d.exceptions import ConfigError

ENV_PREFIX = "LLM3D_"
ENV_NESTED_DELIMITER = "__"
REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "default.yaml"

# Environment variables that DESIGN.md names directly rather than by their nested path.
ENV_ALIASES: dict[str, str] = {"LLM3D_API_TOKEN": "api.token"}

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
    "PathsConfig",
    "RenderConfig",
    "RewardConfig",
    "TrainingConfig",
    "ViewConfig",
    "load_config",
]


class Section(BaseModel):
    """Base of every configuration section: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


class PathsConfig(Section):
    """Where data, caches and runs live (relative paths are relative to the working directory)."""

    data_dir: Path = Path("data")
    cache_dir: Path = Path(".cache/llm3d")
    runs_dir: Path = Path("runs")


class ExecutorConfig(Section):
    """The sandboxed Blender executor (DESIGN §2)."""

    timeout_s: float = Field(120.0, gt=0, le=3600, description="wall-clock limit per program")
    max_code_bytes: int = Field(65_536, gt=0, description="programs larger than this are refused")
    memory_mb: int = Field(4096, ge=256, description="address-space limit of each child")
    cpu_seconds: int = Field(150, ge=1, description="CPU-time limit of each child")
    max_open_files: int = Field(256, ge=16)
    max_file_mb: int = Field(64, ge=1, description="largest file a child may write")
    output_tail_bytes: int = Field(4096, ge=256, description="stdout/stderr tail kept per program")
    min_faces: int = Field(4, ge=1, description="fewer faces than this is `no_geometry`")
    max_vertices: int = Field(100_000, ge=8, description="more vertices than this is `degenerate`")
    allowed_imports: list[str] = Field(default_factory=lambda: ["bpy_lib", "math"])
    servers: int = Field(0, ge=0, description="fork servers side by side; 0 = one per core")
    queue_size: int = Field(
        64, ge=1, description="programs waiting per server before back-pressure"
    )
    children_per_server: int = Field(
        0, ge=0, description="programs one server runs at once; 0 = one per core"
    )
    isolate_network: bool = Field(True, description="unshare the network namespace in each child")
    huge_pages: bool = Field(
        True,
        description="back each fork server's warm heap with transparent huge pages "
        "(cheaper forks; see worker/hugepages.py)",
    )


class MetricsConfig(Section):
    """Mesh comparison (DESIGN §3)."""

    train_points: int = Field(10_000, ge=100, description="surface samples for training rewards")
    eval_points: int = Field(100_000, ge=100, description="surface samples for evaluation")
    unit_cube_points: int = Field(8192, ge=100, description="samples of the unit-cube Chamfer")
    unit_chamfer: Literal["auto", "always", "never"] = Field(
        "auto",
        description="report chamfer_unit_x1000 (an evaluation metric): auto = for scores "
        "taken with at least eval_points samples, not for training rewards",
    )
    fscore_thresholds: list[float] = Field(default_factory=lambda: [0.01, 0.02, 0.05])
    gt_cache_size: int = Field(256, ge=1, description="ground truths kept sampled in memory")
    gt_cache_mb: int = Field(
        512, ge=1, description="memory those ground truths may hold, per process (MiB)"
    )

    @field_validator("fscore_thresholds")
    @classmethod
    def _thresholds_positive(cls, value: list[float]) -> list[float]:
        if not value or any(t <= 0 for t in value):
            raise ValueError("fscore_thresholds must be a non-empty list of positive distances")
        if 0.05 not in value:
            raise ValueError("fscore_thresholds must contain 0.05, the primary threshold")
        return sorted(value)


class RewardConfig(Section):
    """Which sample count the reward uses; the gate table itself is fixed (DESIGN §4)."""

    points: Literal["train", "eval"] = "train"


class ViewConfig(Section):
    """One camera of the rendering rig, looking at the object's centre."""

    name: str
    azimuth_deg: float = Field(ge=-360, le=360)
    elevation_deg: float = Field(ge=-90, le=90)


def _default_views() -> list[ViewConfig]:
    return [
        ViewConfig(name="front", azimuth_deg=0.0, elevation_deg=0.0),
        ViewConfig(name="side", azimuth_deg=90.0, elevation_deg=0.0),
        ViewConfig(name="top", azimuth_deg=0.0, elevation_deg=90.0),
        ViewConfig(name="three_quarter", azimuth_deg=45.0, elevation_deg=30.0),
    ]


class RenderConfig(Section):
    """Multi-view images: the model's input."""

    resolution: int = Field(256, ge=32, le=4096)
    engine: Literal["workbench", "cycles"] = "workbench"
    cycles_samples: int = Field(16, ge=1)
    workbench_aa: Literal["OFF", "FXAA", "5", "8", "11", "16", "32"] = Field(
        "FXAA", description="Workbench anti-aliasing: FXAA (one pass, fast) or N samples"
    )
    views: list[ViewConfig] = Field(default_factory=_default_views)


class ApiConfig(Section):
    """The reward service (DESIGN §5)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token: SecretStr | None = Field(None, description="Bearer token; env LLM3D_API_TOKEN")
    backend: Literal["inline", "celery", "modal"] = "inline"
    max_items: int = Field(1024, ge=1, description="items per batch")
    max_request_mb: float = Field(32.0, gt=0, description="largest request body")
    cache_size: int = Field(10_000, ge=0, description="in-process result cache entries")
    job_ttl_s: int = Field(3600, ge=60, description="how long finished jobs stay readable")
    datasets: list[Path] = Field(default_factory=list, description="task files loaded at start")


class FarmConfig(Section):
    """Celery + Redis workers."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue: str = "blender"
    concurrency: int = Field(0, ge=0, description="worker processes; 0 = one per core")
    max_tasks_per_child: int = Field(
        20_000,
        ge=1,
        description="tasks before a worker process (and its fork server) is replaced; "
        "programs run in forked children, so this only bounds slow leaks of trusted code",
    )
    task_margin_s: float = Field(30.0, ge=1, description="task soft limit above the executor's")
    visibility_timeout_s: float = Field(
        900.0, ge=5, description="unacked tasks of a lost worker are redelivered after this"
    )
    result_timeout_s: float = Field(
        3600.0, gt=0, description="longest wait for a batch's results before 503"
    )
    cache_ttl_s: int = Field(86_400, ge=1, description="lifetime of cached rewards in Redis")
    namespace: str = Field(
        "llm3d",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="prefix of the farm's Redis keys (cache, jobs, references)",
    )


class DataConfig(Section):
    """The data pipeline (DESIGN §6)."""

    out_dir: Path = Path("data")
    categories_file: Path = Path("configs/categories.yaml")
    n_part_samples: int = Field(300_000, ge=1)
    splits: dict[str, float] = Field(
        default_factory=lambda: {"sft": 0.8, "rl": 0.1, "eval": 0.1},
    )
    workers: int = Field(0, ge=0, description="executor servers for data generation; 0 = cores")
    in_flight: int = Field(64, ge=1, description="programs submitted ahead of the writer")
    program_timeout_s: float = Field(30.0, gt=0, description="limit per generated program")
    shard_size: int = Field(1000, ge=1, description="part samples per npz shard")
    part_size_range: tuple[float, float] = Field((0.2, 1.8), description="main dimensions")
    part_thickness_range: tuple[float, float] = Field((0.03, 0.25), description="thin sides")
    part_modifier_prob: float = Field(0.3, ge=0, le=1, description="chance of a deformer")
    part_families: dict[str, float] = Field(
        default_factory=dict, description="family -> weight; empty = every family equally"
    )
    dedup_threshold: float = Field(
        0.03, ge=0, description="descriptor distance under which a part is a near-duplicate"
    )
    max_part_faces: int = Field(20_000, ge=4, description="heavier parts are rejected")
    objects_per_category: int = Field(
        60, ge=1, description="objects of a category of weight 1 in categories_file"
    )
    infinigen_python: Path | None = Field(
        None, description="Python of the Infinigen sidecar; default .cache/venv-infinigen"
    )


class TrainingConfig(Section):
    """SFT and GRPO (DESIGN §7)."""

    backend: Literal["tinker", "local"] = "local"
    base_model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    tinker_base_model: str = "Qwen/Qwen3-VL-30B-A3B-Instruct"
    lora_rank: int = Field(32, ge=1)
    lora_alpha: int = Field(64, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    group_size: int = Field(8, ge=2, description="GRPO completions per prompt")
    kl_coef: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(2048, ge=16)
    reward_url: str = "http://127.0.0.1:8000"
    # model and optimiser (local backend; Tinker takes rank and learning rate)
    lora_targets: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        description="language-model modules that get LoRA adapters (local backend)",
    )
    device: str = Field("auto", description="local backend: auto (cuda if present), cpu, cuda:N")
    gradient_checkpointing: bool = True
    micro_batch_size: int = Field(4, ge=1, description="sequences per forward pass (local)")
    sampling_batch_size: int = Field(64, ge=1, description="sequences per generate call (local)")
    grad_clip_norm: float = Field(1.0, ge=0, description="0 = no clipping")
    image_min_pixels: int | None = Field(None, ge=1, description="image processor override")
    image_max_pixels: int | None = Field(None, ge=1, description="image processor override")
    run_name: str = Field("run", min_length=1, description="runs_dir/<run_name>/ holds logs")
    save_every: int = Field(50, ge=0, description="steps between checkpoints; 0 = only the last")
    wandb_project: str | None = Field(None, description="also log to Weights & Biases")
    # SFT
    sft_data: Path = Path("data/sft.jsonl")
    sft_eval_data: Path | None = Field(None, description="held-out rows (default: none)")
    sft_epochs: int = Field(1, ge=1)
    sft_max_steps: int | None = Field(None, ge=1, description="stop early after this many steps")
    sft_shuffle: bool = Field(False, description="False: curriculum order (easy → hard)")
    eval_every: int = Field(100, ge=0, description="SFT steps between evaluations; 0 = never")
    eval_limit: int = Field(32, ge=1, description="held-out rows per evaluation")
    # GRPO
    rl_data: Path = Path("data/rl.jsonl")
    rl_steps: int = Field(100, ge=1)
    temperature: float = Field(1.0, gt=0)
    loss_fn: Literal["ppo", "importance_sampling"] = "ppo"
    clip_low: float = Field(0.2, ge=0, lt=1, description="ratio clipped below 1 - clip_low")
    clip_high: float = Field(0.2, ge=0, description="ratio clipped above 1 + clip_high")
    reward_timeout_s: float | None = Field(None, gt=0, description="per-program limit sent")
    reward_points: int | None = Field(None, ge=100, description="surface samples sent")


class EvalConfig(Section):
    """The evaluation runner."""

    split: str = Field("eval", description="a split name under data.out_dir, or a JSONL path")
    limit: int | None = Field(None, ge=1)
    pass_k: int = Field(1, ge=1)
    train_split: str = Field("sft", description="what the retrieval baseline retrieves from")
    out_dir: Path = Field(Path("runs/eval"), description="reports go to out_dir/<policy>")
    pass_threshold: float = Field(0.9, gt=0, le=1, description="F@0.05 that counts as solved")
    batch_size: int = Field(64, ge=1, description="completions per POST /reward/batch")
    grid: bool = Field(True, description="render the best/median/worst comparison grid")
    base_url: str = Field("http://127.0.0.1:8001/v1", description="openai policy endpoint")
    model: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description="openai/tinker model name")
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(2048, ge=16)
    concurrency: int = Field(8, ge=1, description="openai/tinker requests in flight")


class AddonConfig(Section):
    """Defaults the Blender add-on starts from."""

    endpoint_url: str = "http://127.0.0.1:8001/v1"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    max_repairs: int = Field(2, ge=0, le=10)


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
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    addon: AddonConfig = Field(default_factory=AddonConfig)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

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
    names: dict[str, str] = {}
    data: dict[str, Any] = {}
    unknown: list[str] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
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
    value = error.get("input")
    expected = error["msg"]
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
