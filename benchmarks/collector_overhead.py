"""Do the collectors move the numbers? Median of a small CPU model, all collectors on vs off.

"On" is the default: the parent samples the worker's RSS every 5 ms, the in-worker probes
run at every phase, and the profiler runs after the timed window. "Off" is
`telemetry = false, profile = false`. The two run interleaved in one process (on/off, then
off/on, ...), each case in a fresh worker, so drift on a shared machine hits both alike.

Reports, per thread count, the median of the per-case medians with collectors on and off,
and the median of the per-pair ratios (on / off) with its 95% confidence interval. Goal:
within ±2%. Run under the exclusive lock on a shared machine:

    flock -x /tmp/archbench-cpu.lock python -m benchmarks.collector_overhead
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.isolation import backend_for
from bench.runner import run_case
from bench.spec import Case, Settings
from bench.stats import median_ci

MODEL = Case(model="mlp", batch_size=32, depth=2, width=256, activation="relu", features=256,
             classes=10)


def case_for(threads: int, on: bool, max_time_s: float) -> Case:
    settings = Settings(min_time_s=max_time_s / 2, max_time_s=max_time_s, threads=threads,
                        telemetry=on, profile=on)
    return replace(MODEL, settings=settings)


def measure(threads: int, pairs: int, max_time_s: float, logs: Path) -> dict[str, Any]:
    backend = backend_for("forkserver")
    run_case(case_for(threads, False, 0.2), backend, "warm")  # start the forkserver first
    medians: dict[bool, list[float]] = {True: [], False: []}
    for index in range(pairs):
        order = (True, False) if index % 2 == 0 else (False, True)
        for on in order:
            record = run_case(case_for(threads, on, max_time_s), backend, "overhead",
                              log_dir=logs)  # the profiler's chatter goes there
            assert record.status == "ok", record.reason
            if on:
                assert record.metrics.get("peak_rss_bytes"), "collectors did run"
                assert record.info.get("profile"), "the profiler did run"
            medians[on].append(statistics.median(record.samples_ns) / 1e3)
    backend.close()
    ratios = [a / b for a, b in zip(medians[True], medians[False], strict=True)]
    low, high = median_ci(ratios, 0.95)
    return {
        "threads": threads, "pairs": pairs,
        "median_on_us": statistics.median(medians[True]),
        "median_off_us": statistics.median(medians[False]),
        "ratio_median": statistics.median(ratios), "ratio_ci95": [low, high],
        "medians_on_us": medians[True], "medians_off_us": medians[False],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-time", type=float, default=2.0, dest="max_time_s")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/collector_overhead.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        results = [measure(t, args.pairs, args.max_time_s, Path(logs)) for t in args.threads]
    print(f"{MODEL.name}: median per-call latency, collectors on vs off, {args.pairs} "
          "interleaved pairs")
    print(f"{'threads':>8}{'on (us)':>12}{'off (us)':>12}{'on/off':>10}{'95% CI':>20}")
    for r in results:
        delta = (r["ratio_median"] - 1) * 100
        low, high = ((x - 1) * 100 for x in r["ratio_ci95"])
        print(f"{r['threads']:>8}{r['median_on_us']:>12.2f}{r['median_off_us']:>12.2f}"
              f"{delta:>+9.2f}%{f'[{low:+.2f}%, {high:+.2f}%]':>20}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
