"""`archbench ab SUITE --baseline X --candidate Y`: both versions measured in one run.

Exit codes, as `compare`: 0 no regression; 1 a regression (or, with --fail-on-inconclusive,
a case the run could not decide); 2 bad usage or input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.compare_cmd import add_gate_arguments, emit, options_from
from bench.cli.console import console, say
from bench.cli.suites import (
    add_measure_argument,
    add_suite_arguments,
    load_suites,
    settings_from,
)

if TYPE_CHECKING:
    from bench.engine.ab import ABResult
    from bench.results.record import Record
    from bench.suite.spec import Case


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "ab", help="measure a baseline and a candidate side by side and gate the change",
        description="Measure two versions of the code under test in one run — git revisions "
                    "of this repository (checked out into temporary worktrees), two folders, "
                    "or two Python interpreters — alternating sides worker by worker in a "
                    "seeded ABBA order, so each pair shares the machine's state and its drift "
                    "cancels in their ratio. Per case the log-ratios of the pairs are tested "
                    "(paired t, or Wilcoxon signed-rank / Hodges–Lehmann); a regression needs "
                    "the effect and the corrected evidence, as in `compare`. Cases stop "
                    "adding pairs once their interval is inside ±threshold or wholly beyond "
                    "it. The suite's `repeats` is not used: pairs take its place. Counted cases "
                    "(--measure instructions) take one pair: counts do not drift.",
        epilog="Exit codes: 0 no regression; 1 a regression (or an undecided case with "
               "--fail-on-inconclusive); 2 bad usage or input; 130 interrupted.")
    add_suite_arguments(parser)
    add_measure_argument(parser)
    parser.add_argument("--baseline", "-a", required=True, metavar="REF|DIR|PYTHON",
                        help="the version to compare against: a git revision (origin/main), a "
                             "folder holding the code, or a Python interpreter")
    parser.add_argument("--candidate", "-b", required=True, metavar="REF|DIR|PYTHON",
                        help="the version under test (often `.`: the working tree)")
    parser.add_argument("--out", "-o", type=Path, metavar="DIR",
                        help="where to write DIR/baseline/ and DIR/candidate/ (run folders) and "
                             "DIR/comparison.json (default: reports/runs/<time>-<suite>-ab)")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="stop adding pairs when another would end past this many seconds "
                             "(default: no limit but --max-pairs)")
    parser.add_argument("--min-pairs", type=int, default=4, metavar="N",
                        help="pairs every case gets before it may stop (default 4)")
    parser.add_argument("--max-pairs", type=int, default=12, metavar="N",
                        help="pairs a case gets at most (default 12)")
    parser.add_argument("--paired-test", choices=("t", "wilcoxon"), default="t",
                        help="t on the pairs' log-ratios (default), or Wilcoxon signed-rank "
                             "with the Hodges–Lehmann interval (robust to outlying pairs)")
    parser.add_argument("--pair-quantile", type=float, default=10.0, metavar="Q",
                        help="percentile of a worker's samples that stands for it in its pair "
                             "(default 10: interference only adds time, so the fast end is the "
                             "code's own cost; 50 for the median)")
    parser.add_argument("--seed", default="archbench",
                        help="seeds the ABBA order and the round order (default: archbench)")
    parser.add_argument("--isolation", choices=("forkserver", "spawn"), default="forkserver",
                        help="how each side starts its workers (default forkserver)")
    add_gate_arguments(parser)
    parser.add_argument("--fail-on-inconclusive", action="store_true",
                        help="exit 1 when a timing case could not be decided either way")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the comparison as JSON")
    out.add_argument("--markdown", action="store_true",
                     help="print markdown; also appended to $GITHUB_STEP_SUMMARY when set")
    parser.add_argument("--all", action="store_true",
                        help="show every metric, not only timing and what changed")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bench.engine.ab import ABOptions, resolved_sides, run_ab
    from bench.gate.compare import compare_runs
    from bench.gate.paired import AdaptiveStop

    options = options_from(args)
    suites, cases = load_suites(args)
    settings = settings_from(args)
    ab_options = ABOptions(out=args.out, seed=args.seed, min_pairs=args.min_pairs,
                           max_pairs=args.max_pairs, budget_s=args.budget,
                           isolation=args.isolation, command=("archbench", *sys.argv[1:]),
                           meta=(("method", args.paired_test),
                                 ("quantile", args.pair_quantile)))
    stop = AdaptiveStop(thresholds=options.thresholds, method=args.paired_test,
                        quantile=args.pair_quantile, min_pairs=args.min_pairs)
    quiet = args.json or args.markdown
    observer = PairPrinter(quiet=quiet)
    with resolved_sides(args.baseline, args.candidate) as sides:
        result = run_ab([s.path for s in suites], cases, sides, ab_options, stop=stop,
                        settings=settings, device=args.device, observer=observer)
    # Same machine and run: fingerprints may differ only by what the sides are (another
    # torch for interpreter sides); the comparison says so instead of refusing.
    comparison = compare_runs(result.run_dirs["baseline"], result.run_dirs["candidate"],
                              replace(options, allow_env_mismatch=True,
                                      paired_test=args.paired_test,
                                      pair_quantile=args.pair_quantile))
    comparison = replace(comparison, baseline_label=sides["baseline"].describe(),
                         candidate_label=sides["candidate"].describe())
    out_dir = result.run_dirs["baseline"].parent
    (out_dir / "comparison.json").write_text(json.dumps(comparison.to_dict(), indent=2))
    if not (args.json or args.markdown):
        observer.summary(result)
    emit(comparison, args)
    if comparison.has_regression:
        return 1
    return 1 if args.fail_on_inconclusive and comparison.unresolved() else 0


class PairPrinter:
    """One line per pair: the case, the order the sides ran in, both medians and the ratio."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.out = console() if not quiet else None

    def started(self, run_dirs: dict[str, Path], cases: int) -> None:
        if self.out:
            say(f"A/B run of {cases} case(s): {run_dirs['baseline'].parent}", to=self.out)

    def pair_done(self, case: Case, pair: int, order: tuple[str, str],
                  records: dict[str, Record], state: str | None) -> None:
        if not self.out:
            return
        first = "AB" if order[0] == "baseline" else "BA"
        text = _pair_text(records["baseline"], records["candidate"])
        done = f"  [{state}]" if state else ""
        say(f"pair {pair + 1:>2} {first} {case.name}  {text}{done}", to=self.out)

    def summary(self, result: ABResult) -> None:
        if not self.out:
            return
        why: dict[str, int] = {}
        for state in result.stopped.values():
            why[state] = why.get(state, 0) + 1
        text = ", ".join(f"{n} {_STOPPED[k]}" for k, n in why.items())
        say(f"{sum(result.pairs.values())} pair(s) in {result.wall_s:.0f} s; cases: {text}",
            to=self.out)


def _pair_text(b: Record, c: Record) -> str:
    """Both sides' medians (or counts per call) and their ratio, else their statuses."""
    counts = [r.metrics.get("instructions_per_call") for r in (b, c)]
    if all(isinstance(n, (int, float)) and n > 0 for n in counts):
        nb, nc = float(counts[0]), float(counts[1])  # type: ignore[arg-type]
        return f"{nb:,.0f} → {nc:,.0f} instructions/call ({(nc / nb - 1) * 100:+.2f}%)"
    if b.samples_ns and c.samples_ns:
        mb, mc = statistics.median(b.samples_ns) / 1e6, statistics.median(c.samples_ns) / 1e6
        return f"{mb:.4g} → {mc:.4g} ms ({(mc / mb - 1) * 100:+.1f}%)"
    return f"baseline: {b.status}, candidate: {c.status}"


_STOPPED = {"same": "decided same early", "changed": "decided changed early",
            "max_pairs": "at --max-pairs", "budget": "stopped by --budget",
            "failed": "failed on a side", "counted": "counted (one pair each)"}
