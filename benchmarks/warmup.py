"""Does warming up until steady measure the same levels as a fixed warm-up, for less time?

Runs the quickstart's CPU cases with `warmup = "steady"` (the default) and `warmup = "fixed"`
(the whole `warmup_time_s`, what archbench did before), alternately, and reports per case the
ratio of the two levels with its interval (consistent when the levels differ by no more than
their intervals allow, as in benchmarks/calibration.py), and the warm-up time per worker.

Usage: python -m benchmarks.warmup [--runs 2] [--out benchmarks/out/warmup.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from pathlib import Path

import bench
from benchmarks.calibration import levels, run_suite

SUITE = "suites/quickstart.toml"
MODES = {"steady": ["warmup=steady"], "fixed": ["warmup=fixed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/warmup.json"))
    args = parser.parse_args()
    checks: list[bool] = []
    ratios: list[float] = []
    warmup_ms: dict[str, list[float]] = {m: [] for m in MODES}
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="warmup-") as scratch:
        for k in range(args.runs):
            found = {}
            for mode, settings in MODES.items():
                out = Path(scratch) / f"{mode}-{k}"
                walls[mode].append(run_suite(str(Path(SUITE).resolve()), out, None, settings))
                found[mode] = levels(out)
                frame = bench.load(out)
                warmup_ms[mode] += list(frame["warmup_ms"].dropna())  # each case's first worker
            for case_id in found["steady"].keys() & found["fixed"].keys():
                (m1, h1, _), (m2, h2, _) = found["steady"][case_id], found["fixed"][case_id]
                ratios.append(m1 / m2)
                checks.append(abs(math.log(m1 / m2)) <= math.hypot(h1, h2))
            print(f"run {k + 1}: steady {walls['steady'][-1]:.1f} s, fixed "
                  f"{walls['fixed'][-1]:.1f} s", flush=True)
    report = {"consistent": sum(checks) / len(checks), "comparisons": len(checks),
              "ratio_median": statistics.median(ratios),
              "ratio_range": [min(ratios), max(ratios)],
              "warmup_ms_per_worker": {m: statistics.median(v) for m, v in warmup_ms.items()},
              "wall_s": walls}
    print(f"steady / fixed level: median {report['ratio_median']:.3f} (range "
          f"{min(ratios):.3f}–{max(ratios):.3f}); {report['consistent'] * 100:.0f}% of "
          f"{len(checks)} consistent within their intervals")
    print("warm-up per worker (median): " + ", ".join(
        f"{m} {v:.0f} ms" for m, v in report["warmup_ms_per_worker"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
