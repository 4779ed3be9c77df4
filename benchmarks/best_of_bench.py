"""Best-of-N by render match (issue 21): the gain table and the choice of the match's weights.

Reads evaluation folders written by ``llm3d eval --best-of N --select first,render,oracle``
(``report.json`` + ``matches.jsonl``), for example::

    POLICIES=retrieval ./scripts/run_eval.sh --best-of 8
    python benchmarks/best_of_bench.py runs/eval/retrieval

and prints, for each folder: F@0.05, execution rate and unit-cube Chamfer of the first, the
render-matched and the oracle candidate side by side, the seconds a candidate costs
(execute + render + match), and the rank correlation (Spearman) between the match score and
F@0.05 over every matched candidate, for several weights of the silhouette IoU against the
edge similarity (the weight of ``worker.render_match.IOU_WEIGHT`` was chosen from this).
Writes ``benchmarks/results/best_of_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.best_of import STEPS, choose, selection_table  # noqa: E402

WEIGHTS = (0.0, 0.3, 0.5, 0.7, 0.85, 1.0)


def load(folder: Path) -> tuple[list[dict[str, Any]], dict[tuple[str, int], dict[str, Any]]]:
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    records = report["records"]
    wanted = {(str(r["task_id"]), int(r["index"])) for r in records}
    matches: dict[tuple[str, int], dict[str, Any]] = {}
    for line in (folder / "matches.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        ident = (str(row.get("task_id")), int(row.get("index", -1)))
        if ident in wanted:
            matches[ident] = row["match"]
    return records, matches


def spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(xs) < 3:
        return math.nan
    return float(spearmanr(xs, ys).statistic)


def weight_study(
    records: list[dict[str, Any]], matches: dict[tuple[str, int], dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Spearman(match, F@0.05) for each IoU weight: over all candidates pooled, and the mean
    over tasks of the within-task correlation (what a per-task choice depends on)."""
    f = {
        (str(r["task_id"]), int(r["index"])): (r["metrics"] or {}).get("f_score_0.05")
        for r in records
    }
    out = {}
    for w in WEIGHTS:
        pooled: tuple[list[float], list[float]] = ([], [])
        tasks: dict[str, tuple[list[float], list[float]]] = {}
        for ident, m in matches.items():
            if m.get("score") is None or f.get(ident) is None:
                continue
            views = m["views"]
            x = sum(w * v["iou"] + (1 - w) * v["edges"] for v in views) / len(views)
            for xs, ys in (pooled, tasks.setdefault(ident[0], ([], []))):
                xs.append(x)
                ys.append(float(f[ident]))
        within = [spearman(*pair) for pair in tasks.values()]
        within = [r for r in within if math.isfinite(r)]
        out[f"{w:g}"] = {
            "pooled": round(spearman(*pooled), 4),
            "within_task_mean": round(sum(within) / len(within), 4) if within else math.nan,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="llm3d eval --best-of output folders")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/best_of_bench.json")
    args = parser.parse_args()
    results = {}
    for folder in args.folders:
        records, matches = load(folder)
        table = selection_table(records, ("first", "render", "oracle"), matches=matches)
        study = weight_study(records, matches)
        render_picks = choose(records, "render", matches)
        results[str(folder)] = {"selection": table, "spearman_by_iou_weight": study,
                                "tasks": len(render_picks)}  # fmt: skip
        print(f"\n{folder}  ({len(render_picks)} tasks, {len(records)} candidates)")
        print(f"{'selection':<10} {'F@0.05':>8} {'exec':>7} {'pass':>7} {'uCD×1000':>9}")
        for by in ("first", "render", "oracle"):
            row = table[by]
            chamfer = row["chamfer_unit_x1000_median"]
            print(
                f"{by:<10} {row['f_score_0.05']:>8.4f} {row['execution_rate']:>7.1%} "
                f"{row['pass_rate']:>7.1%} {'-' if chamfer is None else f'{chamfer:9.3f}':>9}"
            )
        split = " + ".join(f"{step[:-2]} {table.get(f'{step}_per_candidate')}" for step in STEPS)
        print(
            f"seconds a candidate (execute + render + match): {table.get('seconds_per_candidate')}"
            f"  ({split})"
        )
        print("Spearman(match, F@0.05) by IoU weight (pooled / mean within a task):")
        for w, r in study.items():
            print(f"  IoU weight {w:>4}: {r['pooled']:7.4f} / {r['within_task_mean']:7.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
