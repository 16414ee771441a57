"""Gate quality: does `archbench compare` stay quiet on noise and catch a real slowdown?

Runs the test-only suite benchmarks/gate_suite.toml (6 CPU cases) with `archbench run` into
run folders A1 B1 A2 B2 ...: A is the model as is, B the same case ids with 15% more blocks
(ARCHBENCH_GATE_SLOWDOWN=1.15). `--interleave run` runs each folder's suite in one go, in
that order (as two CI jobs would); `--interleave case` (default) runs case by case, each
case into every folder before the next case (`--resume` adds it), so the copies of a case
are measured seconds, not minutes, apart. Then:

- A/A: every pair of A runs (rounds choose 2 comparisons): regressions here are false
  positives;
- A/B: each round's A against its B: a case whose slowdown is real should be flagged.

Each comparison uses the gate's defaults (5% threshold, one-sided Mann–Whitney U, Holm
across the 6 cases, alpha 0.05) through the library and through the CLI (exit codes).

Usage (timing-sensitive; take the machine alone):
    flock -x /tmp/archbench-cpu.lock python -m benchmarks.gate_quality [--rounds 3]
        [--interleave case|run] [--set min_time_s=2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.gate.compare import CompareOptions, Comparison, compare_runs
from bench.suite import loader as suite_file

HERE = Path(__file__).resolve().parent
SUITE = HERE / "gate_suite.toml"
SLOWDOWN = "1.15"


def run_arm(out: Path, slowdown: str, case: str | None = None,
            settings: tuple[str, ...] = ()) -> dict[str, Any]:
    """One `archbench run` (of the suite, or of one case added to the folder); returns its
    wall time and the machine's load around it (other users' processes are the main source
    of run-to-run noise on a shared host)."""
    env = {**os.environ, "ARCHBENCH_GATE_SLOWDOWN": slowdown}
    command = [sys.executable, "-m", "bench", "run", str(SUITE), "--out", str(out)]
    if case is not None:
        command += ["--filter", case] + (["--resume"] if (out / "run.json").exists() else [])
    for setting in settings:
        command += ["--set", setting]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"archbench run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return {"run": out.name, "case": case, "slowdown": float(slowdown),
            "wall_s": time.perf_counter() - started, "load1_before": load_before,
            "load1_after": os.getloadavg()[0]}


def cli_exit(base: Path, cand: Path) -> int:
    """The CLI's verdict on timing alone: B really has more parameters and FLOPs (more
    blocks), which the exact metrics would flag by themselves."""
    return subprocess.run([sys.executable, "-m", "bench", "compare", str(base), str(cand),
                           "--threshold", "exact=off"], capture_output=True, text=True).returncode


def rows(comparison: Comparison) -> list[dict[str, Any]]:
    return [{"case": v.name, "delta_pct": v.delta_pct, "ci_low_pct": v.ci_low_pct,
             "ci_high_pct": v.ci_high_pct, "p_value": v.p_value, "p_adjusted": v.p_adjusted,
             "n_baseline": v.n_baseline, "n_candidate": v.n_candidate, "verdict": v.verdict}
            for v in comparison.verdicts if v.metric == "median_ms"]


def machine_drift(seconds: float) -> dict[str, Any]:
    """The machine's own speed over time: medians of short windows of one fixed numpy
    workload, relative to their median. Nothing archbench does is involved;
    a spread beyond the gate's threshold here means A/A verdicts will see it too."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256)).astype(np.float32)

    def work() -> float:
        start = time.perf_counter()
        for _ in range(20):
            a @ a
        return time.perf_counter() - start

    for _ in range(50):
        work()
    medians = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        medians.append(statistics.median(work() for _ in range(30)))
        time.sleep(0.3)
    mid = statistics.median(medians)
    return {"seconds": seconds, "windows": len(medians), "min_rel": min(medians) / mid,
            "max_rel": max(medians) / mid}


def sweep(aa_pairs: list[tuple[Path, Path]], ab_pairs: list[tuple[Path, Path]],
          thresholds: list[float]) -> list[dict[str, Any]]:
    """Verdict counts at other timing thresholds, from the same runs."""
    out = []
    for t in thresholds:
        options = CompareOptions.from_specs(f"{t:g}%")
        aa = [v for a, b in aa_pairs for v in compare_runs(a, b, options).verdicts
              if v.metric == "median_ms"]
        ab = [v for a, b in ab_pairs for v in compare_runs(a, b, options).verdicts
              if v.metric == "median_ms"]
        out.append({"threshold_pct": t, "aa_total": len(aa),
                    "aa_regressions": sum(v.verdict == "regression" for v in aa),
                    "aa_improvements": sum(v.verdict == "improvement" for v in aa),
                    "ab_total": len(ab), "ab_regressions": sum(v.verdict == "regression"
                                                               for v in ab)})
    return out


def show(title: str, table: list[dict[str, Any]], exit_code: int) -> None:
    print(f"\n{title}   (archbench compare exit code {exit_code})")
    print(f"{'case':<32}{'delta':>8}{'95% CI':>20}{'p':>10}{'p_adj':>10}{'n':>10}  verdict")
    for r in table:
        ci = f"[{r['ci_low_pct']:+.1f}, {r['ci_high_pct']:+.1f}]"
        print(f"{r['case']:<32}{r['delta_pct']:>+7.1f}%{ci:>20}{r['p_value']:>10.2g}"
              f"{r['p_adjusted']:>10.2g}{r['n_baseline']:>5}/{r['n_candidate']:<4}  {r['verdict']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "gate_quality.json")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--interleave", choices=("case", "run"), default="case")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a measurement setting for every run, e.g. min_time_s=2")
    parser.add_argument("--sweep", type=float, nargs="+", default=[5.0, 7.5, 10.0],
                        metavar="PCT", help="also count verdicts at these thresholds")
    parser.add_argument("--drift-s", type=float, default=30.0,
                        help="seconds of fixed numpy work timed first, to show how much the "
                             "machine itself drifts (0: skip)")
    args = parser.parse_args()
    drift = machine_drift(args.drift_s) if args.drift_s > 0 else None
    with tempfile.TemporaryDirectory(prefix="gate-quality-") as tmp:
        folder = args.keep or Path(tmp)
        plan = [(folder / f"{arm}{i + 1}", slowdown) for i in range(args.rounds)
                for arm, slowdown in (("A", "1.0"), ("B", SLOWDOWN))]
        a_runs = [out for out, slowdown in plan if slowdown == "1.0"]
        b_runs = [out for out, slowdown in plan if slowdown != "1.0"]
        cases = [c.name for c in suite_file.load(SUITE).cases] if args.interleave == "case" \
            else [None]
        arms = []
        for case in cases:
            for out, slowdown in plan:
                arms.append(run_arm(out, slowdown, case, tuple(args.set)))
                print(f"{out.name} {case or 'suite'} (slowdown {slowdown}): "
                      f"{arms[-1]['wall_s']:.0f} s, load average {arms[-1]['load1_before']:.2f}"
                      f" -> {arms[-1]['load1_after']:.2f}", flush=True)
        results: dict[str, Any] = {"interleave": args.interleave, "settings": args.set,
                                   "arms": arms, "aa": [], "ab": []}
        if drift is not None:
            results["drift"] = drift
        results["sweep"] = sweep(list(itertools.combinations(a_runs, 2)),
                                 list(zip(a_runs, b_runs, strict=True)), args.sweep)
        for a, b in itertools.combinations(a_runs, 2):
            table = rows(compare_runs(a, b))
            code = cli_exit(a, b)
            show(f"A/A {a.name} vs {b.name}", table, code)
            results["aa"].append({"pair": f"{a.name}/{b.name}", "exit": code, "cases": table})
        for a, b in zip(a_runs, b_runs, strict=True):
            table = rows(compare_runs(a, b))
            code = cli_exit(a, b)
            show(f"A/B {a.name} vs {b.name}", table, code)
            results["ab"].append({"pair": f"{a.name}/{b.name}", "exit": code, "cases": table})

    aa = [c for r in results["aa"] for c in r["cases"]]
    ab = [c for r in results["ab"] for c in r["cases"]]
    false_pos = sum(c["verdict"] == "regression" for c in aa)
    # "Real" when both the medians and the whole interval say at least 5% slower.
    real = [c for c in ab if c["delta_pct"] >= 5.0 and c["ci_low_pct"] is not None
            and c["ci_low_pct"] >= 5.0]
    caught_real = sum(c["verdict"] == "regression" for c in real)
    caught_all = sum(c["verdict"] == "regression" for c in ab)
    results["summary"] = {
        "aa_case_comparisons": len(aa), "aa_false_positives": false_pos,
        "aa_false_improvements": sum(c["verdict"] == "improvement" for c in aa),
        "aa_abs_delta_pct": sorted(round(abs(c["delta_pct"]), 1) for c in aa),
        "aa_exit_codes": [r["exit"] for r in results["aa"]],
        "ab_case_comparisons": len(ab), "ab_flagged": caught_all,
        "ab_real": len(real), "ab_real_flagged": caught_real,
        "ab_exit_codes": [r["exit"] for r in results["ab"]],
        "ab_delta_pct": sorted(round(c["delta_pct"], 1) for c in ab),
    }
    s = results["summary"]
    if "drift" in results:
        d = results["drift"]
        print(f"\nmachine drift (fixed numpy work, {d['windows']} short windows over "
              f"{d['seconds']:g} s): window medians {d['min_rel']:.3f}x to {d['max_rel']:.3f}x "
              "of their median")
    print(f"\nA/A: {s['aa_false_positives']} false regression(s) and "
          f"{s['aa_false_improvements']} false improvement(s) in {s['aa_case_comparisons']} "
          f"case comparisons; exit codes {s['aa_exit_codes']}")
    print(f"A/A |change| (%): {s['aa_abs_delta_pct']}")
    print(f"A/B: {s['ab_flagged']} of {s['ab_case_comparisons']} flagged; of those really "
          f"slower (median and interval >= +5%): {s['ab_real_flagged']} of {s['ab_real']}; "
          f"exit codes {s['ab_exit_codes']}")
    print(f"A/B measured slowdowns (%): {s['ab_delta_pct']}")
    print("\nby threshold: A/A regressions (and false improvements), A/B regressions")
    for row in results["sweep"]:
        print(f"  {row['threshold_pct']:>5g}%   A/A {row['aa_regressions']}/{row['aa_total']} "
              f"({row['aa_improvements']})   A/B {row['ab_regressions']}/{row['ab_total']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
