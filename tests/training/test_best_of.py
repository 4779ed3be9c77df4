"""Keeping one of a task's N candidates (training/best_of.py): first, render match, oracle."""

from __future__ import annotations

from typing import Any

import pytest

from training.best_of import choose, markdown_table, selection_table


def record(task: str, index: int, f: float | None, status: str = "ok") -> dict[str, Any]:
    metrics = {} if f is None else {"f_score_0.05": f, "chamfer_unit_x1000": 10 * (1 - f)}
    return {"task_id": task, "index": index, "status": status, "metrics": metrics}


RECORDS = [
    record("a", 0, 0.3),
    record("a", 1, 0.95),
    record("a", 2, None, "exec_failed"),
    record("b", 0, 0.8),
    record("b", 1, 0.4),
    record("b", 2, 0.6),
]
MATCHES = {
    ("a", 0): {"score": 0.5, "seconds": 0.2},
    ("a", 1): {"score": 0.9, "seconds": 0.2},
    ("a", 2): {"score": None, "error": "exec_failed", "seconds": 0.1},
    ("b", 0): {"score": 0.2, "seconds": 0.2},
    ("b", 1): {"score": 0.7, "seconds": 0.2},
    ("b", 2): {"score": None, "error": "no plain background", "seconds": 0.2},
}


def picked(by: str) -> dict[str, int]:
    return {t: int(r["index"]) for t, r in choose(RECORDS, by, MATCHES).items()}


def test_each_selection_keeps_its_candidate() -> None:
    assert picked("first") == {"a": 0, "b": 0}
    assert picked("oracle") == {"a": 1, "b": 0}
    assert picked("render") == {"a": 1, "b": 1}  # by the renders, not the ground truth


def test_an_unmatched_candidate_is_never_preferred_and_none_usable_keeps_the_first() -> None:
    matches = {k: {"score": None, "seconds": 0.1} for k in MATCHES}
    assert {t: int(r["index"]) for t, r in choose(RECORDS, "render", matches).items()} == {
        "a": 0,
        "b": 0,
    }


def test_unknown_selections_and_render_without_scores_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown selection 'best'"):
        choose(RECORDS, "best")
    with pytest.raises(ValueError, match="match scores"):
        choose(RECORDS, "render")


def test_the_table_summarises_what_each_selection_kept() -> None:
    table = selection_table(RECORDS, ("first", "render", "oracle"), matches=MATCHES)
    assert table["first"]["f_score_0.05"] == pytest.approx((0.3 + 0.8) / 2)
    assert table["render"]["f_score_0.05"] == pytest.approx((0.95 + 0.4) / 2)
    assert table["oracle"]["f_score_0.05"] == pytest.approx((0.95 + 0.8) / 2)
    assert table["oracle"]["pass_rate"] == 0.5 and table["first"]["execution_rate"] == 1.0
    assert table["seconds_per_candidate"] == pytest.approx(1.1 / 6, abs=1e-4)
    assert table["matched_candidates"] == 4
    text = markdown_table(table)
    assert "| render | 2 | 0.6750 |" in text and "candidates matched" in text
