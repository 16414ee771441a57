"""Per-case overhead of the harness: worker start + model build + teardown, without measuring.

For each isolation mode, runs the same tiny case many times and splits each case's wall time
(seen from the parent) at the worker's phase messages:

    start   parent asks for a worker          -> worker announces "build"
    build   model built and prepared          -> worker announces "warmup"
    (measuring: warm-up + calibration + timed window, excluded)
    finish  worker announces "teardown"       -> the record is ready in the parent

and, since a worker's exit overlaps the next worker's start, also the end-to-end figure:
(wall time of all cases back to back - their warm-up-to-teardown windows) / cases.

Usage: python -m benchmarks.harness_overhead [--cases 30] [--modes forkserver spawn inline]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.engine.backends import backend_for
from bench.engine.runner import run_case
from bench.measure.protocol import Phase
from bench.suite.spec import Case, Settings

TINY = Case(model="mlp", batch_size=1, depth=1, width=8, activation="relu", features=8,
            classes=2, settings=Settings(warmup_iters=1, warmup_time_s=0.0, min_samples=2,
                                         min_time_s=0.0, max_time_s=0.001))


def overheads(mode: str, cases: int) -> dict[str, float]:
    backend = backend_for(mode)
    run_case(TINY, backend, "warm")  # start the forkserver (imports torch) outside the numbers
    parts: dict[str, list[float]] = {"start": [], "build": [], "finish": [], "total": []}
    measuring = 0.0
    wall_start = time.time()
    for _ in range(cases):
        seen: dict[str, float] = {}
        begin = time.time()
        def note(message, seen=seen):
            if isinstance(message, Phase):
                seen.setdefault(message.name, time.time())

        record = run_case(TINY, backend, "bench", on_message=note)
        end = time.time()
        assert record.status == "ok", record.reason
        parts["start"].append(seen["build"] - begin)
        parts["build"].append(seen["warmup"] - seen["build"])
        parts["finish"].append(end - seen["teardown"])
        parts["total"].append(parts["start"][-1] + parts["build"][-1] + parts["finish"][-1])
        measuring += seen["teardown"] - seen["warmup"]
    backend.close()
    result = {k: statistics.median(v) * 1e3 for k, v in parts.items()}
    result["end_to_end"] = (time.time() - wall_start - measuring) / cases * 1e3
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--modes", nargs="+", default=["forkserver", "spawn", "inline"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/harness_overhead.json"))
    args = parser.parse_args()
    results = {mode: overheads(mode, args.cases) for mode in args.modes}
    print(f"median per-case overhead over {args.cases} cases (ms), measuring excluded")
    print(f"{'mode':<12}{'start':>10}{'build':>10}{'finish':>10}{'total':>10}{'end-to-end':>12}")
    for mode, r in results.items():
        print(f"{mode:<12}{r['start']:>10.1f}{r['build']:>10.1f}{r['finish']:>10.1f}"
              f"{r['total']:>10.1f}{r['end_to_end']:>12.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
