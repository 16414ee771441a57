"""`archbench compare BASELINE CANDIDATE`: the regression gate on the command line.

Exit codes: 0 no regression; 1 at least one regression; 2 bad usage or input (a missing run,
an unknown baseline, a bad threshold, or environments that differ without
--allow-env-mismatch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich import box
from rich.table import Table

from bench.cli.console import SUMMARY_ENV, append_summary, say, table_console
from bench.errors import CompareError
from bench.gate import render as compare_output
from bench.gate.compare import CompareOptions, Comparison, compare_runs
from bench.gate.significance import CORRECTIONS
from bench.gate.thresholds import THRESHOLD_HELP, parse_thresholds
from bench.results.baselines import BASELINES_DIR_HELP, baselines_dir, resolve


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "compare", help="gate a candidate run against a baseline",
        description="Compare a candidate run with a baseline, case by case (matched by "
                    "case_id). A timing regression needs both effect (the median moved by at "
                    "least the threshold) and evidence (one-sided Welch's t on the per-repeat "
                    "medians with 3 or more repeats a side, else Mann–Whitney U on the raw "
                    "samples; corrected across cases).",
        epilog="Exit codes: 0 no regression; 1 a regression; 2 bad usage or input, including "
               "runs from different environments without --allow-env-mismatch.")
    parser.add_argument("baseline", metavar="BASELINE",
                        help="run folder, or the name of a saved baseline")
    parser.add_argument("candidate", metavar="CANDIDATE",
                        help="run folder, or the name of a saved baseline")
    add_gate_arguments(parser)
    parser.add_argument("--baselines-dir", type=Path, metavar="DIR", help=BASELINES_DIR_HELP)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the comparison as JSON")
    out.add_argument("--markdown", action="store_true",
                     help=f"print markdown; also appended to ${SUMMARY_ENV} when it is set")
    parser.add_argument("--all", action="store_true",
                        help="show every metric, not only timing and what changed")
    parser.set_defaults(handler=handle)


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", "-t", action="append", default=[], metavar="SPEC",
                        help=THRESHOLD_HELP)
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="significance level after correction (default 0.05)")
    parser.add_argument("--correction", choices=CORRECTIONS, default="holm",
                        help="across cases: holm (family-wise, default) or bh (false discovery)")
    parser.add_argument("--min-samples", type=int, default=5, metavar="N",
                        help="fewer timing samples a side gives `inconclusive` (default 5)")
    parser.add_argument("--allow-env-mismatch", action="store_true",
                        help="compare runs from different CPUs, GPUs, torch/CUDA versions or "
                             "thread counts anyway (the output says so)")


def options_from(args: argparse.Namespace) -> CompareOptions:
    return CompareOptions(thresholds=parse_thresholds(args.threshold), alpha=args.alpha,
                          correction=args.correction, min_samples=args.min_samples,
                          allow_env_mismatch=args.allow_env_mismatch)


def handle(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
        directory = baselines_dir(args.baselines_dir)
        comparison = compare_runs(resolve(args.baseline, directory),
                                  resolve(args.candidate, directory), options)
        if comparison.cases_compared == 0:
            raise CompareError(
                f"no case in common: {len(comparison.only_in_baseline)} case(s) only in the "
                f"baseline, {len(comparison.only_in_candidate)} only in the candidate; compare "
                "runs of the same suite (cases match by case_id)")
    except CompareError as exc:
        if args.markdown:
            append_summary(f"### archbench compare: refused\n\n{exc}\n")
        raise
    emit(comparison, args)
    return 1 if comparison.has_regression else 0


def emit(comparison: Comparison, args: argparse.Namespace) -> None:
    """The comparison as asked: JSON, markdown (also to the CI step summary) or a table."""
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2))
    elif args.markdown:
        text = compare_output.to_markdown(comparison, everything=args.all)
        print(text, end="")
        append_summary(text)
    else:
        print_table(comparison, everything=args.all)


_STYLE = {"regression": "bold red", "improvement": "green", "inconclusive": "yellow",
          "same": "dim"}


def print_table(comparison: Comparison, *, everything: bool = False) -> None:
    out = table_console()
    say((comparison.baseline_label, "bold"), " (baseline) → ",
        (comparison.candidate_label, "bold"), " (candidate)", to=out)
    say(compare_output.settings_line(comparison), to=out)
    for line in [*compare_output.env_lines(comparison), *compare_output.drift_lines(comparison),
                 *compare_output.inconclusive_lines(comparison)]:
        say(("warning:", "bold yellow"), f" {line}", to=out)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("verdict", no_wrap=True)
    table.add_column("case", overflow="fold", ratio=3)
    table.add_column("metric", overflow="fold")
    table.add_column("baseline → candidate", justify="right", overflow="fold")
    table.add_column("change [95% CI]", justify="right", overflow="fold")
    table.add_column("p adj.", justify="right", overflow="fold")
    table.add_column("note", overflow="fold", ratio=2)
    shown = compare_output.rows(comparison, everything=everything)
    for row in shown:
        verdict, case, metric, base, cand, change, ci, p, note = compare_output.cells(row)
        table.add_row(verdict, case, metric, f"{base} → {cand}" if base or cand else "",
                      f"{change} {ci}".strip(), p, note, style=_STYLE[row.verdict])
    if shown:
        out.print(table)
    hidden = len(comparison.verdicts) - len(shown)
    if hidden:
        say(f"{hidden} other metric(s) unchanged; --all shows them")
    for title, names in (("only in the baseline", comparison.only_in_baseline),
                         ("only in the candidate", comparison.only_in_candidate)):
        if names:
            say(f"{len(names)} case(s) {title}: {', '.join(names)}")
    style = ("bold red" if comparison.has_regression else
             "bold yellow" if comparison.unresolved() else "bold green")
    say((compare_output.headline(comparison), style))
