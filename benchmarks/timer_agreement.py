"""Does archbench's median agree with torch.utils.benchmark.Timer.blocked_autorange?

Three CPU workloads, the same thread count for both, measured alternately (A B A B ...) in
one process so machine drift hits both alike; reports the ratio of medians per round and
the median ratio. Goal: within ±5%.

Usage: python -m benchmarks.timer_agreement [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

from bench.measure.clock import PerfCounterClock
from bench.measure.models.build import build, call
from bench.measure.timing import measure
from bench.measure.worker import torch_threads
from bench.stats import summarize
from bench.suite.spec import Case, Settings

WORKLOADS = {
    "mlp d4 w512 b32": Case(model="mlp", batch_size=32, depth=4, width=512, activation="relu",
                            features=512, classes=10),
    "seed-cnn b8": Case(model="seed-cnn", batch_size=8, classes=10),
    "transformer d2 w256 s64 b8": Case(model="transformer", batch_size=8, depth=2, width=256,
                                       activation="gelu", seq_len=64, classes=10),
}
SETTINGS = Settings(max_time_s=3.0)


def archbench_median_ms(step, threads: int) -> float:
    with torch_threads(threads), torch.inference_mode():
        timing = measure(step, PerfCounterClock(), SETTINGS)
    return summarize(timing.samples_ns).median_ms


def torch_timer_median_ms(step, threads: int) -> float:
    timer = Timer(stmt="step()", globals={"step": step}, num_threads=threads)
    with torch.inference_mode():
        return float(timer.blocked_autorange(min_run_time=2.0).median) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/timer_agreement.json"))
    args = parser.parse_args()
    report = {}
    print(f"threads={args.threads}; ratio = archbench median / torch Timer median")
    for label, case in WORKLOADS.items():
        built, inputs = build(case)
        module = built.module.eval()

        def step(module=module, inputs=inputs):
            return call(module, inputs)

        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(archbench_median_ms(step, args.threads))
            theirs.append(torch_timer_median_ms(step, args.threads))
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        report[label] = {"archbench_ms": ours, "torch_timer_ms": theirs, "ratios": ratios,
                         "median_ratio": statistics.median(ratios)}
        print(f"{label:<28} archbench {statistics.median(ours):8.3f} ms   torch "
              f"{statistics.median(theirs):8.3f} ms   ratio {statistics.median(ratios):.3f} "
              f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
