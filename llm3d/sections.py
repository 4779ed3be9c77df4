"""The sections of the configuration: one Pydantic model per part of llm3d.

:class:`llm3d.config.Config` gathers them and :func:`llm3d.config.load_config` loads them
(with provenance); import them from :mod:`llm3d.config`. ``configs/default.yaml`` mirrors
their defaults, and a test keeps the two equal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = [
    "AddonConfig",
    "ApiConfig",
    "DataConfig",
    "EvalConfig",
    "ExecutorConfig",
    "FarmConfig",
    "MetricsConfig",
    "ModalConfig",
    "PathsConfig",
    "RenderConfig",
    "RewardConfig",
    "Section",
    "TrainingConfig",
    "ViewConfig",
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
    max_code_bytes: int = Field(
        65_536,
        gt=0,
        le=1 << 20,
        description="programs larger than this (UTF-8 bytes) are refused: a 422 at the API, "
        "`refused` in the executor; at most 1 MiB (a fork server's frame is 4 MiB)",
    )
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
    jail: Literal["auto", "bwrap", "none"] = Field(
        "auto",
        description="jail around each fork server (worker/sandbox/jail.py)",
    )
    sandbox_uid: int = Field(
        65534,
        ge=1,
        description="user a fork server started as root becomes",
    )
    sandbox_gid: int = Field(65534, ge=1, description="its group")
    huge_pages: bool = Field(
        True,
        description="back each fork server's warm heap with transparent huge pages "
        "(cheaper forks; see worker/execution/hugepages.py)",
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
    variant: Literal["gated", "gated-fine"] = Field(
        "gated",
        description="gated: the seed's reward (DESIGN §4); gated-fine: the same gates, but the "
        "quality term keeps rising past F@0.05 = 0.6 with F@0.02 (needs 0.02 in "
        "metrics.fscore_thresholds); each has its own reward_version",
    )


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


#: Half the side of bpy_lib's frame as the dataset keeps it ([-1, 1]³ plus 5 %): a generated
#: object reaching past it is left out, and ``render.frame: scene`` frames this box.
SCENE_LIMIT = 1.05


class RenderConfig(Section):
    """Multi-view images: the model's input."""

    resolution: int = Field(256, ge=32, le=4096)
    engine: Literal["workbench", "cycles"] = "workbench"
    cycles_samples: int = Field(16, ge=1)
    workbench_aa: Literal["OFF", "FXAA", "5", "8", "11", "16", "32"] = Field(
        "FXAA", description="Workbench anti-aliasing: FXAA (one pass, fast) or N samples"
    )
    views: list[ViewConfig] = Field(default_factory=_default_views)
    frame: Literal["scene", "object"] = Field(
        "scene",
        description="what the cameras frame: scene, bpy_lib's fixed box [-1.05, 1.05]^3 (every "
        "dataset object lies in it; a mesh reaching beyond grows the box), so that the views "
        "show the size and place that the metrics score (DESIGN §3: the GT frame); object, "
        "each mesh's own bounding box (fills the picture, but hides size and place)",
    )


class ApiConfig(Section):
    """The reward service (DESIGN §5)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token: SecretStr | None = Field(None, description="Bearer token; env LLM3D_API_TOKEN")
    backend: Literal["inline", "celery", "modal"] = "inline"
    max_items: int = Field(1024, ge=1, description="items per batch")
    max_request_mb: float = Field(
        32.0,
        gt=0,
        description="largest request body (programs are bounded by executor.max_code_bytes; "
        "this bounds a batch and its inline reference meshes)",
    )
    metrics_require_token: bool = Field(
        False,
        description="GET /metrics demands the Bearer token too (when api.token is set); "
        "off by default so that a Prometheus scrape needs no secret: the metrics are "
        "counters and timings, never programs or rewards of a request",
    )
    workers: int = Field(
        1,
        ge=1,
        description="API processes under llm3d serve's supervisor (a dead one is restarted); "
        "each has its own backend, cache and request-id memory: more than 1 only with celery",
    )
    cache_size: int = Field(10_000, ge=0, description="in-process result cache entries")
    job_ttl_s: int = Field(3600, ge=60, description="how long finished jobs stay readable")
    datasets: list[Path] = Field(default_factory=list, description="task files loaded at start")
    shutdown_grace_s: float = Field(
        5.0,
        ge=0,
        description="on SIGTERM, batches in flight get this long to finish; their items not "
        "scored by then are answered infra_error, and the process exits",
    )


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
        20.0,
        ge=4,
        description="a task held by a worker that stopped renewing its lease (killed, hung, "
        "its host lost) is redelivered this long after the last renewal; live workers renew "
        "every quarter of it, so a slow task is never redelivered",
    )
    no_worker_timeout_s: float = Field(
        5.0,
        gt=0,
        description="a batch that no worker could take (none consumes farm.queue) is answered "
        "503 after this long; a job waits instead, saying so in its status",
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


class ModalConfig(Section):
    """The farm on Modal in production (``modal deploy -m api.modal_web``).

    Read when the app is deployed (and again in each container). One ``score`` container
    runs one warm fork server on ``score_cpu`` cores; see README "Production on Modal" for
    its throughput and how many containers a GRPO step needs.
    """

    app_name: str = Field("llm3d-reward", pattern=r"^[A-Za-z0-9_.-]+$")
    secret_name: str = Field(
        "llm3d-reward-api",
        description="modal.Secret with LLM3D_API_TOKEN for the web endpoint "
        "(scripts/deploy_reward_api.sh creates it)",
    )
    state_dict: str = Field(
        "llm3d-reward-state",
        description="modal.Dict the web containers share: registered tasks and job states",
    )
    score_cpu: float = Field(2.0, gt=0, description="cores of a score container")
    score_memory_mb: int = Field(4096, ge=512)
    score_inputs: int = Field(2, ge=1, description="programs a score container runs at once")
    score_max_containers: int = Field(64, ge=1)
    score_min_containers: int = Field(0, ge=0, description="kept warm between GRPO steps")
    render_max_containers: int = Field(16, ge=1)
    select_max_containers: int = Field(
        32,
        ge=1,
        description="containers of the select function (POST /select/batch): each runs "
        "score_inputs candidates at once on score_cpu cores, with a fork server and one "
        "render server an input",
    )
    select_min_containers: int = Field(0, ge=0, description="select containers kept warm")
    render_timeout_s: int = Field(300, ge=10)
    web_max_containers: int = Field(4, ge=1)
    web_inputs: int = Field(100, ge=1, description="requests a web container serves at once")
    web_timeout_s: int = Field(3600, ge=60, description="longest POST /reward/batch")
    web_scaledown_s: int = Field(
        1200,
        ge=2,
        le=1200,
        description="idle seconds before a web container stops; a job of POST /reward/jobs "
        "runs in the container that took it, so keep this above the longest job",
    )


def _surveyed_factories() -> list[str]:
    """The Infinigen factories ``configs/infinigen_survey.json`` found to spawn headless (in
    its order); the desk, dining table and chair where the file is not there (an installed
    package without the repository's configs)."""
    survey = Path(__file__).resolve().parent.parent / "configs" / "infinigen_survey.json"
    try:
        records = json.loads(survey.read_text(encoding="utf-8"))["factories"]
    except (OSError, ValueError, KeyError):
        return ["SimpleDeskFactory", "TableDiningFactory", "ChairFactory"]
    return [name for name, rec in records.items() if rec.get("status") == "ok"]


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
        0.03,
        ge=0,
        description="descriptor distance under which two parts or objects are near-duplicates "
        "(a duplicate part is not kept; duplicate objects never land in two splits)",
    )
    unseen_categories: list[str] = Field(
        default_factory=lambda: ["ladder", "bed"],
        description="categories held out whole into eval_unseen.jsonl (none in sft/rl/eval)",
    )
    max_part_faces: int = Field(20_000, ge=4, description="heavier parts are rejected")
    objects_per_category: int = Field(
        60, ge=1, description="objects of a category of weight 1 in categories_file"
    )
    infinigen_python: Path | None = Field(
        None, description="Python of the Infinigen sidecar; default .cache/venv-infinigen"
    )
    infinigen_factories: list[str] = Field(
        default_factory=lambda: _surveyed_factories(),
        description="Infinigen indoor factories spawned for objects (categories_file maps "
        "them); default: every factory the survey (infinigen_survey) found to run",
    )
    infinigen_seeds: int = Field(3, ge=1, description="assets per factory (seeds 0..N-1)")
    infinigen_timeout_s: float = Field(120.0, gt=0, description="limit per Infinigen asset")
    infinigen_survey: Path = Field(
        Path("configs/infinigen_survey.json"),
        description="which indoor factories run headless here, and why others do not "
        "(llm3d data infinigen --survey); the dataset card lists the skipped ones",
    )
    sources: list[str] = Field(
        default_factory=lambda: ["templates", "infinigen", "parts", "composed"],
        description="where data build takes objects from (templates, infinigen, parts, composed)",
    )
    source_max_parts: int = Field(
        200, ge=0, description="generated single parts a build takes (the easiest tier)"
    )
    source_composed: int = Field(
        100, ge=0, description="compositions of 2-6 touching generated parts (the middle tier)"
    )
    composed_max_parts: int = Field(
        6, ge=2, description="most parts in a composition (2-3: short programs, small models)"
    )
    min_object_f_score: float = Field(
        0.9, ge=0, le=1, description="F@0.05 an assembled object needs against its asset's mesh"
    )


class TrainingConfig(Section):
    """SFT and GRPO (DESIGN §7)."""

    backend: Literal["tinker", "local"] = "local"
    base_model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    tinker_base_model: str = "Qwen/Qwen3-VL-30B-A3B-Instruct"
    model_init: Literal["pretrained", "tiny", "small"] = Field(
        "pretrained",
        description="pretrained: base_model is a checkpoint; tiny/small: a randomly "
        "initialised Qwen2.5-VL of that size is built at base_model (once, offline) and "
        "trained from scratch (local backend)",
    )
    lora_rank: int = Field(
        32, ge=0, description="0: full fine-tuning, every weight trained (local backend only)"
    )
    lora_alpha: int = Field(64, ge=1)
    learning_rate: float = Field(1e-4, gt=0, description="the peak learning rate")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="after the warmup: constant, or a linear or cosine decay to "
        "lr_min_ratio x learning_rate at the run's last step",
    )
    warmup_steps: int = Field(0, ge=0, description="steps of linear warmup from 0")
    lr_min_ratio: float = Field(0.1, ge=0, le=1, description="the decay's end, x learning_rate")
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
    system_prompt: Literal["dataset", "short"] = Field(
        "dataset",
        description="dataset: each row's system message (the bpy_lib reference); short: one "
        "line instead (small models, CPU runs)",
    )
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
    temperature: float = Field(
        1.0, gt=0, description="GRPO sampling: the policy is softmax(logits / T); tinker: 1.0 only"
    )
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
