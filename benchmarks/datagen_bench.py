"""Data pipeline throughput and part-fitter quality on held-out generated parts.

Usage: ``.venv/bin/python benchmarks/datagen_bench.py [--parts 300] [--fit-per-family 2]``.
Prints rich tables and writes ``benchmarks/results/datagen.json``.

1. Part generator: ``--parts`` kept samples from scratch (seed 101) with the default
   configuration (one executor server per core): kept samples a second, rejections.
2. Part fitter: ``--fit-per-family`` parts of every generator family drawn with
   ``--seed`` (default 7777; the fitter was developed on parts of seeds 0 and 2024, never
   on these), fitted with verification in Blender: median F@0.05 of the fitted program against the part's mesh,
   the share above 0.9, seconds per mesh, and the same per family.

3. Projection: hours for the seed's 300 K parts on ``--cores`` cores, from (1)'s rate per
   core (assumes linear scaling over executor servers).
4. Build: ``llm3d data build`` over generated single parts and compositions of them
   (``--build-objects`` of each) from (1)'s parts: objects a second, per source, and how
   many compositions were left out as floating.
5. Honest-split pass (:func:`datagen.splits.separate`) on ``--split-items`` synthetic
   descriptors: seconds.
6. With ``--infinigen DIR`` (a folder of ``llm3d data infinigen`` + ``data assemble
   --infinigen``), per factory: seconds to spawn an asset (``--survey``, the factory
   survey), fit + assembly seconds per part, the acceptance rate and median F@0.05 of the
   assembled objects; the overall acceptance rate and spawned assets a second.

Timings on a shared 2-core machine are noisy (other jobs run beside); say so when quoting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from datagen.families import FAMILIES, Ranges, generate_part  # noqa: E402
from datagen.infinigen_survey import factory_report, load_survey  # noqa: E402
from datagen.part_fitter import fit_mesh  # noqa: E402
from datagen.part_generator import generate_parts  # noqa: E402
from llm3d.config import load_config  # noqa: E402
from llm3d.schemas import ExecStatus  # noqa: E402
from worker.execution.executor import Executor  # noqa: E402


def bench_parts(n: int, console: Console, build_objects: int = 0) -> dict[str, object]:
    cfg = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate_parts(
            Path(tmp) / "parts", n, seed=101, data=cfg.data, executor=cfg.executor,
            show_progress=True,
        )  # fmt: skip
        if build_objects:
            built = bench_build(Path(tmp) / "parts", build_objects, console)
    result = summary.as_dict()
    table = Table(title=f"part generator: {n} kept samples")
    for key in ("kept", "attempted", "rejected", "seconds", "samples_per_s"):
        table.add_row(key, str(result[key]))
    console.print(table)
    if build_objects:
        result["build"] = built
    return result


def bench_projection(
    parts: dict[str, object], cores: list[int], console: Console
) -> dict[str, object]:
    here = os.cpu_count() or 1
    per_core = float(parts["samples_per_s"]) / here  # type: ignore[arg-type]
    hours = {n: 300_000 / (per_core * n) / 3600 for n in cores}
    table = Table(title=f"300 K parts at {per_core:.1f} parts/s/core")
    table.add_column("cores")
    table.add_column("hours")
    for n, h in hours.items():
        table.add_row(str(n), f"{h:.2f}")
    console.print(table)
    return {"parts_per_s_per_core": per_core, "hours_for_300k": hours}


def bench_build(parts_dir: Path, n: int, console: Console) -> dict[str, object]:
    from datagen.dataset_builder import build_dataset

    cfg = load_config()
    data = cfg.data.model_copy(update={"source_max_parts": n, "source_composed": n})
    with tempfile.TemporaryDirectory() as tmp:
        summary = build_dataset(
            Path(tmp) / "ds", seed=0, data=data, executor=cfg.executor, render=cfg.render,
            sources=["parts", "composed"], parts_dir=parts_dir, show_progress=True,
        )  # fmt: skip
    result = summary.as_dict()
    table = Table(title=f"data build: {n} single parts + {n} compositions")
    for key in ("objects", "sources", "failed", "splits", "seconds", "objects_per_s"):
        table.add_row(key, str(result[key]))
    console.print(table)
    return result


def bench_splits(n: int, console: Console) -> dict[str, object]:
    import numpy as np

    from datagen.descriptor import DESCRIPTOR_SIZE
    from datagen.splits import SplitItem, separate

    rng = np.random.default_rng(0)
    block = rng.uniform(0, 1, (n, DESCRIPTOR_SIZE)).astype(np.float32)
    splits = rng.choice(["sft", "rl", "eval"], n, p=[0.8, 0.1, 0.1])
    items = [SplitItem(str(k), str(k), str(splits[k]), block[k]) for k in range(n)]
    started = time.perf_counter()
    outcome = separate(items, 0.03)
    seconds = time.perf_counter() - started
    console.print(f"honest-split pass over {n} objects: {seconds:.2f} s ({outcome.moved} moved)")
    return {"items": n, "seconds": seconds, "moved": outcome.moved}


def bench_infinigen(folder: Path, survey_path: Path, console: Console) -> dict[str, object]:
    """Per factory: spawn seconds (the survey), fit + assembly seconds, acceptance, median F."""
    survey = load_survey(survey_path)
    report = factory_report(folder)
    assembled: dict[str, list[dict[str, Any]]] = {}
    for name in ("objects.jsonl", "rejects.jsonl"):
        path = folder / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    assembled.setdefault(str(row["factory"]), []).append(row)
    table = Table(title=f"Infinigen factories: {folder} (spawn times from {survey_path})")
    for col in ("factory", "spawn s", "parts", "fit+assemble s", "s/part", "kept", "rejected",
                "acceptance", "median F@0.05"):  # fmt: skip
        table.add_column(col)
    rows = []
    for entry in report:
        factory = str(entry["factory"])
        rows_f = assembled.get(factory, [])
        parts = sum(int(r.get("n_parts", 0)) for r in rows_f)
        seconds = sum(float(r.get("seconds", 0.0)) for r in rows_f)
        kept, rejected = int(entry["kept"]), int(entry["rejected"])
        spawn = survey.get(factory, {}).get("seconds")
        row = {**entry, "spawn_seconds": spawn, "parts": parts, "assemble_seconds": seconds,
               "seconds_per_part": seconds / parts if parts else None,
               "acceptance": kept / (kept + rejected) if kept + rejected else None}  # fmt: skip
        rows.append(row)
        table.add_row(
            factory, "–" if spawn is None else f"{spawn:.1f}", str(parts), f"{seconds:.1f}",
            f"{seconds / parts:.2f}" if parts else "–", str(kept), str(rejected),
            "–" if row["acceptance"] is None else f"{row['acceptance']:.0%}",
            "–" if entry["median_f_score"] is None else f"{entry['median_f_score']:.3f}",
        )  # fmt: skip
    console.print(table)
    kept_all = sum(int(r["kept"]) for r in report)
    done_all = kept_all + sum(int(r["rejected"]) for r in report)
    ok = [r for r in survey.values() if r.get("status") == "ok"]
    # the fitter on Infinigen parts (fitted in their asset's frame): quality and seconds a part
    part_f = [float(x) for rows_f in assembled.values() for r in rows_f
              for x in r.get("part_f_scores") or ()]  # fmt: skip
    n_parts = sum(int(r.get("n_parts", 0)) for rows_f in assembled.values() for r in rows_f)
    seconds_all = sum(float(r.get("seconds", 0.0)) for rows_f in assembled.values() for r in rows_f)
    if part_f:
        console.print(
            f"fitter on {len(part_f)} Infinigen parts: median F@0.05 {statistics.median(part_f):.3f}, "
            f"{sum(x >= 0.9 for x in part_f) / len(part_f):.0%} >= 0.9, "
            f"{seconds_all / max(1, n_parts):.2f} s a part (fit + assembly + verification)"
        )
    summary: dict[str, object] = {
        "fitter_parts": len(part_f),
        "fitter_part_f_median": statistics.median(part_f) if part_f else None,
        "fitter_share_above_0.9": sum(x >= 0.9 for x in part_f) / len(part_f) if part_f else None,
        "fitter_seconds_per_part": seconds_all / n_parts if n_parts else None,
        "factories": rows,
        "acceptance_rate": kept_all / done_all if done_all else None,
        "surveyed": len(survey),
        "survey_ok": len(ok),
        "assets_per_second_spawn": len(ok) / sum(float(r["seconds"]) for r in ok) if ok else None,
    }
    console.print(
        f"assembled objects kept: {kept_all} of {done_all}; survey: {len(ok)} of {len(survey)} "
        "indoor factories run headless"
    )
    return summary


def bench_fitter(per_family: int, seed: int, console: Console) -> dict[str, object]:
    cfg = load_config()
    rows: list[dict[str, object]] = []
    with Executor(cfg.executor) as ex:
        for family in FAMILIES:
            for index in range(per_family):
                part = generate_part(seed, index, Ranges(), families=[family])
                truth = ex.run(part.code)
                if truth.status is not ExecStatus.OK or abs(truth.vertices).max() > 1.05:
                    continue  # the generator rejects these too (failed / out of frame)
                started = time.perf_counter()
                fit = fit_mesh(truth.vertices, truth.faces, runner=ex)
                rows.append(
                    {
                        "family": family,
                        "modifier": part.modifier,
                        "fitted": fit.family,
                        "f_score_0.05": fit.f_score,
                        "verified": fit.verified,
                        "seconds": time.perf_counter() - started,
                    }
                )
                console.log(f"{family:13s} -> {fit.family:10s} F={fit.f_score:.3f}")
    scores = [float(r["f_score_0.05"]) for r in rows]  # type: ignore[arg-type]
    by_family: dict[str, dict[str, float]] = {}
    table = Table(title=f"part fitter on {len(rows)} held-out parts (seed {seed}, verified)")
    for col in ("family", "n", "median F@0.05", "share > 0.9", "s / mesh", "fitted as"):
        table.add_column(col)
    for family in FAMILIES:
        mine = [r for r in rows if r["family"] == family]
        if not mine:
            continue
        f = [float(r["f_score_0.05"]) for r in mine]  # type: ignore[arg-type]
        secs = [float(r["seconds"]) for r in mine]  # type: ignore[arg-type]
        by_family[family] = {
            "n": len(mine),
            "median_f": statistics.median(f),
            "share_above_0.9": sum(x > 0.9 for x in f) / len(f),
        }
        fitted = sorted({str(r["fitted"]) for r in mine})
        table.add_row(
            family, str(len(mine)), f"{statistics.median(f):.3f}",
            f"{by_family[family]['share_above_0.9']:.2f}", f"{statistics.median(secs):.1f}",
            ", ".join(fitted),
        )  # fmt: skip
    summary = {
        "n": len(rows),
        "median_f_score_0.05": statistics.median(scores),
        "share_above_0.9": sum(x > 0.9 for x in scores) / len(scores),
        "median_seconds_per_mesh": statistics.median(float(r["seconds"]) for r in rows),  # type: ignore[arg-type]
    }
    table.add_row(
        "[bold]all", str(len(rows)), f"[bold]{summary['median_f_score_0.05']:.3f}",
        f"[bold]{summary['share_above_0.9']:.2f}", f"{summary['median_seconds_per_mesh']:.1f}", "",
    )  # fmt: skip
    console.print(table)
    return {"summary": summary, "per_family": by_family, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", type=int, default=300)
    parser.add_argument("--fit-per-family", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7777, help="seed of the held-out parts")
    parser.add_argument("--skip-parts", action="store_true")
    parser.add_argument("--skip-fit", action="store_true")
    parser.add_argument("--cores", type=int, nargs="+", default=[2, 16, 64])
    parser.add_argument("--build-objects", type=int, default=30)
    parser.add_argument("--split-items", type=int, default=100_000)
    parser.add_argument("--infinigen", type=Path, default=None)
    parser.add_argument("--survey", type=Path, default=ROOT / "configs" / "infinigen_survey.json")
    args = parser.parse_args()
    console = Console(width=160)  # wide tables stay readable in a log
    results: dict[str, object] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg(),
    }
    if not args.skip_parts:
        results["parts"] = bench_parts(args.parts, console, args.build_objects)
        results["projection"] = bench_projection(results["parts"], args.cores, console)  # type: ignore[arg-type]
    results["splits"] = bench_splits(args.split_items, console)
    if args.infinigen is not None:
        results["infinigen"] = bench_infinigen(args.infinigen, args.survey, console)
    if not args.skip_fit:
        results["fitter"] = bench_fitter(args.fit_per_family, args.seed, console)
    out = ROOT / "benchmarks" / "results" / "datagen.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
