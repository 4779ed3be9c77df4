"""The evaluation runner: a policy over an eval split, scored by the reward service.

Every number this project claims comes from here (``llm3d eval``, ``scripts/run_eval.sh``)::

    settings = EvalSettings(split=Path("data/eval.jsonl"), out_dir=Path("runs/eval/oracle"))
    report = run_eval(settings, OraclePolicy())

Steps: read the split (:mod:`environments.blender_3d.dataset`); register its ground truths
with the reward service (``POST /tasks``, skipped for tasks it knows); ask the policy for
``k`` completions a task; extract the programs (:mod:`llm3d.program`);
score them in batches over HTTP at ``points`` surface samples (100 000 by default: the
evaluation setting of DESIGN §3); aggregate (:mod:`training.eval_report`).

Outputs in ``out_dir``: ``report.json`` (settings, per-group metrics, every record),
``report.md`` (the table), ``f_score_hist.png``, ``per_category.png``, ``grid.png`` (the
best, median and worst task: ground truth above prediction, rendered with
:mod:`worker.render`; needs Blender), and two caches that make a rerun resumable:
``completions.jsonl`` (keyed by the policy's fingerprint, task and sample index) and
``scores.jsonl`` (keyed by reward version, the task's ground-truth hash, points and the
program). ``infra_error`` results are never cached: a rerun retries them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from environments.blender_3d.dataset import Sample, read_split
from environments.blender_3d.harness import Blender3DHarness
from llm3d.client import RewardClient
from llm3d.config import ExecutorConfig, RenderConfig
from llm3d.program import extract_code
from training.best_of import SELECTIONS, markdown_table, selection_table
from training.eval_report import aggregate, markdown_report, plot_reports, select_cases
from training.policies import Policy

__all__ = ["EvalSettings", "JsonlCache", "resolve_split", "run_eval"]

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EvalSettings:
    """What to evaluate and where the report goes.

    Attributes:
        split: the eval split's JSONL file.
        out_dir: the report folder (created; holds the caches).
        k: completions per task (pass@k).
        limit: evaluate the first ``limit`` tasks only.
        points: surface samples per scored program (DESIGN §3: 100 000 for evaluation).
        pass_threshold: F@0.05 at or above which a completion solves its task.
        reward_url, token: the reward service.
        timeout_s: per-program execution limit (default: the service's).
        batch_size: completions per ``POST /reward/batch``.
        grid: render the comparison grid (needs Blender).
        concurrency: tasks sent to the policy at once (threads; 1 for in-process models).
        select: best-of-k selections to report side by side (:mod:`training.best_of`:
            ``first``, ``render``, ``oracle``); empty for none.
    """

    split: Path
    out_dir: Path
    k: int = 1
    limit: int | None = None
    points: int = 100_000
    pass_threshold: float = 0.9
    reward_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    timeout_s: float | None = None
    batch_size: int = 64
    grid: bool = True
    concurrency: int = 1
    select: tuple[str, ...] = ()

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("token")
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def resolve_split(split: str | Path, data_dir: Path) -> Path:
    """A split name (``eval``, ``sft``, ...) → its JSONL file; a path stays as given.

    The name is looked up as ``data_dir/<name>.jsonl``, then ``data_dir/objects/<name>.jsonl``
    (where ``llm3d data build`` writes by default); the first that exists wins, else the
    first is returned (and reading it says it is missing).
    """
    path = Path(split)
    if path.suffix == ".jsonl" or path.is_file():
        return path
    candidates = [data_dir / f"{split}.jsonl", data_dir / "objects" / f"{split}.jsonl"]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


class JsonlCache:
    """An append-only JSONL file of ``{"key": ..., ...}`` rows, read back on open.

    A torn last line (a run killed mid-write) is skipped with a warning.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("%s:%d: unreadable cache line skipped", path, number)
                    continue
                self.rows[str(row["key"])] = row

    def _ends_in_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, 2)
            return handle.read(1) == b"\n"

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self.path.is_file() and self.path.stat().st_size > 0 and not self._ends_in_newline()
        with open(self.path, "a", encoding="utf-8") as handle:
            if torn:  # a run killed mid-line: start on a fresh line
                handle.write("\n")
            for row in rows:
                handle.write(json.dumps(row, allow_nan=True) + "\n")
                self.rows[str(row["key"])] = row


def _completions(
    samples: Sequence[Sample],
    policy: Policy,
    settings: EvalSettings,
    cache: JsonlCache,
    progress: Progress | None,
) -> dict[tuple[str, int], str]:
    """``(task_id, index) → completion``, generating only what the cache lacks.

    With ``settings.concurrency`` > 1 the policy is called from that many threads (one task
    a call); the cache is written from this thread as answers arrive, so an interrupted
    run keeps everything answered so far.
    """
    k = settings.k
    keys = {
        s.id: [_hash("completion", policy.fingerprint, s.id, str(i)) for i in range(k)]
        for s in samples
    }
    todo = [(s, [i for i, key in enumerate(keys[s.id]) if key not in cache]) for s in samples]
    todo = [(s, missing) for s, missing in todo if missing]
    done = len(samples) - len(todo)

    def store(sample: Sample, missing: list[int], texts: list[str]) -> None:
        nonlocal done
        if len(texts) != len(missing):
            raise RuntimeError(
                f"policy {policy.name} returned {len(texts)} completions for "
                f"{sample.id!r}, {len(missing)} were asked for"
            )
        cache.add(
            [
                {"key": keys[sample.id][i], "task_id": sample.id, "index": i, "text": text}
                for i, text in zip(missing, texts, strict=True)
            ]
        )
        done += 1
        if progress is not None:
            progress("generating", done, len(samples))

    if settings.concurrency <= 1 or len(todo) <= 1:
        for sample, missing in todo:
            store(sample, missing, policy.generate(sample, len(missing)))
    else:
        with ThreadPoolExecutor(settings.concurrency, thread_name_prefix="llm3d-eval") as pool:
            futures = {pool.submit(policy.generate, s, len(m)): (s, m) for s, m in todo}
            for future in as_completed(futures):
                sample, missing = futures[future]
                store(sample, missing, future.result())
    generated = sum(len(m) for _, m in todo)
    out: dict[tuple[str, int], str] = {}
    for sample in samples:
        for i, key in enumerate(keys[sample.id]):
            row = cache.get(key)
            assert row is not None
            out[(sample.id, i)] = str(row["text"])
    logger.info(
        "%s: %d completions generated, %d from the cache",
        policy.name,
        generated,
        len(out) - generated,
    )
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _service_state(settings: EvalSettings, samples: Sequence[Sample]) -> tuple[str, dict[str, str]]:
    """Register the tasks; return the reward version and each task's ground-truth hash."""
    harness = Blender3DHarness(settings.reward_url, token=settings.token)
    harness.register(samples)
    with RewardClient(settings.reward_url, token=settings.token) as client:
        version = str(client.health().get("reward_version", "unknown"))
        keys = {t.task_id: t.key for t in client.tasks().tasks}
    return version, keys


def _score(
    settings: EvalSettings,
    samples: Sequence[Sample],
    codes: Mapping[tuple[str, int], str],
    cache: JsonlCache,
    version: str,
    task_keys: Mapping[str, str],
    progress: Progress | None,
) -> dict[tuple[str, int], dict[str, Any]]:
    """``(task_id, index) → result dict``, scoring only what the cache lacks."""
    harness = Blender3DHarness(
        settings.reward_url,
        token=settings.token,
        points=settings.points,
        timeout_s=settings.timeout_s,
        max_items=settings.batch_size,
    )
    keys = {
        ident: _hash(
            "score", version, task_keys.get(ident[0], ident[0]), str(settings.points), code
        )
        for ident, code in codes.items()
    }
    todo = [ident for ident in codes if keys[ident] not in cache]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    done = len(codes) - len(todo)
    for chunk in _chunks(todo, settings.batch_size):
        scored = harness.score_sync([codes[i] for i in chunk], [i[0] for i in chunk])
        rows = []
        for ident, result in zip(chunk, scored, strict=True):
            data = result.model_dump(mode="json")
            results[ident] = data
            if result.status != "infra_error":
                rows.append({"key": keys[ident], "result": data, "reward_version": version})
        cache.add(rows)
        done += len(chunk)
        if progress is not None:
            progress("scoring", done, len(codes))
    for ident in codes:
        if ident not in results:
            row = cache.get(keys[ident])
            assert row is not None
            results[ident] = dict(row["result"])
    logger.info("scored %d completions, %d from the cache", len(todo), len(codes) - len(todo))
    return results


def _records(
    samples: Sequence[Sample],
    k: int,
    texts: Mapping[tuple[str, int], str],
    codes: Mapping[tuple[str, int], str],
    results: Mapping[tuple[str, int], dict[str, Any]],
) -> list[dict[str, Any]]:
    records = []
    for sample in samples:
        for i in range(k):
            ident = (sample.id, i)
            result = results[ident]
            records.append(
                {
                    "task_id": sample.id,
                    "index": i,
                    "category": sample.category,
                    "difficulty": sample.difficulty,
                    "n_parts": sample.n_parts,
                    "status": result["status"],
                    "reward": result["reward"],
                    "metrics": result["metrics"],
                    "components": result["components"],
                    "error": result["error"],
                    "code": codes[ident],
                    "extraction": extract_code(texts[ident]).source,
                }
            )
    return records


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def run_eval(
    settings: EvalSettings,
    policy: Policy,
    *,
    progress: Progress | None = None,
    render: RenderConfig | None = None,
    executor_config: ExecutorConfig | None = None,
) -> dict[str, Any]:
    """Evaluate ``policy`` on the split; write the report files; return the report.

    With ``settings.select``, the report also holds ``selection``: for each way of keeping
    one of a task's ``k`` candidates (:mod:`training.best_of`), what it kept. ``render`` is
    the camera rig that rendered the split (default: the built-in one), used to render the
    candidates for the ``render`` selection; ``executor_config`` the local sandbox's settings.

    Raises:
        DatasetError: when the split is missing or malformed.
        RewardServiceError: when the reward service cannot be reached or refuses a task.
        PolicyError: when the policy cannot produce completions.
    """
    start = time.perf_counter()
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    samples = read_split(settings.split, limit=settings.limit)
    logger.info(
        "%s: %d tasks × k=%d from %s", policy.name, len(samples), settings.k, settings.split
    )
    version, task_keys = _service_state(settings, samples)
    texts = _completions(samples, policy, settings, JsonlCache(out / "completions.jsonl"), progress)
    codes = {ident: extract_code(text).code for ident, text in texts.items()}
    results = _score(
        settings, samples, codes, JsonlCache(out / "scores.jsonl"), version, task_keys, progress
    )
    records = _records(samples, settings.k, texts, codes, results)
    selection = _selection(settings, samples, codes, records, render, executor_config, progress)
    report: dict[str, Any] = {
        "settings": {**settings.public(), "policy": policy.name, "fingerprint": policy.fingerprint},
        "reward_version": version,
        "results": aggregate(records, k=settings.k, pass_threshold=settings.pass_threshold),
        "seconds": round(time.perf_counter() - start, 2),
        "files": {},
    }
    if selection is not None:
        report["selection"] = selection
    files: dict[str, str] = {"json": str(out / "report.json"), "markdown": str(out / "report.md")}
    for path in plot_reports(records, report, out):
        files[path.stem] = str(path)
    if settings.grid:
        grid = _grid(samples, records, out)
        if grid is not None:
            files["grid"] = str(grid)
    report["files"] = files
    report["cases"] = {
        name: {"task_id": r["task_id"], "index": r["index"], "f_score_0.05": r["_f"]}
        for name, r in select_cases(records).items()
    }
    markdown = markdown_report(report)
    if selection is not None:
        markdown += f"\n## Best of {settings.k}\n\n" + markdown_table(selection)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    full = {**report, "records": records}
    (out / "report.json").write_text(json.dumps(_json_safe(full), indent=2), encoding="utf-8")
    return report


def _selection(
    settings: EvalSettings,
    samples: Sequence[Sample],
    codes: Mapping[tuple[str, int], str],
    records: Sequence[Mapping[str, Any]],
    render: RenderConfig | None,
    executor_config: ExecutorConfig | None,
    progress: Progress | None,
) -> dict[str, Any] | None:
    """The best-of-k table of ``settings.select`` (None when no selection is asked for)."""
    if not settings.select:
        return None
    unknown = [s for s in settings.select if s not in SELECTIONS]
    if unknown:
        raise ValueError(f"unknown selection {unknown}; use {', '.join(SELECTIONS)}")
    matches = None
    if "render" in settings.select:
        from training.best_of import render_match_scores

        matches = render_match_scores(
            samples,
            codes,
            render=render or RenderConfig(),
            executor_config=executor_config,
            cache=JsonlCache(settings.out_dir / "matches.jsonl"),
            progress=progress,
        )
    return selection_table(
        records, settings.select, matches=matches, pass_threshold=settings.pass_threshold
    )


def _grid(
    samples: Sequence[Sample], records: Sequence[Mapping[str, Any]], out: Path
) -> Path | None:
    """``grid.png``: best, median and worst task, ground truth above prediction."""
    try:
        from training.eval_grid import render_cases
    except ImportError as exc:  # no Blender in this environment
        logger.warning("comparison grid skipped: %s", exc)
        return None
    cases = select_cases(records)
    if not cases:
        return None
    by_id = {s.id: s for s in samples}
    return render_cases({name: (by_id[str(r["task_id"])], r) for name, r in cases.items()}, out)
