"""Are "A is faster than B" claims right? Runs benchmarks/ranking_suite.toml, whose pairs have
known orderings — the same MLP twice (true ratio 1) and 20 against 21 identical blocks (the
21-block one is slower) — and scores each pair's claim as `best` and the report make it.

"now": this checkout's claim, `bench.gate.paired.speedup` (workers of the same rounds
paired; faster or slower only when the interval of the ratio excludes 1, else a tie).
"before" (with --baseline-tree): the runs of an older archbench, judged by the rule its
`best` used for one worker a case — the Hodges–Lehmann interval of the two cases' samples.

A wrong claim: a twin called faster or slower, or the 21-block case called faster.

Usage: python -m benchmarks.rankings [--runs 3] [--baseline-tree DIR] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import bench
from bench.gate.paired import speedup
from bench.gate.significance import shift_test
from benchmarks.calibration import run_suite

SUITE = "benchmarks/ranking_suite.toml"


def claim_now(reference: dict[str, Any], case: dict[str, Any]) -> str:
    """"faster", "slower" or "tie": `case` against `reference`."""
    found = speedup(reference, case)
    if found is None or not found.low <= 1.0 <= found.high:
        return "tie" if found is None else ("faster" if found.low > 1 else "slower")
    return "tie"


def claim_before(reference: dict[str, Any], case: dict[str, Any]) -> str:
    test = shift_test(reference["samples_ms"], case["samples_ms"])
    if test.ratio_low is None or test.ratio_high is None or \
            test.ratio_low <= 1.0 <= test.ratio_high:
        return "tie"
    return "faster" if test.ratio_high < 1 else "slower"


def pairs(frame: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(truth, reference, case): the twins ("same") and one block more ("slower")."""
    rows = {}
    for row in frame[frame["status"] == "ok"].to_dict("records"):
        args = json.loads(row["model_args"])
        rows[(int(row["width"]), int(args["blocks"]), args["tag"])] = row
    out = []
    for width in sorted({w for w, _, _ in rows}):
        a, b, more = rows.get((width, 20, "a")), rows.get((width, 20, "b")), \
            rows.get((width, 21, "a"))
        if a and b:
            out.append(("same", a, b))
        for base in (a, b):
            if base and more:
                out.append(("slower", base, more))
    return out


def score(claims: list[tuple[str, str]]) -> dict[str, Any]:
    wrong = [c for truth, c in claims if (truth == "same" and c != "tie")
             or (truth == "slower" and c == "faster")]
    same = [c for truth, c in claims if truth == "same"]
    slower = [c for truth, c in claims if truth == "slower"]
    return {"pairs": len(claims), "wrong": len(wrong),
            "wrong_rate": len(wrong) / len(claims) if claims else None,
            "twins_called_tie": float(np.mean([c == "tie" for c in same])) if same else None,
            "one_more_block_found": float(np.mean([c == "slower" for c in slower]))
            if slower else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-tree", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/rankings.json"))
    args = parser.parse_args()
    modes = {"now": None} if args.baseline_tree is None else {
        "before": args.baseline_tree.resolve(), "now": None}
    claims: dict[str, list[tuple[str, str]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="rankings-") as scratch:
        for k in range(args.runs):
            for mode, tree in modes.items():
                out = Path(scratch) / f"{mode}-{k}"
                wall = run_suite(str(Path(SUITE).resolve()), out, tree, [])
                judge = claim_now if mode == "now" else claim_before
                claims[mode] += [(truth, judge(ref, case))
                                 for truth, ref, case in pairs(bench.load(out))]
                print(f"{mode:6} run {k + 1}: {wall:.1f} s", flush=True)
    report = {mode: score(c) for mode, c in claims.items()}
    for mode, r in report.items():
        print(f"[{mode}] {r['wrong']} wrong of {r['pairs']} pairs ({r['wrong_rate'] * 100:.1f}%)"
              f"; twins called a tie {r['twins_called_tie'] * 100:.0f}%; one block more "
              f"found slower {r['one_more_block_found'] * 100:.0f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
