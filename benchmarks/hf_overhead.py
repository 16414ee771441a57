"""Harness time per case of a transformers model against a zoo model of the same size.

Both are token classifiers of about 1.7 M parameters: the zoo `transformer` (2 encoder layers,
width 128, vocabulary 10,000) and `hf:bert` (2 layers, hidden 128, 2 heads, vocabulary 10,000),
64 tokens, batch 1. One forkserver backend (preloading the transformers family, as `archbench
run` does for a suite naming it) runs them alternately, case by case, and each case's wall
time seen from the parent is split at the worker's phase messages as in
`benchmarks.harness_overhead`: start (worker up), build (model built and prepared: seeded
weights, reference output, FLOPs, fidelity), finish (teardown to record); the measuring
window is excluded. Printed: the medians and the ratio transformers / zoo of the totals.

Usage: python -m benchmarks.hf_overhead [--cases 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.engine.backends import backend_for
from bench.engine.process import ProcessBackend
from bench.engine.runner import run_case
from bench.measure.protocol import Phase
from bench.suite import hf
from bench.suite.spec import Case, Settings

QUICK = Settings(warmup_iters=1, warmup_time_s=0.0, min_samples=2, min_time_s=0.0,
                 max_time_s=0.001, threads=1)
ZOO = Case(model="transformer", batch_size=1, depth=2, width=128, activation="gelu",
           seq_len=64, classes=10, settings=QUICK)
HF = Case(model="hf:bert", batch_size=1, depth=2, width=128, heads=2, vocab_size=10_000,
          seq_len=64, classes=10, settings=QUICK)


def one(case: Case, backend: ProcessBackend) -> dict[str, float]:
    seen: dict[str, float] = {}

    def note(message: object) -> None:
        if isinstance(message, Phase):
            seen.setdefault(message.name, time.time())

    begin = time.time()
    record = run_case(case, backend, "bench", on_message=note)
    end = time.time()
    assert record.status == "ok", record.reason
    parts = {"start": seen["build"] - begin, "build": seen["warmup"] - seen["build"],
             "finish": end - seen["teardown"]}
    parts["total"] = sum(parts.values())
    parts["params"] = float(record.metrics["params_total"])
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    args = parser.parse_args()
    backend = backend_for("forkserver")
    assert isinstance(backend, ProcessBackend)
    backend.preload(hf.preload_modules([HF]))
    one(ZOO, backend)  # start the forkserver outside the numbers
    one(HF, backend)
    results: dict[str, list[dict[str, float]]] = {"zoo": [], "hf": []}
    for index in range(args.cases):
        order = (("zoo", ZOO), ("hf", HF)) if index % 2 == 0 else (("hf", HF), ("zoo", ZOO))
        for label, case in order:
            results[label].append(one(case, backend))
    backend.close()
    print(f"median harness time per case over {args.cases} cases each, alternating (ms)")
    print(f"{'model':<28}{'params':>10}{'start':>9}{'build':>9}{'finish':>9}{'total':>9}")
    totals = {}
    for label, case in (("zoo", ZOO), ("hf", HF)):
        rows = results[label]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        totals[label] = med["total"]
        print(f"{case.name[:27]:<28}{int(med['params']):>10,}{med['start'] * 1e3:>9.1f}"
              f"{med['build'] * 1e3:>9.1f}{med['finish'] * 1e3:>9.1f}{med['total'] * 1e3:>9.1f}")
    pairs = sorted(h["total"] / z["total"] for h, z in zip(results["hf"], results["zoo"],
                                                             strict=True))
    print(f"transformers / zoo harness time: {totals['hf'] / totals['zoo']:.3f} (medians); "
          f"per pair median {statistics.median(pairs):.3f} [{pairs[0]:.3f}, {pairs[-1]:.3f}]")


if __name__ == "__main__":
    main()
