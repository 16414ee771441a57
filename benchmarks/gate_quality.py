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

`--ab` runs the other experiment: today's gate (two `archbench run`s, repeats = 5, then
`archbench compare`) against `archbench ab` given the same wall-clock budget, trial by trial
in one session, on a 5-case suite with the settings of examples/ci/suite.toml. The sides are
folders whose model has 20 blocks (baseline; an identical copy for A/A), 21 (a 5% slowdown)
or 22 (10%). See `ab_main`; `--analyse DIR` recomputes the verdicts from kept folders.
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




# ---- A/B in one run versus today's two-run gate ---------------------------------------------
AB_SUITE = """\
[suite]
name = "gate-ab"
description = "examples/ci/suite.toml's size and settings, on a model whose cost is exact"

[settings]
min_time_s = 0.2
max_time_s = 0.5
repeats = 5
threads = 1

[[sweep]]
name = "blocks"
model = "gate_models.py:blocks"
width = [64, 256]
batch_size = [1, 16]

[[sweep]]
name = "wide"
model = "gate_models.py:blocks"
width = [1024]
batch_size = [1]
"""
#: Side folder -> blocks in its model (20 = the baseline).
AB_SIDES = {"base": 20, "base2": 20, "s5": 21, "s10": 22}
AB_KINDS = {"aa": "base2", "s5": "s5", "s10": "s10"}


def make_sides(folder: Path) -> None:
    """One folder per version of the code: the suite and a model file with its block count."""
    source = (HERE / "gate_models.py").read_text()
    for name, blocks in AB_SIDES.items():
        side = folder / name
        side.mkdir(parents=True, exist_ok=True)
        text = source.replace("BASE_BLOCKS = 20", f"BASE_BLOCKS = {blocks}")
        assert f"BASE_BLOCKS = {blocks}" in text
        (side / "gate_models.py").write_text(text)
        (side / "suite.toml").write_text(AB_SUITE)


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n"
                         f"{done.stderr}")
    return time.perf_counter() - started


def today_trial(folder: Path, trial: Path, cand: str) -> float:
    """Today's gate: the baseline's run and the candidate's run (repeats = 5 each), as two
    CI jobs would make them; returns their wall time together (the budget ab gets)."""
    total = 0.0
    for label, side in (("A", "base"), ("B", cand)):
        total += timed([sys.executable, "-m", "bench", "run", "suite.toml", "--out",
                        str(trial / f"today-{label}"), "--no-report"], folder / side)
    return total


def ab_trial(folder: Path, trial: Path, cand: str, budget_s: float, threshold: str,
             seed: str) -> float:
    return timed([sys.executable, "-m", "bench", "ab", "suite.toml", "--baseline", ".",
                  "--candidate", f"../{cand}", "--out", str(trial / "ab"), "--budget",
                  f"{budget_s:.1f}", "--threshold", threshold, "--seed", seed, "--json"],
                 folder / "base")


def ab_main() -> None:
    parser = argparse.ArgumentParser(description="archbench ab versus today's gate")
    parser.add_argument("--ab", action="store_true")
    parser.add_argument("--aa", type=int, default=20, help="A/A trials of archbench ab")
    parser.add_argument("--aa-today", type=int, default=6,
                        help="of which this many also run today's gate")
    parser.add_argument("--s5", type=int, default=4, help="5%% slowdown trials (both gates)")
    parser.add_argument("--s10", type=int, default=3, help="10%% slowdown trials (both gates)")
    parser.add_argument("--threshold", default="3%", help="ab's timing threshold")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="run no today's gate; give every ab trial this budget (e.g. the "
                             "median today's wall time of an earlier session's run)")
    parser.add_argument("--keep", type=Path, help="folder for the sides and run folders")
    parser.add_argument("--analyse", type=Path, metavar="DIR",
                        help="only recompute the verdicts from a kept folder")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "gate_ab.json")
    args = parser.parse_args()
    if args.analyse:
        folder = args.analyse
        plan = json.loads((folder / "plan.json").read_text())
    else:
        folder = args.keep or Path(tempfile.mkdtemp(prefix="gate-ab-"))
        make_sides(folder)
        kinds = ["s5"] * args.s5 + ["s10"] * args.s10 + ["aa"] * args.aa_today
        import random

        random.Random(0).shuffle(kinds)
        kinds += ["aa"] * (args.aa - args.aa_today)  # ab-only A/A trials at the end
        plan = {"threshold": args.threshold, "trials": []}
        for i, kind in enumerate(kinds):
            trial = folder / f"t{i:02d}-{kind}"
            trial.mkdir()
            entry: dict[str, Any] = {"dir": trial.name, "kind": kind,
                                     "load1": os.getloadavg()[0]}
            with_today = i < args.s5 + args.s10 + args.aa_today and args.budget is None
            budgets = [t["budget_s"] for t in plan["trials"] if t.get("today_s")]
            if with_today and i % 2 == 0:
                entry["today_s"] = today_trial(folder, trial, AB_KINDS[kind])
            budget = entry.get("today_s") or args.budget or (
                statistics.median(budgets) if budgets else 60.0)
            if with_today and i % 2 == 1:  # the other order: ab first, on the last budget
                budget = statistics.median(budgets) if budgets else 60.0
            entry["budget_s"] = budget
            entry["ab_s"] = ab_trial(folder, trial, AB_KINDS[kind], budget, args.threshold,
                                     f"trial{i}")
            if with_today and i % 2 == 1:
                entry["today_s"] = today_trial(folder, trial, AB_KINDS[kind])
            plan["trials"].append(entry)
            (folder / "plan.json").write_text(json.dumps(plan, indent=2))
            print(f"{trial.name}: today {entry.get('today_s', 0):.0f} s, ab {entry['ab_s']:.0f}"
                  f" s (budget {budget:.0f} s), load {entry['load1']:.2f}", flush=True)
    results = analyse(folder, plan)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["summary"], indent=2))
    print(f"written: {args.out}; folders kept in {folder}")


def analyse(folder: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Verdicts per case-trial: ab at its threshold; today's gate at 5% (its default) and at
    ab's threshold; and how each ab case's minimum detectable effect shrank pair by pair."""
    from bench.results.store import load_run

    rows: list[dict[str, Any]] = []
    shrink: list[dict[str, Any]] = []
    for entry in plan["trials"]:
        trial = folder / entry["dir"]
        gates: list[tuple[str, Path, Path, str]] = [
            ("ab", trial / "ab" / "baseline", trial / "ab" / "candidate", plan["threshold"])]
        if (trial / "today-B").exists():
            gates += [("today-5%", trial / "today-A", trial / "today-B", "5%"),
                      (f"today-{plan['threshold']}", trial / "today-A", trial / "today-B",
                       plan["threshold"])]
        for gate, a, b, threshold in gates:
            options = CompareOptions.from_specs(f"{threshold},exact=off",
                                                allow_env_mismatch=True)
            for v in compare_runs(a, b, options).verdicts:
                if v.metric == "median_ms":
                    rows.append({"trial": entry["dir"], "kind": entry["kind"], "gate": gate,
                                 "case": v.name, "verdict": v.verdict, "delta_pct": v.delta_pct,
                                 "mde_pct": v.mde_pct, "n": v.n_baseline})
        shrink += mde_by_pairs(load_run(trial / "ab" / "baseline"),
                               load_run(trial / "ab" / "candidate"), entry["dir"])
    summary: dict[str, Any] = {}
    for gate in sorted({r["gate"] for r in rows}):
        for kind in ("aa", "s5", "s10"):
            mine = [r for r in rows if r["gate"] == gate and r["kind"] == kind]
            if not mine:
                continue
            counts = {v: sum(r["verdict"] == v for r in mine) for v in
                      ("regression", "improvement", "same", "inconclusive")}
            trials = {r["trial"] for r in mine}
            failing = {r["trial"] for r in mine if r["verdict"] == "regression"}
            summary[f"{gate} {kind}"] = {"case_trials": len(mine), **counts,
                                         "trials": len(trials), "trials_red": len(failing)}
    walls = [(e.get("today_s"), e["ab_s"], e["budget_s"]) for e in plan["trials"]]
    summary["wall_s"] = {"today": [round(w[0], 1) for w in walls if w[0]],
                         "ab": [round(w[1], 1) for w in walls],
                         "ab_budget": [round(w[2], 1) for w in walls]}
    by_case: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for item in shrink:
        if item["mde_pct"] is not None:
            by_case.setdefault(item["case"], {}).setdefault(item["pairs"], []).append(
                (item["mde_pct"], item["worker_s"]))
    # Per case: the median MDE over trials after k pairs, and the worker seconds k pairs took.
    summary["mde_by_case_and_pairs"] = {
        case: {k: {"mde_pct": round(statistics.median(m for m, _ in v), 2),
                   "worker_s": round(statistics.median(t for _, t in v), 1), "trials": len(v)}
               for k, v in sorted(ks.items())}
        for case, ks in sorted(by_case.items())}
    return {"plan": plan, "rows": rows, "mde_by_pairs": shrink, "summary": summary}


def mde_by_pairs(base: Any, cand: Any, trial: str) -> list[dict[str, Any]]:
    """For each case of an A/B run: the paired test on its first k pairs, k = 2, 3, ...
(each worker by its 10th-percentile time, as the gate pairs them),
    with the seconds of worker time those pairs took (MDE at alpha / cases, as the gate)."""
    from bench.gate.paired import paired_test, worker_time

    out = []
    by_case: dict[str, dict[str, dict[int, Any]]] = {}
    for side, run in (("b", base), ("c", cand)):
        for r in run.records:
            if r.status == "ok" and r.samples_ns:
                by_case.setdefault(r.name, {"b": {}, "c": {}})[side][r.repeat] = r
    cases = len(by_case)
    for name, sides in by_case.items():
        ids = sorted(set(sides["b"]) & set(sides["c"]))
        seconds = 0.0
        for k, rid in enumerate(ids, start=1):
            seconds += sum(sides[s][rid].duration_s or 0.0 for s in "bc")
            if k < 2:
                continue
            xb = [worker_time(sides["b"][i].samples_ns) for i in ids[:k]]
            xc = [worker_time(sides["c"][i].samples_ns) for i in ids[:k]]
            test = paired_test(xb, xc, alpha=0.05 / cases)
            out.append({"trial": trial, "case": name, "pairs": k, "worker_s": round(seconds, 2),
                        "mde_pct": test.mde_pct, "ratio": test.ratio})
    return out


if __name__ == "__main__":
    if "--ab" in sys.argv[1:] or "--analyse" in sys.argv[1:]:
        ab_main()
    else:
        main()
