"""Does `best` answer a large sweep fast? A synthetic 10,000-case result set (raw samples per
case), asked three questions with confidence-aware constraints: time per answer against the
goal (<= 1 s).

Times `bench.decide.decide` from the loaded DataFrame to the whole answer (verdicts with
intervals from the raw samples, ranking with tie tests, why-not, the Pareto set per family,
scaling boundaries, fp32 twins), a few rounds; the JSONL loading is `bench.load`'s cost and
not part of it.

Usage: python -m benchmarks.best_scale [--cases 10000] [--samples 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.decide import Question, decide
from bench.report.synthetic import synthetic_frame

GOAL_S = 1.0
QUESTIONS = (
    Question("median_ms", ("p99_ms<=2ms", "fidelity_top1_agreement>=0.99")),
    Question("throughput", ("median_ms<=5", "peak_rss_bytes<=1GiB")),
    Question("p99_ms", ("fidelity_rel_l2<=0.005",)),
)


def make_frame(cases: int, samples: int):  # type: ignore[no-untyped-def]
    return synthetic_frame(models=("mlp", "cnn", "transformer"), depths=(2, 4, 6, 8, 12),
                           widths=(64, 128, 256, 512, 1024, 2048), batches=(1, 8, 32, 128),
                           devices=("cpu", "cuda"),
                           precisions=("fp32", "bf16", "fp16", "int8-dynamic"),
                           prunes=(("none", 0.0), ("unstructured", 0.5), ("structured", 0.25),
                                   ("structured", 0.5), ("structured", 0.75)),
                           n_cases=cases, samples=samples, telemetry_points=2, fail_rate=0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frame = make_frame(args.cases, args.samples)
    print(f"{len(frame)} cases, {int((frame['status'] == 'ok').sum())} measured, "
          f"{args.samples} samples each")
    decide(frame, QUESTIONS[0])  # first use loads scipy's distributions: not per answer
    worst = 0.0
    for question in QUESTIONS:
        times, cpu = [], []
        for _ in range(args.rounds):
            start, start_cpu = time.perf_counter(), time.process_time()
            answer = decide(frame, question)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        median = statistics.median(times)
        worst = max(worst, median)
        counts = answer.counts
        print(f"{question.objective} under {', '.join(question.constraints)}: "
              f"wall median {median:.3f} s of {args.rounds} (min {min(times):.3f}), CPU "
              f"median {statistics.median(cpu):.3f} s; "
              f"{counts['meets']} meet, {counts['uncertain']} uncertain, {counts['fails']} "
              f"fail; best: {answer.best['name'] if answer.best is not None else '-'}")
    verdict = "meets" if worst <= GOAL_S else "misses"
    print(f"slowest question: {worst:.3f} s wall per answer ({verdict} the {GOAL_S:g} s goal; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs while measuring)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
