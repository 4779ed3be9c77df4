"""The evaluation's aggregation: pass@k, group summaries, the Markdown table, the cases."""

from __future__ import annotations

import math
from typing import Any

import pytest

from training.eval_report import aggregate, markdown_report, pass_at_k, select_cases, summarize


def record(task: str, status: str, f: float | None = None, **extra: Any) -> dict[str, Any]:
    metrics = {}
    if f is not None:
        metrics = {"f_score_0.05": f, "chamfer_l2": 0.1 * (1 - f), "hausdorff_90": 1 - f}
        metrics["normal_consistency"] = f
        metrics["chamfer_unit_x1000"] = 10 * (1 - f)
    reward = None if status == "infra_error" else (0.3 + 0.7 * (f or 0) if f is not None else 0.05)
    return {
        "task_id": task,
        "status": status,
        "reward": reward,
        "metrics": metrics,
        "category": extra.get("category", "chair"),
        "difficulty": extra.get("difficulty", "easy"),
    }


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 0, 1, 0.0),
        (5, 2, 1, 0.4),
        (5, 5, 3, 1.0),
        (4, 1, 2, 0.5),
        (3, 1, 3, 1.0),
        (2, 1, 5, 1.0),
    ],
)
def test_pass_at_k_is_the_unbiased_estimator(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_matches_brute_force() -> None:
    from itertools import combinations

    n, c, k = 6, 2, 3
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(combinations(outcomes, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_summary_counts_failures_as_zero_f_and_skips_them_for_distances() -> None:
    records = [
        record("a", "ok", 1.0),
        record("a", "exec_failed"),
        record("b", "ok", 0.6),
        record("b", "ok", 0.2),
        record("c", "infra_error"),
    ]
    s = summarize(records, k=2, pass_threshold=0.9)
    assert (s["tasks"], s["completions"], s["scored"], s["infra_errors"]) == (3, 5, 4, 1)
    assert s["execution_rate"] == pytest.approx(3 / 4)
    assert s["f_score_mean"] == pytest.approx((1.0 + 0 + 0.6 + 0.2) / 4)
    assert s["f_score_median"] == pytest.approx(0.4)
    assert s["f_score_ge_0.5"] == pytest.approx(2 / 4)
    assert s["f_score_ge_0.9"] == pytest.approx(1 / 4)
    assert s["chamfer_l2_median"] == pytest.approx(0.04)  # over the 3 meshes only
    assert s["normal_consistency_mean"] == pytest.approx(0.6)
    assert s["pass@1"] == pytest.approx((0.5 + 0.0) / 2)  # task c has no scored completion
    assert s["pass@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert s["exec_pass@2"] == pytest.approx(1.0)
    assert s["best_of_k_f_score_mean"] == pytest.approx((1.0 + 0.6) / 2)
    assert s["statuses"] == {"exec_failed": 1, "infra_error": 1, "ok": 3}
    assert s["mean_reward"] == pytest.approx((1.0 + 0.05 + 0.72 + 0.44) / 4)


def test_groups_and_markdown() -> None:
    records = [
        record("a", "ok", 1.0, category="chair", difficulty="easy"),
        record("b", "ok", 0.5, category="table", difficulty="hard"),
        record("c", "timeout", category="table", difficulty="hard"),
    ]
    results = aggregate(records, k=1, pass_threshold=0.9)
    assert set(results["by_category"]) == {"chair", "table"}
    assert results["by_category"]["table"]["execution_rate"] == pytest.approx(0.5)
    assert results["by_difficulty"]["easy"]["f_score_mean"] == pytest.approx(1.0)
    report = {
        "settings": {
            "policy": "oracle",
            "split": "eval.jsonl",
            "k": 1,
            "points": 100000,
            "pass_threshold": 0.9,
        },
        "reward_version": "gated-v1",
        "results": results,
    }
    text = markdown_report(report)
    assert "| overall | 3 | 66.7% |" in text
    assert "| category: table | 2 | 50.0% |" in text
    assert "| difficulty: easy | 1 | 100.0% |" in text
    assert "100,000 points" in text


def test_empty_groups_are_none_not_errors() -> None:
    s = summarize([record("a", "infra_error")], k=1, pass_threshold=0.9)
    assert s["execution_rate"] is None and s["f_score_mean"] is None
    assert s["chamfer_l2_median"] is None


def test_cases_best_median_worst_by_each_tasks_best_completion() -> None:
    records = [
        record("a", "ok", 0.2),
        record("a", "ok", 0.9),
        record("b", "exec_failed"),
        record("c", "ok", 0.5),
        record("d", "infra_error"),
    ]
    cases = select_cases(records)
    assert [cases[k]["task_id"] for k in ("best", "median", "worst")] == ["a", "c", "b"]
    assert cases["best"]["_f"] == 0.9
    assert select_cases([]) == {}
    assert not math.isnan(cases["worst"]["_f"])


def test_cache_survives_a_torn_last_line(tmp_path: Any) -> None:
    from training.eval_runner import JsonlCache, resolve_split

    path = tmp_path / "c.jsonl"
    cache = JsonlCache(path)
    cache.add([{"key": "a", "text": "one"}, {"key": "b", "text": "two"}])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"key": "c", "te')  # killed mid-write
    reread = JsonlCache(path)
    assert "a" in reread and "b" in reread and "c" not in reread
    assert reread.get("b") == {"key": "b", "text": "two"}
    reread.add([{"key": "d", "text": "four"}])  # appended on a fresh line, not lost
    assert JsonlCache(path).get("d") == {"key": "d", "text": "four"}
    assert resolve_split("eval", tmp_path) == tmp_path / "eval.jsonl"  # missing: the first
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "eval.jsonl").write_text("")
    assert resolve_split("eval", tmp_path) == tmp_path / "objects" / "eval.jsonl"
    assert resolve_split(str(path), tmp_path) == path
