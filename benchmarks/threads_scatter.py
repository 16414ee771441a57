"""How much do a case's workers scatter, per thread and placement option?

Runs the quickstart's CPU cases with a fixed number of workers per case under each option,
the options interleaved (A B C D, A B C D, ...) so the machine's drift lands on all alike, and
reports per option: the standard deviation of the workers' log medians (median over cases,
and the worst case), what one worker's own interval claims, and how often another worker's
median falls inside a worker's claimed 95% interval (about 83% if the claims were honest).

Options: every CPU for torch unpinned (torch's default), the same without the parent's
samplers (telemetry off), one thread unpinned, and the default — one thread per CPU but one,
the worker pinned away from the parent's samplers.

Usage: python -m benchmarks.threads_scatter [--rounds 2] [--workers 5] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.results.store import load_records
from bench.stats import summarize
from benchmarks.calibration import run_suite

SUITE = "suites/quickstart.toml"


def options() -> dict[str, list[str]]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    return {
        f"threads={cpus} (every CPU), unpinned": [f"threads={cpus}", "pin_cpus=false"],
        f"threads={cpus}, unpinned, no samplers": [f"threads={cpus}", "pin_cpus=false",
                                                   "telemetry=false"],
        "threads=1, unpinned": ["threads=1", "pin_cpus=false"],
        "default: one per CPU but one, pinned": [],
    }


def scatter(run_dir: Path) -> dict[str, Any]:
    by_case: dict[str, list[Any]] = {}
    for record in load_records(run_dir):
        if record.status == "ok" and record.samples_ns:
            by_case.setdefault(record.case_id, []).append(summarize(record.samples_ns))
    sds, claimed, inside = [], [], []
    for workers in by_case.values():
        if len(workers) < 2:
            continue
        sds.append(float(np.std(np.log([w.median_ms for w in workers]), ddof=1)))
        for i, a in enumerate(workers):
            claimed.append(a.ci_rel)
            inside += [a.ci_low_ms <= b.median_ms <= a.ci_high_ms
                       for j, b in enumerate(workers) if i != j]
    return {"sd": sds, "claimed": claimed, "inside": inside}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/threads_scatter.json"))
    args = parser.parse_args()
    found: dict[str, dict[str, list[Any]]] = {}
    common = [f"repeats={args.workers}", "min_time_s=0.2", "max_time_s=0.5"]
    with tempfile.TemporaryDirectory(prefix="threads-") as scratch:
        for k in range(args.rounds):
            for i, (name, settings) in enumerate(options().items()):
                out = Path(scratch) / f"{i}-{k}"
                wall = run_suite(str(Path(SUITE).resolve()), out, None, [*common, *settings])
                got = scatter(out)
                into = found.setdefault(name, {"sd": [], "claimed": [], "inside": []})
                for key, values in got.items():
                    into[key] += values
                print(f"{name} round {k + 1}: {wall:.0f} s, sd "
                      f"{statistics.median(got['sd']) * 100:.2f}%", flush=True)
    report = {name: {"sd_median_pct": statistics.median(v["sd"]) * 100,
                     "sd_max_pct": max(v["sd"]) * 100,
                     "claimed_median_pct": statistics.median(v["claimed"]) * 100,
                     "inside_pct": float(np.mean(v["inside"])) * 100,
                     "cases": len(v["sd"])}
              for name, v in found.items()}
    for name, r in report.items():
        print(f"{name:42} sd of worker medians {r['sd_median_pct']:5.2f}% (worst "
              f"{r['sd_max_pct']:5.1f}%); one worker claims ±{r['claimed_median_pct']:.2f}%; "
              f"another worker inside that: {r['inside_pct']:.0f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
