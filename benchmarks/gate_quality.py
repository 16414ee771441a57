"""Gate quality: does `archbench compare` stay quiet on noise and catch a real slowdown?

Runs the test-only suite benchmarks/gate_suite.toml (6 CPU cases) as separate
`archbench run` processes, interleaved A B A B ... so drift hits both arms alike: A is the
model as is, B the same case ids with 15% more blocks (ARCHBENCH_GATE_SLOWDOWN=1.15). Then:

- A/A: every pair of A runs (rounds choose 2 comparisons): regressions here are false
  positives;
- A/B: each round's A against its B: a case whose slowdown is real should be flagged.

Each comparison uses the gate's defaults (5% threshold, one-sided Mann–Whitney U, Holm
across the 6 cases, alpha 0.05) through the library and through the CLI (exit codes).

Usage (timing-sensitive; take the machine alone):
    flock -x /tmp/archbench-cpu.lock python -m benchmarks.gate_quality [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.compare import Comparison, compare_runs

HERE = Path(__file__).resolve().parent
SUITE = HERE / "gate_suite.toml"
SLOWDOWN = "1.15"


def run_arm(out: Path, slowdown: str) -> dict[str, Any]:
    """One `archbench run` of the suite; returns its wall time and the machine's load around
    it (other users' processes are the main source of run-to-run noise on a shared host)."""
    env = {**os.environ, "ARCHBENCH_GATE_SLOWDOWN": slowdown}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", "run", str(SUITE), "--out", str(out)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"archbench run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return {"run": out.name, "slowdown": float(slowdown), "wall_s": time.perf_counter() - started,
            "load1_before": load_before, "load1_after": os.getloadavg()[0]}


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-quality-") as tmp:
        folder = args.keep or Path(tmp)
        a_runs, b_runs = [], []
        arms = []
        for i in range(args.rounds):
            for arm, runs, slowdown in (("A", a_runs, "1.0"), ("B", b_runs, SLOWDOWN)):
                out = folder / f"{arm}{i + 1}"
                print(f"running {out.name} (slowdown {slowdown})", flush=True)
                arms.append(run_arm(out, slowdown))
                print(f"  {arms[-1]['wall_s']:.0f} s, load average {arms[-1]['load1_before']:.2f}"
                      f" -> {arms[-1]['load1_after']:.2f}", flush=True)
                runs.append(out)
        results: dict[str, Any] = {"arms": arms, "aa": [], "ab": []}
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
    real = [c for c in ab if c["ci_low_pct"] is not None and c["ci_low_pct"] >= 5.0]
    caught_real = sum(c["verdict"] == "regression" for c in real)
    caught_all = sum(c["verdict"] == "regression" for c in ab)
    results["summary"] = {
        "aa_case_comparisons": len(aa), "aa_false_positives": false_pos,
        "aa_exit_codes": [r["exit"] for r in results["aa"]],
        "ab_case_comparisons": len(ab), "ab_flagged": caught_all,
        "ab_real": len(real), "ab_real_flagged": caught_real,
        "ab_exit_codes": [r["exit"] for r in results["ab"]],
        "ab_delta_pct": sorted(round(c["delta_pct"], 1) for c in ab),
    }
    s = results["summary"]
    print(f"\nA/A: {s['aa_false_positives']} false positive(s) in {s['aa_case_comparisons']} case "
          f"comparisons; exit codes {s['aa_exit_codes']}")
    print(f"A/B: {s['ab_flagged']} of {s['ab_case_comparisons']} flagged; of those whose "
          f"interval says the slowdown is real (lower bound >= 5%): {s['ab_real_flagged']} of "
          f"{s['ab_real']}; exit codes {s['ab_exit_codes']}")
    print(f"A/B measured slowdowns (%): {s['ab_delta_pct']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
