"""Are a case's intervals calibrated? Run suites again and again as independent runs and check
that the levels of one case differ between runs by no more than their intervals allow.

For every case and every pair of runs: consistent when
|log m1 - log m2| <= 1.96 * sqrt(se1^2 + se2^2), with se = log half-width / 1.96 (the half-width
of the interval in log units, the larger side) — about 95% of cases when the intervals are
calibrated. Also reported: the median half-width (an interval wide "to be safe" would pass the
check and say nothing), and the wall time of each run.

Each mode is an archbench: "now" this checkout with its defaults; "before" (with
--baseline-tree) an older checkout of archbench run the same way, so today's figures are
measured in the same session, the runs interleaved (before-1, now-1, before-2, now-2, ...) so
the machine's drift lands on both alike.

Usage: python -m benchmarks.calibration [--suite S ...] [--runs 2] [--baseline-tree DIR]
       [--set KEY=VALUE ...] [--out benchmarks/out/calibration.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import bench

DEFAULT_SUITES = ("suites/quickstart.toml", "benchmarks/calibration_suite.toml")


def run_suite(suite: str, out: Path, tree: Path | None, settings: list[str]) -> float:
    """One `archbench run` of the suite's CPU cases, as a user runs it; its wall time."""
    env = dict(os.environ)
    if tree is not None:  # an older archbench: its package first on the path, workers too
        env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "bench", "run", suite, "--device", "cpu", "--no-report",
               "--out", str(out), *[x for s in settings for x in ("--set", s)]]
    began = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=tree or Path.cwd(),
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def levels(run_dir: Path) -> dict[str, tuple[float, float, float, str]]:
    """case_id -> (level, log half-width, workers, name) of the ok cases of a run."""
    frame = bench.load(run_dir)
    frame = frame[frame["status"] == "ok"]
    out = {}
    for row in frame.to_dict("records"):
        value, low, high = row["median_ms"], row["ci_low_ms"], row["ci_high_ms"]
        if not (value > 0 and low > 0 and high > 0):
            continue
        half = max(math.log(value / low), math.log(high / value))
        out[row["case_id"]] = (value, half, float(row.get("repeats") or 1), str(row["name"]))
    return out


def consistency(runs: list[dict[str, tuple[float, float, float, str]]]) -> dict[str, Any]:
    checks, halves, workers, pairs = [], [], [], []
    for (i, a), (j, b) in itertools.combinations(enumerate(runs), 2):
        for case_id in sorted(a.keys() & b.keys()):
            (m1, h1, _, name), (m2, h2, _, _) = a[case_id], b[case_id]
            ok = abs(math.log(m1) - math.log(m2)) <= math.hypot(h1, h2)
            checks.append(ok)
            pairs.append({"case": name, "runs": [i, j], "levels_ms": [m1, m2],
                          "log_half_widths": [h1, h2],
                          "log_difference": math.log(m2) - math.log(m1), "consistent": ok})
    for run in runs:
        for value, half, k, _ in run.values():
            halves.append((value, math.expm1(half)))
            workers.append(k)
    ms_scale = [h for v, h in halves if v >= 1.0]
    return {"comparisons": len(checks),
            "consistent": float(np.mean(checks)) if checks else None,
            "median_half_width": statistics.median(h for _, h in halves) if halves else None,
            "median_half_width_ms_cases": statistics.median(ms_scale) if ms_scale else None,
            "mean_workers": statistics.mean(workers) if workers else None,
            "pairs": pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", help="suite file (repeatable)")
    parser.add_argument("--runs", type=int, default=2, help="independent runs per mode")
    parser.add_argument("--baseline-tree", type=Path,
                        help="an older archbench checkout to measure 'before' with")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        help="a setting for the 'now' runs (KEY=VALUE)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/calibration.json"))
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    parser.add_argument("--modes", nargs="+", default=None, choices=("before", "now"),
                        help="measure only these (default: both with --baseline-tree)")
    args = parser.parse_args()
    suites = args.suite or list(DEFAULT_SUITES)
    modes: dict[str, Path | None] = {"now": None}
    if args.baseline_tree is not None:
        modes = {"before": args.baseline_tree.resolve(), "now": None}
    if args.modes:
        modes = {m: t for m, t in modes.items() if m in args.modes}
    report: dict[str, Any] = {"suites": suites, "runs": args.runs, "settings": args.settings,
                              "results": {}}
    with tempfile.TemporaryDirectory(prefix="calibration-") as temporary:
        scratch = str(args.keep or temporary)
        folders: dict[tuple[str, str], list[Path]] = {}
        walls: dict[tuple[str, str], list[float]] = {}
        for k in range(args.runs):
            for suite in suites:
                for mode, tree in modes.items():
                    out = Path(scratch) / f"{mode}-{Path(suite).stem}-{k}"
                    wall = run_suite(str(Path(suite).resolve()), out, tree,
                                     args.settings if mode == "now" else [])
                    folders.setdefault((mode, suite), []).append(out)
                    walls.setdefault((mode, suite), []).append(wall)
                    print(f"{mode:6} {suite} run {k + 1}: {wall:.1f} s", flush=True)
        for (mode, suite), dirs in folders.items():
            result = consistency([levels(d) for d in dirs])
            result["wall_s"] = walls[(mode, suite)]
            report["results"].setdefault(suite, {})[mode] = result
    for suite, by_mode in report["results"].items():
        for mode, r in by_mode.items():
            print(f"{suite} [{mode}]: {r['consistent'] * 100:.0f}% of {r['comparisons']} "
                  f"consistent; median ±{r['median_half_width'] * 100:.2f}% "
                  f"(cases >= 1 ms: ±{(r['median_half_width_ms_cases'] or math.nan) * 100:.2f}%)"
                  f"; {r['mean_workers']:.1f} workers a case; wall "
                  f"{statistics.mean(r['wall_s']):.1f} s")
        if "before" in by_mode:
            ratio = statistics.mean(by_mode["now"]["wall_s"]) / statistics.mean(
                by_mode["before"]["wall_s"])
            print(f"{suite}: wall time now / before = {ratio:.2f}")
            by_mode["wall_ratio_now_before"] = ratio
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
