"""Which Infinigen indoor factories run headless here (``llm3d data infinigen --survey``).

Issue 19: the dataset covers every indoor factory that spawns an asset headless within
``data.infinigen_timeout_s``, and its card says which were skipped and why. The survey asks
the sidecar for every factory Infinigen's indoor scenes use, spawns seed 0 of each in its
own process under the time limit and records what happened:

- ``ok``: the asset came back with a mesh, split into ``parts`` parts;
- ``timeout``: it did not finish within the limit (cloth simulation, heavy geometry nodes);
- ``failed``: Infinigen raised (the error's first line is kept), or the asset had no mesh.

The record (``configs/infinigen_survey.json`` by default, ``data.infinigen_survey``) is
written after every factory, so a survey resumes where it stopped. The factories to build
from stay a choice of ``data.infinigen_factories``; :func:`skipped` gives the card its list.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datagen.infinigen_extractor import run_sidecar, split_parts
from datagen.progress import progress_bar

__all__ = [
    "factory_report",
    "list_indoor_factories",
    "load_survey",
    "skipped",
    "survey_factories",
]


def list_indoor_factories(python: Path, *, timeout_s: float = 300.0) -> list[str]:
    """``module:Class`` of every factory of Infinigen's indoor scenes, from the sidecar."""
    answer = run_sidecar("", 0, Path("unused.npz"), python=python, timeout_s=timeout_s,
                         request={"list": "indoor"})  # fmt: skip
    if not answer.get("ok"):
        raise RuntimeError(
            f"the Infinigen sidecar could not list its factories: {answer.get('error')}"
        )
    return [str(spec) for spec in answer["factories"]]


def load_survey(path: str | Path) -> dict[str, dict[str, Any]]:
    """The survey's records by factory name; empty when there is none yet."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): dict(v) for k, v in data.get("factories", {}).items()}


def _first_line(error: str, limit: int = 240) -> str:
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else "no message"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _survey_one(spec: str, python: Path, timeout_s: float, raw_dir: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llm3d-survey-") as scratch:
        out = Path(scratch) / "asset.npz"
        answer = run_sidecar(spec, 0, out, python=python, timeout_s=timeout_s)
        if answer.get("ok") and raw_dir is not None:  # data infinigen's seed 0, kept
            raw_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, raw_dir / f"{spec.split(':')[-1]}-0000.npz")
        record: dict[str, Any] = {"spec": spec, "seconds": answer.get("seconds")}
        if answer.get("ok"):
            with np.load(out) as npz:
                parts = split_parts(
                    npz["vertices"], npz["faces"], npz["face_labels"],
                    [str(x) for x in npz["label_names"]],
                )  # fmt: skip
                record.update(status="ok", faces=len(npz["faces"]), parts=len(parts))
            return record
    error = str(answer.get("error", "no answer"))
    if error.startswith("timed out"):
        record.update(status="timeout", seconds=timeout_s, reason=error)
    else:
        record.update(status="failed", reason=_first_line(error))
    return record


def survey_factories(
    out_json: str | Path,
    *,
    python: Path,
    timeout_s: float,
    factories: Sequence[str] | None = None,
    raw_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Spawn seed 0 of every indoor factory (or ``factories``) and record what happened.

    Resumable: factories already in ``out_json`` are not spawned again. With ``raw_dir``
    (an Infinigen folder's ``raw/``) each spawned asset is kept there as ``data infinigen``
    names seed 0, so a build over the surveyed factories does not spawn it again.
    """
    out_json = Path(out_json)
    records = load_survey(out_json)
    specs = list(factories) if factories else list_indoor_factories(python)
    todo = [s for s in specs if s.split(":")[-1] not in records]
    with progress_bar(
        "infinigen survey", total=len(specs), completed=len(specs) - len(todo),
        enabled=show_progress,
    ) as bar:  # fmt: skip
        for spec in todo:
            records[spec.split(":")[-1]] = _survey_one(
                spec, python, timeout_s, Path(raw_dir) if raw_dir else None
            )
            out_json.parent.mkdir(parents=True, exist_ok=True)
            out_json.write_text(
                json.dumps(
                    {"timeout_s": timeout_s, "seed": 0, "factories": dict(sorted(records.items()))},
                    indent=1,
                )
                + "\n",
                encoding="utf-8",
            )
            bar.advance(1)
    return records


def skipped(survey: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Factory -> why it is not in the dataset (every surveyed factory that did not run)."""
    return {
        name: f"{rec['status']}: {rec.get('reason', '')}".rstrip(": ")
        for name, rec in sorted(survey.items())
        if rec.get("status") != "ok"
    }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def factory_report(infinigen_dir: str | Path) -> list[dict[str, Any]]:
    """Per factory of an Infinigen folder: assets that did not spawn, kept, rejected, median F.

    Reads what ``data infinigen`` (``failed.jsonl``) and ``data assemble --infinigen``
    (``objects.jsonl``, ``rejects.jsonl``) wrote; the dataset card shows it.
    """
    folder = Path(infinigen_dir)
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"not_spawned": 0, "kept": 0, "rejected": 0, "f_scores": [], "reasons": []}
    )
    for rec in _jsonl(folder / "failed.jsonl"):
        rows[rec["factory"]]["not_spawned"] += 1
        rows[rec["factory"]]["reasons"].append(
            f"{rec['asset']} did not spawn: {_first_line(rec['error'])}"
        )
    for name, kept in (("objects.jsonl", True), ("rejects.jsonl", False)):
        for rec in _jsonl(folder / name):
            row = rows[rec["factory"]]
            row["kept" if kept else "rejected"] += 1
            row["f_scores"].append(float(rec.get("f_score", 0.0)))
            if not kept:
                row["reasons"].append(f"{rec['asset']}: {rec.get('reason', 'rejected')}")
    report = []
    for factory, row in sorted(rows.items()):
        scores = row.pop("f_scores")
        report.append(
            {"factory": factory, **row,
             "median_f_score": round(statistics.median(scores), 3) if scores else None}
        )  # fmt: skip
    return report
