"""Is there a part of a case's speed that every worker of one run shares and that changes
between runs? Compare, per case, how the means of independent runs scatter with what the
scatter of their workers predicts.

Each isolation mode ("forkserver": workers forked from one preloaded server per run, the
default; "spawn": every worker a fresh interpreter) runs the suite --runs times, interleaved
(forkserver-1, spawn-1, forkserver-2, ...). For each case: the within-run sd of the workers'
log medians (pooled over runs), the sd of the runs' mean logs, and their ratio

    R = var(run means) / (within-run variance / workers per run)

which is about 1 when the workers' scatter covers what moves between runs, and well above 1
when the runs differ by something all their workers share (placement in memory inherited from
the forkserver, or a slow drift of the machine over a run's seconds). The spawn runs take
several times longer, so a low R there does not by itself tell layout from slow drift.

Usage: python -m benchmarks.run_effect [--runs 3] [--suite benchmarks/run_effect_suite.toml]
       [--modes forkserver spawn] [--out benchmarks/out/run_effect.json]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import bench

SUITE = "benchmarks/run_effect_suite.toml"


def run_once(suite: str, isolation: str, out: Path) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "run", suite, "--device", "cpu",
                    "--no-report", "--isolation", isolation, "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def worker_logs(run_dir: Path) -> dict[str, tuple[str, np.ndarray]]:
    """case_id -> (name, log medians of its workers) for the ok cases of a run."""
    frame = bench.load(run_dir)
    frame = frame[frame["status"] == "ok"]
    return {row["case_id"]: (str(row["name"]),
                             np.log([m for m in row["repeat_medians_ms"] if m]))
            for row in frame.to_dict("records")}


def run_effects(runs: list[dict[str, tuple[str, np.ndarray]]]) -> list[dict[str, Any]]:
    rows = []
    for case_id in sorted(set.intersection(*(set(r) for r in runs))):
        logs = [r[case_id][1] for r in runs]
        if any(len(x) < 2 for x in logs):
            continue
        within = float(np.mean([x.var(ddof=1) for x in logs]))
        workers = float(np.mean([len(x) for x in logs]))
        means = np.array([x.mean() for x in logs])
        between = float(means.var(ddof=1))
        rows.append({"case": runs[0][case_id][0], "within_sd": math.sqrt(within),
                     "run_mean_sd": math.sqrt(between),
                     "expected_run_mean_sd": math.sqrt(within / workers),
                     "ratio": between / (within / workers) if within > 0 else math.inf,
                     "run_shifts": [float(m - means.mean()) for m in means]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--suite", default=SUITE)
    parser.add_argument("--modes", nargs="+", default=["forkserver", "spawn"],
                        choices=("forkserver", "spawn"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/run_effect.json"))
    args = parser.parse_args()
    report: dict[str, Any] = {"suite": args.suite, "runs": args.runs, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="run-effect-") as scratch:
        folders: dict[str, list[Path]] = {m: [] for m in args.modes}
        walls: dict[str, list[float]] = {m: [] for m in args.modes}
        for k in range(args.runs):
            for mode in args.modes:
                out = Path(scratch) / f"{mode}-{k}"
                walls[mode].append(run_once(str(Path(args.suite).resolve()), mode, out))
                folders[mode].append(out)
                print(f"{mode:10} run {k + 1}: {walls[mode][-1]:.1f} s", flush=True)
        for mode, dirs in folders.items():
            rows = run_effects([worker_logs(d) for d in dirs])
            report["modes"][mode] = {"wall_s": walls[mode], "cases": rows}
            for row in rows:
                print(f"{mode:10} {row['case'][:44]:44} workers sd {row['within_sd']:6.2%}  "
                      f"run means sd {row['run_mean_sd']:6.2%} (workers predict "
                      f"{row['expected_run_mean_sd']:5.2%})  R {row['ratio']:6.1f}")
            ratios = [r["ratio"] for r in rows]
            print(f"{mode:10} median R {np.median(ratios):.1f} over {len(rows)} cases; "
                  f"wall {np.mean(walls[mode]):.1f} s a run")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
