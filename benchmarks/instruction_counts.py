"""Instruction counts: repeatable under load, sensitive to a 2% heavier model, cheap enough
per case once the counting worker is warm, and how count ratios track time ratios.

Parts (each prints one JSON object; `all` runs them in turn):

- `repeat`: a 10-case CPU suite counted twice with `archbench run --measure instructions`,
  the second time with two busy-loop processes loading both cores. Per case, the change of
  `instructions_per_call` between the runs; `archbench compare` on them (exit 0 expected);
  the wall time of each run (one counting worker: torch's import under valgrind, then the
  cases) and the per-case cost once the worker is warm (record durations after the first).
- `gate`: one counting worker counts, `--trials` times, the base MLP (A), the same MLP with
  one extra small layer (B, +1.9% FLOPs) and A again (A'), each a fresh build; the gate's
  defaults (counts: 0.5%) compare A with B (should be a regression every trial) and A with
  A' (never). Then three workloads in two configurations are counted and timed (a normal
  forkserver run, one thread): the count ratio against the ratio of median times.

Usage (valgrind runs ~50-100x slower than native; a few minutes per worker start):
    python -m benchmarks.instruction_counts all [--trials 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.engine.counting import CountingWorker
from bench.engine.record import make_record
from bench.gate.compare import compare_records
from bench.measure.protocol import WorkerJob
from bench.results.record import Record
from bench.results.store import load_records
from bench.suite import loader as suite_file
from bench.suite.spec import Case

HERE = Path(__file__).resolve().parent

REPEAT_SUITE = """
[suite]
name = "counted10"
[settings]
measure = "instructions"
[[sweep]]
name = "mlp"
model = ["mlp"]
depth = [2, 4]
width = [128, 256]
batch_size = [1, 32]
[[sweep]]
name = "cnn"
model = ["cnn"]
depth = [2]
width = [16]
batch_size = [4]
[[sweep]]
name = "transformer"
model = ["transformer"]
depth = [1]
width = [64]
seq_len = [32]
batch_size = [2]
[[sweep]]
name = "text"
model = ["text-classifier"]
batch_size = [8]
"""

GATE_SUITE = """
[suite]
name = "counted-gate"
[settings]
measure = "instructions"
count_calls = {calls}
[[sweep]]
name = "base"
model = ["{factory}:make"]
depth = [2]
width = [256]
batch_size = [32]
model_args = {{ extra = 0, trial = 0 }}
"""

#: Three workloads, two configurations each: (label, suite block body).
AGREEMENT = (
    ("mlp width 256 -> 512", 'model = ["mlp"]\ndepth = [2]\nwidth = [256, 512]\nbatch_size = [32]'),
    ("cnn depth 2 -> 4", 'model = ["cnn"]\ndepth = [2, 4]\nwidth = [16]\nbatch_size = [8]'),
    ("transformer seq 32 -> 64",
     'model = ["transformer"]\ndepth = [1]\nwidth = [64]\nseq_len = [32, 64]\nbatch_size = [4]'),
)


def busy() -> None:
    while True:
        pass


def archbench_run(suite: Path, out: Path, *extra: str) -> dict[str, Any]:
    started = time.perf_counter()
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-m", "bench", "run", str(suite), "--out", str(out),
                           "--no-report", *extra], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"archbench run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return {"wall_s": round(time.perf_counter() - started, 1),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def part_repeat(work: Path) -> dict[str, Any]:
    suite = work / "counted10.toml"
    suite.write_text(REPEAT_SUITE)
    quiet = archbench_run(suite, work / "quiet")
    hogs = [mp.Process(target=busy, daemon=True) for _ in range(2)]
    for hog in hogs:
        hog.start()
    try:
        loaded = archbench_run(suite, work / "loaded")
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()
    a = {r.name: r for r in load_records(work / "quiet")}
    b = {r.name: r for r in load_records(work / "loaded")}
    changes = {}
    for name in a:
        x = a[name].metrics.get("instructions_per_call")
        y = b[name].metrics.get("instructions_per_call")
        changes[name] = {"quiet": x, "loaded": y,
                         "change_pct": None if not x or y is None else round((y - x) / x * 100, 4),
                         "spread_pct": [a[name].metrics.get("instructions_spread_pct"),
                                        b[name].metrics.get("instructions_spread_pct")]}
    compare = subprocess.run([sys.executable, "-m", "bench", "compare", str(work / "quiet"),
                              str(work / "loaded")], capture_output=True, text=True)
    durations = [r.duration_s for r in load_records(work / "quiet")]
    return {"cases": len(a), "runs": {"quiet": quiet, "loaded_2_busy_loops": loaded},
            "max_abs_change_pct": max(abs(c["change_pct"]) for c in changes.values()
                                      if c["change_pct"] is not None),
            "compare_exit": compare.returncode, "compare_tail": compare.stdout[-1500:],
            "first_case_s (incl. worker start)": round(durations[0], 1),
            "per_case_warm_s": {"median": round(statistics.median(durations[1:]), 1),
                                "max": round(max(durations[1:]), 1)},
            "per_case": changes}


def count(worker: CountingWorker, case: Case, run_dir: Path, run_id: str) -> Record:
    started = time.perf_counter()
    outcome = worker.run(WorkerJob(case=case, search_path=(str(HERE),)), case.settings.timeout_s,
                         on_message=lambda m: None)
    return make_record(case, outcome, run_id, started_at=datetime.now(UTC).isoformat(),
                       duration_s=time.perf_counter() - started)


def per_call(record: Record) -> float:
    if record.status != "ok":
        raise SystemExit(f"{record.name}: {record.status}: {record.reason}\n{record.traceback}")
    return float(record.metrics["instructions_per_call"])


def part_gate(work: Path, trials: int, calls: int, heavier: tuple[tuple[str, int], ...] =
              (("extra", 5),), agreement_too: bool = True) -> dict[str, Any]:
    suite_path = work / "gate.toml"
    suite_path.write_text(GATE_SUITE.format(calls=calls, factory=HERE / "count_models.py"))
    (base,) = suite_file.load(suite_path).cases
    base = replace(base, settings=base.settings.for_counting())
    worker = CountingWorker(base.settings.count_isa)
    started = time.perf_counter()
    flagged_ab, flagged_aa, rows = 0, 0, []
    try:
        for trial in range(trials):
            a = replace(base, model_args=(("extra", 0), ("trial", trial)))
            b = replace(base, model_args=tuple(sorted({"extra": 0, **dict(heavier),
                                                       "trial": trial}.items())))
            ra, rb, ra2 = (count(worker, c, work, f"trial{trial}") for c in (a, b, a))
            rb = replace(rb, case_id=ra.case_id, name=ra.name)  # the "same case", heavier
            ab = compare_records([ra], [rb])
            aa = compare_records([ra], [ra2])
            verdict_ab = _verdict(ab)
            verdict_aa = _verdict(aa)
            flagged_ab += verdict_ab == "regression"
            flagged_aa += verdict_aa == "regression"
            rows.append({"trial": trial, "a": per_call(ra), "b": per_call(rb),
                         "a_again": per_call(ra2),
                         "b_vs_a_pct": round((per_call(rb) / per_call(ra) - 1) * 100, 3),
                         "a_again_vs_a_pct": round((per_call(ra2) / per_call(ra) - 1) * 100, 4),
                         "ab": verdict_ab, "aa": verdict_aa,
                         "seconds": [round(r.duration_s or 0, 1) for r in (ra, rb, ra2)]})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        sensitivity_s = time.perf_counter() - started
        agreement = []
        for label, body in AGREEMENT if agreement_too else ():
            text = f'[suite]\nname = "agree"\n[settings]\nmeasure = "instructions"\n' \
                   f'count_calls = {calls}\n[[sweep]]\n{body}\n'
            path = work / "agree.toml"
            path.write_text(text)
            cases = [replace(c, settings=c.settings.for_counting())
                     for c in suite_file.load(path).cases]
            counts = [per_call(count(worker, c, work, "agree")) for c in cases]
            agreement.append({"workload": label, "cases": [c.name for c in cases],
                              "instructions_per_call": counts,
                              "count_ratio": round(counts[1] / counts[0], 3)})
    finally:
        worker.close()
    timed = _timed_ratios(work) if agreement_too else []
    for row, ratio in zip(agreement, timed, strict=True):
        row.update(ratio)
        row["count_over_time"] = round(row["count_ratio"] / row["time_ratio"], 3)
    return {"trials": trials, "count_calls": calls, "heavier": dict(heavier),
            "ab_flagged": f"{flagged_ab}/{trials}", "aa_flagged": f"{flagged_aa}/{trials}",
            "b_vs_a_pct_range": [min(r["b_vs_a_pct"] for r in rows),
                                 max(r["b_vs_a_pct"] for r in rows)],
            "a_again_vs_a_abs_max_pct": max(abs(r["a_again_vs_a_pct"]) for r in rows),
            "sensitivity_wall_s": round(sensitivity_s, 1),
            "per_case_warm_s_median": statistics.median(s for r in rows[1:] for s in r["seconds"])
            if len(rows) > 1 else None,
            "trials_detail": rows, "agreement": agreement}


def _verdict(comparison: Any) -> str:
    rows = [v for v in comparison.verdicts if v.metric == "instructions_per_call"]
    return rows[0].verdict if rows else "missing"


def _timed_ratios(work: Path, repeats: int = 3, folder: str = "timed") -> list[dict[str, Any]]:
    """The same six cases timed (forkserver workers, one thread, `repeats` repeats): the
    ratio of the pooled medians, and of the fastest repeat medians (less hurt by a busy
    machine, whose other users only ever slow a repeat down)."""
    blocks = "".join(f'[[sweep]]\nname = "w{i}"\n{body}\n' for i, (_, body) in enumerate(AGREEMENT))
    path = work / f"{folder}.toml"
    path.write_text(f'[suite]\nname = "agree-timed"\n[settings]\nthreads = 1\n'
                    f'repeats = {repeats}\nmax_time_s = 2.0\n' + blocks)
    info = archbench_run(path, work / folder)
    from bench.results.frame import load

    frame = load(work / folder)
    medians = list(frame["median_ms"])
    fastest = [min(m) for m in frame["repeat_medians_ms"]]
    out = []
    for i in range(len(AGREEMENT)):
        a, b = medians[2 * i], medians[2 * i + 1]
        out.append({"median_ms": [round(a, 4), round(b, 4)], "time_ratio": round(b / a, 3),
                    "fastest_repeat_ms": [round(fastest[2 * i], 4), round(fastest[2 * i + 1], 4)],
                    "fastest_ratio": round(fastest[2 * i + 1] / fastest[2 * i], 3),
                    "timed_run": info})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("repeat", "gate", "timed", "all"),
                        help="timed: only the timed side of the agreement (5 repeats)")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2, help="count_calls for the gate part")
    parser.add_argument("--keep", type=Path, help="keep run folders here")
    parser.add_argument("--heavier", default="extra=5",
                        help="model_args of the heavier model B (extra=K: a K-wide bottleneck; "
                             "relus=R: R more ReLUs)")
    parser.add_argument("--no-agreement", action="store_true",
                        help="gate part: the A/B and A/A trials only")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="archbench-counts-"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"cpu": os.cpu_count(), "load_at_start": os.getloadavg()}
    if args.part in ("repeat", "all"):
        out["repeat"] = part_repeat(work)
    if args.part in ("gate", "all"):
        heavier = tuple((k, int(v)) for k, v in
                        (item.split("=") for item in args.heavier.split(",")))
        out["gate"] = part_gate(work, args.trials, args.calls, heavier,
                                agreement_too=not args.no_agreement)
    if args.part == "timed":
        out["timed"] = _timed_ratios(work, repeats=5, folder="timed5")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
