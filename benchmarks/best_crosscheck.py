"""Does `archbench best` give the answer a careful person gets by hand? Three questions asked
of a run through the command line (`archbench best ... --json`) and answered again with
plain pandas and scipy on `bench.load()`: the same configurations must come back, in the same
order.

The hand answers share no code with `bench.decide`: the median's and the p99's confidence
bounds come straight from binomial order statistics of the sorted raw samples.

Usage: python -m benchmarks.best_crosscheck RUN_DIR   (e.g. a run of
suites/pruning-precision.toml). Exit 1 when an answer differs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

import bench

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Check:
    question: str
    cli: list[str]
    by_hand: list[str]

    @property
    def same(self) -> bool:
        return self.cli == self.by_hand


def upper_bound(samples: list[float], q: float) -> float:
    """The upper end of the distribution-free CI of the q-quantile: the order statistic
    x(u) with P(Binomial(n, q) >= u) <= (1 - confidence) / 2; inf when u > n."""
    ordered = np.sort(np.asarray(samples, dtype=float))
    u = int(sps.binom.ppf(1 - (1 - CONFIDENCE) / 2, len(ordered), q)) + 1  # 1-based
    return float(ordered[u - 1]) if u <= len(ordered) else float("inf")


def ask(run: str, objective: str, constraints: list[str]) -> list[str]:
    args = [sys.executable, "-m", "bench", "best", run, "--objective", objective,
            "--top", "1000", "--confidence", str(CONFIDENCE), "--json"]
    for c in constraints:
        args += ["--constraint", c]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"archbench best failed ({done.returncode}): {done.stderr}")
    return [row["name"] for row in json.loads(done.stdout)["ranking"]]


def crosscheck(run: str) -> list[Check]:
    df = bench.load(run)
    ok = df[df["status"] == "ok"].copy()
    median = ok["median_ms"].astype(float)
    checks = []

    # 1. The fastest configuration whose top-1 agreement with fp32 is at least 0.9 and whose
    #    peak RSS stays under the run's median peak (point metrics: their values decide).
    rss_limit_mib = float(np.floor(ok["peak_rss_bytes"].astype(float).median() / 2 ** 20))
    hand = ok[(ok["fidelity_top1_agreement"] >= 0.9) &
              (ok["peak_rss_bytes"] <= rss_limit_mib * 2 ** 20)]
    hand = hand.assign(m=median).sort_values(["m", "name"])
    checks.append(Check(
        f"fastest median with top-1 >= 0.9 and peak RSS <= {rss_limit_mib:g} MiB",
        ask(run, "median_ms", ["fidelity_top1_agreement>=0.9",
                               f"peak_rss_bytes<={rss_limit_mib:g}MiB"]),
        list(hand["name"])))

    # 2. The highest throughput whose median is surely (upper 95% bound) under a budget set
    #    at the run's median latency.
    budget = float(np.round(median.median(), 3))
    upper = ok["samples_ms"].map(lambda s: upper_bound(s, 0.5))
    hand = ok[upper <= budget]
    hand = hand.assign(t=-hand["throughput_items_s"].astype(float)).sort_values(["t", "name"])
    checks.append(Check(f"highest throughput with median surely <= {budget:g} ms",
                        ask(run, "throughput", [f"median_ms<={budget:g}"]), list(hand["name"])))

    # 3. The least peak memory whose median is surely under 1.5x the run's median latency
    #    and whose relative L2 error stays under 0.6.
    budget3 = float(np.round(1.5 * median.median(), 3))
    hand = ok[(upper <= budget3) & (ok["fidelity_rel_l2"] <= 0.6)]
    hand = hand.assign(r=hand["peak_rss_bytes"].astype(float)).sort_values(["r", "name"])
    checks.append(Check(
        f"least peak memory with median surely <= {budget3:g} ms and rel. L2 <= 0.6",
        ask(run, "peak_memory", [f"median_ms<={budget3:g}", "fidelity_rel_l2<=0.6"]),
        list(hand["name"])))
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder")
    args = parser.parse_args()
    failed = 0
    for check in crosscheck(args.run):
        verdict = "same answer, same order" if check.same else "DIFFERENT"
        print(f"{check.question}: {verdict} ({len(check.cli)} configuration(s))")
        for rank, name in enumerate(check.cli[:5], start=1):
            print(f"  {rank}. {name}")
        if not check.same:
            failed += 1
            print(f"  by hand: {check.by_hand}")
    return 1 if failed else 0


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    raise SystemExit(main())
