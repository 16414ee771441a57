"""Change-point detection quality on synthetic histories with this machine's real noise.

The noise comes from real repeated runs: RUN folders of a suite run with `repeats` >= 2 (by
default this script makes them: `archbench run benchmarks/history_noise.toml` RUNS times,
six small CPU cases with 5 repeats each, about 20 s a run). For each real case, each run
gives one noise draw: the logs of its per-repeat medians minus the case's overall level, so
a draw carries both the run's offset from the other runs (run-to-run drift) and the spread
of its repeats.

Each synthetic history has COMMITS commits x 50 cases: 10 flat, 8 each with a step of
3%, 5%, 10% and 20% (half slower, half faster) at a random commit, and 8 with a gradual 10%
drift over 20 commits. Every point is a fresh noise draw from the real case the synthetic
case copies, added to its true level; the detector (bench.history.analyse, the same code as
`archbench history`) sees the per-repeat medians only, as it would from a store.

Reported: recall per step size (a change point at the true commit, or within +-1), drifts
found (and as what), false change points per 1,000 commits of flat series, and extra change
points in series that have a step.

Usage:
    python -m benchmarks.history_quality [--runs RUN_DIR ...] [--histories 20]
        [--penalty 4.0 ...] [--make-runs 16]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.history.analyse import DetectOptions, Series, analyse
from bench.results import load_records
from bench.results.repeats import merge_repeats

HERE = Path(__file__).resolve().parent
SUITE = HERE / "history_noise.toml"
STEPS = (3.0, 5.0, 10.0, 20.0)
DRIFT_PCT, DRIFT_LEN = 10.0, 20


def make_runs(count: int, out: Path) -> list[Path]:
    runs = []
    for i in range(count):
        run = out / f"noise-{i:02d}"
        done = subprocess.run([sys.executable, "-m", "bench", "run", str(SUITE), "--out",
                               str(run), "--no-report"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"archbench run failed:\n{done.stdout}\n{done.stderr}")
        runs.append(run)
    return runs


def noise_pool(runs: list[Path]) -> dict[str, list[np.ndarray]]:
    """Per real case: one array of log per-repeat-median offsets per run."""
    per_case: dict[str, list[np.ndarray]] = defaultdict(list)
    for run in runs:
        for record in merge_repeats(load_records(run)):
            medians = (record.timing or {}).get("repeat_medians_ns") or []
            if record.status == "ok" and len(medians) >= 2:
                per_case[record.name].append(np.log(np.asarray(medians, dtype=float)))
    pool = {}
    for name, draws in per_case.items():
        centre = float(np.mean([d.mean() for d in draws]))
        pool[name] = [d - centre for d in draws]
    if not pool:
        raise SystemExit("no case with 2 or more repeats in the runs given")
    return pool


def synthetic(rng: np.random.Generator, pool: dict[str, list[np.ndarray]], commits: int,
              history: int) -> tuple[list[Series], list[dict[str, Any]]]:
    names = sorted(pool)
    kinds = (["flat"] * 10 + [f"step{s:g}" for s in STEPS for _ in range(8)] +
             ["drift"] * 8)
    series, truth = [], []
    start = np.datetime64("2026-01-01T00:00:00")
    times = tuple((start + np.timedelta64(i, "h")).astype("datetime64[us]").item()
                  for i in range(commits))
    shas = tuple(f"{history:04d}{i:036x}" for i in range(commits))
    for c, kind in enumerate(kinds):
        real = names[c % len(names)]
        true = np.zeros(commits)
        info: dict[str, Any] = {"kind": kind, "case": c, "real": real}
        sign = 1.0 if c % 2 == 0 else -1.0
        if kind.startswith("step"):
            pct = float(kind[4:])
            at = int(rng.integers(20, commits - 20))
            true[at:] = sign * math.log1p(pct / 100)
            info.update(at=at, pct=sign * pct)
        elif kind == "drift":
            at = int(rng.integers(20, commits - DRIFT_LEN - 20))
            total = sign * math.log1p(DRIFT_PCT / 100)
            true[at:at + DRIFT_LEN] = total * (np.arange(DRIFT_LEN) + 1) / DRIFT_LEN
            true[at + DRIFT_LEN:] = total
            info.update(at=at, end=at + DRIFT_LEN - 1, pct=sign * DRIFT_PCT)
        draws = pool[real]
        level = np.empty(commits)
        se = np.empty(commits)
        for i in range(commits):
            d = draws[int(rng.integers(len(draws)))] + true[i]
            level[i] = d.mean()
            se[i] = d.std(ddof=1) / math.sqrt(d.size)
        series.append(Series(fingerprint="synthetic", environment="{}", case_id=f"case{c:02d}",
                             name=f"{kind}-{c:02d}", commits=shas, times=times,
                             log_level=level, se_log=se, low_ms=np.exp(level - 1.96 * se),
                             high_ms=np.exp(level + 1.96 * se), runs=(1,) * commits,
                             repeats=tuple(int(draws[0].size) for _ in range(commits))))
        truth.append(info)
    return series, truth


def score(histories: int, commits: int, pool: dict[str, list[np.ndarray]],
          options: DetectOptions, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # exact, +-1, total
    drift_kinds: dict[str, int] = defaultdict(int)
    flat_false = flat_commits = extra = step_series = steps_as_drift = 0
    sizes: dict[str, list[float]] = defaultdict(list)
    fit_s = 0.0
    per_noise: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for h in range(histories):
        series, truth = synthetic(rng, pool, commits, h)
        started = time.perf_counter()
        result = analyse(series, options=options)
        fit_s += time.perf_counter() - started
        by_case = defaultdict(list)
        for change in result.changes():
            by_case[change.series.case_id].append(change.point)
        for s, info in zip(series, truth, strict=True):
            points = by_case[s.case_id]
            kind = info["kind"]
            if kind == "flat":
                flat_false += len(points)
                flat_commits += commits
            elif kind.startswith("step"):
                step_series += 1
                key = kind[4:] + "%"
                found[key][2] += 1
                exact = [p for p in points if p.index == info["at"]]
                near = [p for p in points if abs(p.index - info["at"]) <= 1 and
                        (p.ratio > 1) == (info["pct"] > 0)]
                found[key][0] += bool(exact)
                per_noise[info["real"]][key][0] += bool(near)
                per_noise[info["real"]][key][1] += 1
                if near and near[0].kind == "drift":
                    steps_as_drift += 1
                found[key][1] += bool(near)
                if near:
                    sizes[key].append(near[0].change_pct)
                extra += len(points) - bool(near)
            else:
                lo, hi = info["at"] - 1, info["end"] + 1
                hits = [p for p in points if p.index >= lo and p.start <= hi + 1 and
                        (p.ratio > 1) == (info["pct"] > 0)]
                found["drift"][2] += 1
                found["drift"][1] += bool(hits)
                if hits:
                    drift_kinds["+".join(sorted({p.kind for p in hits}))] += 1
                    sizes["drift"].append(sum(p.change_pct for p in hits))
    return {
        "penalty": options.penalty, "alpha": options.alpha, "histories": histories,
        "commits": commits,
        "recall": {k: {"exact": v[0] / v[2], "within_1": v[1] / v[2], "series": v[2]}
                   for k, v in sorted(found.items())},
        "measured_change_pct_median": {k: float(np.median(np.abs(v))) for k, v in sizes.items()},
        "recall_within_1_by_noise_source": {
            real: {k: f"{v[0]}/{v[1]}" for k, v in sorted(d.items())}
            for real, d in sorted(per_noise.items())},
        "drift_found_as": dict(drift_kinds),
        "steps_called_drift": steps_as_drift,
        "flat_false_per_1000_commits": 1000 * flat_false / max(flat_commits, 1),
        "flat_commits": flat_commits,
        "extra_per_1000_commits_in_step_series": 1000 * extra / max(step_series * commits, 1),
        "fit_s_per_history": fit_s / histories,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, default=[],
                        help="run folders with repeats >= 2 (default: make them)")
    parser.add_argument("--make-runs", type=int, default=16, metavar="N",
                        help="runs of benchmarks/history_noise.toml to make (default 16)")
    parser.add_argument("--histories", type=int, default=20)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--penalty", type=float, nargs="*", default=[DetectOptions().penalty])
    parser.add_argument("--alpha", type=float, default=DetectOptions().alpha)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    runs = args.runs or make_runs(args.make_runs, Path(tempfile.mkdtemp(prefix="hq-")))
    pool = noise_pool(runs)
    spread = {name: {"runs": len(d), "between_run_sd_pct": 100 * float(np.std(
        [x.mean() for x in d], ddof=1)), "repeat_sd_pct": 100 * float(np.mean(
            [x.std(ddof=1) for x in d]))} for name, d in pool.items()}
    print(json.dumps({"noise": spread}, indent=1))
    results = []
    for penalty in args.penalty:
        out = score(args.histories, args.commits, pool,
                    DetectOptions(penalty=penalty, alpha=args.alpha), args.seed)
        results.append(out)
        print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"noise": spread, "results": results}, indent=1))


if __name__ == "__main__":
    main()
