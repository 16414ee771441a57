"""`archbench best RUN...`: the best configuration under constraints, with its confidence.

Exit codes: 0 a configuration meets every constraint with confidence; 1 none does (the
output says which came closest and why); 2 bad input (a run that is not one, an unknown
objective or metric, a metric the run did not collect, a unit that does not parse).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from bench.cli.console import SUMMARY_ENV, append_summary, say, table_console

if TYPE_CHECKING:
    from bench.decide import Answer

OBJECTIVE_NAMES = ("median_ms", "p99_ms", "throughput", "energy_per_item", "peak_memory")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "best", help="the best configuration under constraints, with its confidence",
        description="Rank the measured configurations by an objective among those meeting "
                    "every constraint. A timing constraint is met when the far bound of the "
                    "metric's confidence interval meets it (the median's is the case's level "
                    "across its workers; other percentiles' come from the pooled samples); "
                    "cases whose point value meets it but whose interval does not are listed "
                    "as uncertain, with what would settle it.",
        epilog="Constraints: METRIC<=VALUE[UNIT] (also <, >=, >), e.g. \"p99_ms<=5\", "
               "\"peak_rss_bytes<=2GiB\", \"fidelity_top1_agreement>=0.99\", "
               "\"throughput>=500/s\"; units ns us ms s, B KiB MiB GiB KB MB GB, J mJ, W, %. "
               "Exit codes: 0 a configuration meets every constraint; 1 none does; 2 bad input.")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    add_question_arguments(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    out.add_argument("--markdown", action="store_true",
                     help=f"print markdown; also appended to ${SUMMARY_ENV} when it is set")
    parser.set_defaults(handler=handle)


def add_question_arguments(parser: argparse.ArgumentParser) -> None:
    """The question's options, shared by `best` and `report` (which answers it on top)."""
    parser.add_argument("--objective", default="median_ms", metavar="NAME",
                        help=f"what to optimise: {', '.join(OBJECTIVE_NAMES)} "
                             "(default median_ms)")
    parser.add_argument("--constraint", "-c", action="append", default=[], metavar="SPEC",
                        help='e.g. "p99_ms<=5"; repeat or comma-separate')
    parser.add_argument("--filter", "-k", action="append", default=[], metavar="PATTERN",
                        help="choose among the cases whose name contains PATTERN (glob with "
                             "* ? []), or whose parameter matches KEY=VALUE (model=mlp, "
                             "precision=bf16); repeat to keep more")
    parser.add_argument("--top", type=int, default=5, metavar="N",
                        help="how many configurations to rank (default 5)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="of the intervals and of the tie test (default 0.95)")


def handle(args: argparse.Namespace) -> int:
    from bench.decide import answer
    from bench.results import load
    from bench.results.frame import select_rows

    result = answer(select_rows(load(args.runs), args.filter), args.objective,
                    args.constraint, args.top, args.confidence)
    emit(result, json_out=args.json, markdown=args.markdown)
    return 0 if not result.ranking.empty else 1


def emit(result: Answer, *, json_out: bool = False, markdown: bool = False) -> None:
    from bench.decide import render

    if json_out:
        print(json.dumps(result.to_dict(), indent=2))
    elif markdown:
        text = render.to_markdown(result)
        print(text, end="")
        append_summary(text)
    else:
        print_answer(result)


def _table(columns: Sequence[str], rows: list[list[str]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def print_answer(result: Answer) -> None:
    from bench.decide import render

    out = table_console()
    say(("question:", "bold"), f" {render.question_line(result)}", to=out)
    style = "bold green" if not result.ranking.empty else "bold yellow"
    say((render.headline(result), style), to=out)
    if not result.ranking.empty:
        out.print(_table(render.RANKING_COLUMNS, render.ranking_rows(result)))
        if result.ranking["tied"].any():
            say("=N: statistically tied with the rank above at this confidence", to=out)
    for title, rows in (("uncertain (point values meet, intervals do not)",
                         render.uncertain_rows(result)),
                        ("why not (the best excluded)", render.why_not_rows(result))):
        if rows:
            say("\n", (title, "bold"), to=out)
            out.print(_table(("case", "objective [CI]", "why"), rows))
    if not result.pareto.empty:
        say("\n", ("Pareto-optimal set per family", "bold"), to=out)
        out.print(_table(render.PARETO_COLUMNS, render.pareto_rows(result)))
    if not result.boundaries.empty:
        say("\n", ("scaling boundaries (interpolated, not measured)", "bold"), to=out)
        for row in result.boundaries.to_dict("records"):
            say(f"  {row['family']} {row['knobs']}: {row['statement']}", to=out)
    say(render.counts_line(result), to=out)
    for note in result.notes:
        say(("note:", "yellow"), f" {note}", to=out)
