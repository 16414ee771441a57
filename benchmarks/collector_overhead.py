"""Do the collectors move the numbers? Median of a small CPU model, all collectors on vs off.

"On" is the default: the parent samples the worker's RSS every 5 ms, the in-worker probes
run at every phase, and the profiler runs after the timed window. "Off" is
`telemetry = false, profile = false`. The two run interleaved in one process (on/off, then
off/on, ...), each case in a fresh worker, so drift on a shared machine hits both alike.

Reports, per thread count, the median of the per-case medians with collectors on and off,
and the median of the per-pair ratios (on / off) with its 95% confidence interval. Goal:
within ±2%.

On a shared machine whose speed drifts between workers, whole-case pairs cannot resolve 2%.
So a second measurement (`--blocks`) isolates what can touch the timed window at all: the
in-worker probes act at phase boundaries and the profiler after the window, so only the
parent's samplers run during it. One worker times short blocks of calls while this process
switches the RSS sampler on and off between blocks (ABBA order); neighbouring blocks see the
same machine, so the per-pair ratios are tight. Run under the exclusive lock if you have one:

    flock -x /tmp/archbench-cpu.lock python -m benchmarks.collector_overhead
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.collectors.base import Target
from bench.collectors.rss import RssCollector
from bench.engine.backends import backend_for
from bench.engine.runner import run_case
from bench.stats import median_ci
from bench.suite.spec import Case, Settings

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


def time_blocks(threads: int, calls: int, conn: Any) -> None:
    """Worker side of `interference`: time `calls` forward passes per request, until told
    to stop."""
    import torch

    from bench.measure.models.build import build, call

    torch.set_num_threads(threads)
    built, inputs = build(MODEL)
    module = built.module.eval()
    batch = inputs(MODEL.batch_size) if callable(inputs) else inputs
    with torch.inference_mode():
        for _ in range(200):
            call(module, batch)
        while conn.recv():
            start = time.perf_counter_ns()
            for _ in range(calls):
                call(module, batch)
            conn.send((time.perf_counter_ns() - start) / calls / 1e3)


def interference(threads: int, blocks: int, calls: int, interval_s: float) -> dict[str, Any]:
    """Per-call latency with the parent's RSS sampler on vs off, alternating by block."""
    parent, child = mp.get_context("spawn").Pipe()
    worker = mp.get_context("spawn").Process(target=time_blocks, args=(threads, calls, child))
    worker.start()
    assert worker.pid is not None
    target = Target(pid=worker.pid, started_unix=time.time())
    on_us: list[float] = []
    off_us: list[float] = []
    for index in range(2 * blocks):
        on = index % 4 in (0, 3)  # ABBA: a linear drift cancels within each four blocks
        sampler = RssCollector(interval_s) if on else None
        if sampler is not None:
            sampler.start(target)
        parent.send(True)
        (on_us if on else off_us).append(parent.recv())
        if sampler is not None:
            sampler.stop()
    parent.send(False)
    worker.join()
    ratios = [a / b for a, b in zip(on_us, off_us, strict=True)]
    low, high = median_ci(ratios, 0.95)
    return {"threads": threads, "pairs": len(ratios), "calls_per_block": calls,
            "interval_s": interval_s,
            "median_on_us": statistics.median(on_us), "median_off_us": statistics.median(off_us),
            "ratio_median": statistics.median(ratios), "ratio_ci95": [low, high]}


def print_table(title: str, results: list[dict[str, Any]]) -> None:
    print(title)
    print(f"{'threads':>8}{'on (us)':>12}{'off (us)':>12}{'on/off':>10}{'95% CI':>20}")
    for r in results:
        delta = (r["ratio_median"] - 1) * 100
        low, high = ((x - 1) * 100 for x in r["ratio_ci95"])
        print(f"{r['threads']:>8}{r['median_on_us']:>12.2f}{r['median_off_us']:>12.2f}"
              f"{delta:>+9.2f}%{f'[{low:+.2f}%, {high:+.2f}%]':>20}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-time", type=float, default=2.0, dest="max_time_s")
    parser.add_argument("--blocks", type=int, default=300,
                        help="pairs of blocks for the in-worker sampler on/off measurement")
    parser.add_argument("--calls", type=int, default=200, help="forward passes per block")
    parser.add_argument("--interval", type=float, default=Settings().rss_interval_s,
                        help="the RSS sampler's period in the block measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/collector_overhead.json"))
    args = parser.parse_args()
    blocks = [interference(t, args.blocks, args.calls, args.interval) for t in args.threads]
    with tempfile.TemporaryDirectory() as logs:  # --pairs 0: the block measurement only
        cases = [measure(t, args.pairs, args.max_time_s, Path(logs))
                 for t in args.threads if args.pairs]
    print_table(f"{MODEL.name}: RSS sampler (every "
                f"{args.interval * 1e3:g} ms) on vs off within one worker, "
                f"{args.blocks} ABBA block pairs of {args.calls} calls", blocks)
    if cases:
        print_table(f"{MODEL.name}: all collectors on vs off, whole cases, {args.pairs} "
                    "interleaved pairs", cases)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"blocks": blocks, "cases": cases}, indent=2))


if __name__ == "__main__":
    main()
