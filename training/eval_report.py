"""Aggregation and output of an evaluation: the numbers, the Markdown table, the plots.

A *record* is one scored completion: ``{task_id, index, category, difficulty, status,
reward, metrics, ...}``. Definitions (every group: overall, per category, per difficulty):

- ``execution_rate``: share of scored completions whose program made a usable mesh
  (status ``ok``).
- ``mean_reward``: mean gated reward of DESIGN §4.
- ``f_score_mean`` / ``f_score_median`` / ``f_score_ge_0.5`` / ``f_score_ge_0.9``: F@0.05
  over all scored completions, a completion without a mesh counting as 0.
- ``chamfer_l2_median``, ``chamfer_unit_x1000_median``, ``hausdorff_90_median``,
  ``normal_consistency_mean``: over completions with a mesh only (undefined otherwise;
  ``null`` when the group has none).
- ``pass@1`` and ``pass@k``: the unbiased estimator of Chen et al. (2021),
  ``1 - C(n-c, k) / C(n, k)`` per task with ``n`` completions of which ``c`` reach
  F@0.05 ≥ ``pass_threshold``, averaged over tasks; ``exec_pass@k`` the same for execution.
- ``infra_errors``: completions the service could not score; excluded from everything else.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TABLE_COLUMNS",
    "aggregate",
    "format_cell",
    "markdown_report",
    "pass_at_k",
    "plot_reports",
    "record_f_score",
    "select_cases",
    "summarize",
]

F_KEY = "f_score_0.05"


def record_f_score(record: Mapping[str, Any]) -> float:
    """A completion's F@0.05, 0 when it made no usable mesh (the one rule the report, the
    cases and best-of-N selection count by)."""
    if record["status"] != "ok":
        return 0.0
    value = (record.get("metrics") or {}).get(F_KEY, 0.0)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task: ``n`` samples, ``c`` correct (Chen et al., 2021)."""
    if n <= 0:
        return 0.0
    k = min(k, n)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _median(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else None


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarize(
    records: Sequence[Mapping[str, Any]], *, k: int, pass_threshold: float
) -> dict[str, Any]:
    """The metrics of one group of records (see the module docstring)."""
    scored = [r for r in records if r["status"] != "infra_error"]
    ok = [r for r in scored if r["status"] == "ok"]
    f_all = [record_f_score(r) for r in scored]

    def ok_metric(name: str) -> list[float]:
        return [float(r["metrics"][name]) for r in ok if name in r["metrics"]]

    by_task: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in scored:
        by_task[str(r["task_id"])].append(r)
    passes: dict[str, list[float]] = {"pass@1": [], f"pass@{k}": [], f"exec_pass@{k}": []}
    best_f: list[float] = []
    for task_records in by_task.values():
        n = len(task_records)
        f_task = [record_f_score(r) for r in task_records]
        correct = sum(f >= pass_threshold for f in f_task)
        executed = sum(r["status"] == "ok" for r in task_records)
        passes["pass@1"].append(pass_at_k(n, correct, 1))
        passes[f"pass@{k}"].append(pass_at_k(n, correct, k))
        passes[f"exec_pass@{k}"].append(pass_at_k(n, executed, k))
        best_f.append(max(f_task))
    n_scored = len(scored)
    summary: dict[str, Any] = {
        "tasks": len({str(r["task_id"]) for r in records}),
        "completions": len(records),
        "scored": n_scored,
        "infra_errors": len(records) - n_scored,
        "execution_rate": len(ok) / n_scored if n_scored else None,
        "mean_reward": _mean([float(r["reward"]) for r in scored if r["reward"] is not None]),
        "f_score_mean": _mean(f_all),
        "f_score_median": _median(f_all),
        "f_score_ge_0.5": sum(f >= 0.5 for f in f_all) / n_scored if n_scored else None,
        "f_score_ge_0.9": sum(f >= 0.9 for f in f_all) / n_scored if n_scored else None,
        "chamfer_l2_median": _median(ok_metric("chamfer_l2")),
        "chamfer_unit_x1000_median": _median(ok_metric("chamfer_unit_x1000")),
        "hausdorff_90_median": _median(ok_metric("hausdorff_90")),
        "normal_consistency_mean": _mean(ok_metric("normal_consistency")),
        "best_of_k_f_score_mean": _mean(best_f),
    }
    for name, values in passes.items():
        summary[name] = _mean(values)
    statuses: dict[str, int] = defaultdict(int)
    for r in records:
        statuses[str(r["status"])] += 1
    summary["statuses"] = dict(sorted(statuses.items()))
    return summary


def aggregate(
    records: Sequence[Mapping[str, Any]], *, k: int, pass_threshold: float
) -> dict[str, Any]:
    """``{"overall": ..., "by_category": {...}, "by_difficulty": {...}}``."""
    out: dict[str, Any] = {"overall": summarize(records, k=k, pass_threshold=pass_threshold)}
    for key, field_name in (("by_category", "category"), ("by_difficulty", "difficulty")):
        groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in records:
            groups[str(r.get(field_name, "unknown"))].append(r)
        out[key] = {
            name: summarize(group, k=k, pass_threshold=pass_threshold)
            for name, group in sorted(groups.items())
        }
    return out


#: (header, summary key, format) of the Markdown table.
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("tasks", "tasks", "d"),
    ("exec", "execution_rate", "%"),
    ("reward", "mean_reward", ".3f"),
    ("F@0.05 mean", "f_score_mean", ".3f"),
    ("F@0.05 med", "f_score_median", ".3f"),
    ("F≥0.5", "f_score_ge_0.5", "%"),
    ("F≥0.9", "f_score_ge_0.9", "%"),
    ("CD-L2 med", "chamfer_l2_median", ".2e"),
    ("CD unit×1000 med", "chamfer_unit_x1000_median", ".3f"),
    ("H90 med", "hausdorff_90_median", ".3f"),
    ("NC mean", "normal_consistency_mean", ".3f"),
)


def format_cell(value: Any, fmt: str) -> str:
    """One table cell: ``-`` for None, a percentage for ``%``, else ``format(value, fmt)``."""
    if value is None:
        return "–"
    if fmt == "%":
        return f"{100.0 * float(value):.1f}%"
    if fmt == "d":
        return str(int(value))
    return format(float(value), fmt)


def _rows(label: str, groups: Mapping[str, Mapping[str, Any]], k: int) -> Iterable[str]:
    for name, summary in groups.items():
        cells = [format_cell(summary.get(key), fmt) for _, key, fmt in TABLE_COLUMNS]
        cells.append(format_cell(summary.get(f"pass@{k}"), "%"))
        yield f"| {label}{name} | " + " | ".join(cells) + " |"


def markdown_report(report: Mapping[str, Any]) -> str:
    """The report as Markdown: settings, then one table (overall, categories, difficulties)."""
    settings = report["settings"]
    k = int(settings["k"])
    results = report["results"]
    header = ["group", *(h for h, _, _ in TABLE_COLUMNS), f"pass@{k}"]
    lines = [
        f"# Evaluation: policy `{settings['policy']}` on `{settings['split']}`",
        "",
        f"- {results['overall']['tasks']} tasks × k={k}; {settings['points']:,} points; "
        f"reward `{report['reward_version']}`; pass threshold F@0.05 ≥ {settings['pass_threshold']}",
        f"- infra errors (excluded): {results['overall']['infra_errors']}; "
        f"statuses: {results['overall']['statuses']}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *_rows("", {"overall": results["overall"]}, k),
        *_rows("category: ", results["by_category"], k),
        *_rows("difficulty: ", results["by_difficulty"], k),
        "",
        "CD-L2, CD unit×1000, H90 and NC are over completions that made a mesh; F@0.05 counts "
        "a completion without a mesh as 0.",
        "",
    ]
    return "\n".join(lines)


def plot_reports(
    records: Sequence[Mapping[str, Any]], report: Mapping[str, Any], out_dir: Path
) -> list[Path]:
    """``f_score_hist.png`` (F@0.05 of every scored completion) and ``per_category.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    policy = report["settings"]["policy"]
    scored = [r for r in records if r["status"] != "infra_error"]
    f_all = [record_f_score(r) for r in scored]
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(f_all, bins=20, range=(0.0, 1.0), color="#4c72b0", edgecolor="white")
    ax.set_xlabel("F@0.05")
    ax.set_ylabel("completions")
    ax.set_title(f"F@0.05 — {policy} ({len(f_all)} completions)")
    fig.tight_layout()
    paths.append(out_dir / "f_score_hist.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    groups = report["results"]["by_category"]
    names = list(groups)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2), 4))
    f_mean = [groups[n]["f_score_mean"] or 0.0 for n in names]
    exec_rate = [groups[n]["execution_rate"] or 0.0 for n in names]
    ax.bar(x - 0.2, f_mean, 0.4, label="F@0.05 mean", color="#4c72b0")
    ax.bar(x + 0.2, exec_rate, 0.4, label="execution rate", color="#dd8452")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"per category — {policy}")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "per_category.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def select_cases(records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The best, median and worst task by F@0.05 (each task's best completion)."""
    best: dict[str, Mapping[str, Any]] = {}
    for r in records:
        if r["status"] == "infra_error":
            continue
        f = record_f_score(r)
        current = best.get(str(r["task_id"]))
        if current is None or f > current["_f"]:
            best[str(r["task_id"])] = {**r, "_f": f}
    if not best:
        return {}
    ranked = sorted(best.values(), key=lambda r: (-r["_f"], str(r["task_id"])))
    return {"best": ranked[0], "median": ranked[len(ranked) // 2], "worst": ranked[-1]}
