"""`archbench report`: draw run folders as one HTML file, a markdown summary, or a flat table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cli.best_cmd import add_question_arguments
from bench.cli.console import say
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.report.model import ReportInput

FORMATS = ("html", "markdown", "csv", "parquet")
SUFFIX = {"html": ".html", "markdown": ".md", "csv": ".csv", "parquet": ".parquet"}
REPORTS_DIR = Path("reports")
RUN_REPORT = "report.html"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "report", help="draw runs as an interactive HTML report (or markdown, CSV, Parquet)",
        description="Draw one or more run folders as one self-contained HTML file that opens "
                    "offline. With several runs, the first is the baseline each later run is "
                    "compared with.",
        epilog="Exit codes: 0 written; 2 a run folder is missing or damaged.")
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run folder(s) of archbench run")
    parser.add_argument("-o", "--out", metavar="PATH",
                        help="file to write (default reports/<run>.<ext>; markdown prints to "
                             "the terminal unless given a file); '-' writes to stdout")
    parser.add_argument("--format", "-f", choices=FORMATS, default="html",
                        help="html (default): interactive report; markdown: compact summary "
                             "for a CI step summary or PR comment; csv/parquet: the flat "
                             "results table")
    parser.add_argument("--title", help="title of the report (default: the run names)")
    add_question_arguments(parser)
    parser.add_argument("--history", type=Path, metavar="STORE",
                        help="add the trend section: every case over the commits of this "
                             "history store (`archbench history`); RUN may then be left out")
    parser.add_argument("--history-commits", type=int, default=250, metavar="N",
                        help="the newest N commits of the history (default 250; 0: all)")
    parser.set_defaults(handler=handle)


def default_name(report: ReportInput) -> str:
    labels = [r.label for r in report.runs]
    if not labels:
        return "history"
    name = labels[0] if len(labels) == 1 else f"{labels[0]}-vs-{labels[-1]}"
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def render(report: ReportInput, fmt: str) -> str:
    from bench.report import build_sections, render_html
    from bench.report.markdown import render_markdown

    if not report.runs:  # a history alone: only the trend section has anything to draw
        from bench.history.render import show_markdown
        from bench.report.sections.trend import trend_section

        if fmt == "markdown":
            return show_markdown(report.history)
        return render_html(report, [trend_section(report.history)])
    if fmt == "markdown":
        text = render_markdown(report)
        if report.history is not None:
            from bench.history.render import show_markdown

            text += "\n" + show_markdown(report.history)
        return text
    return render_html(report, build_sections(report))


def with_history(args: argparse.Namespace, question: Any = None) -> ReportInput:
    """The runs given (maybe none) and the history store's series, fitted."""
    from dataclasses import replace

    from bench.history import HistoryStore, PointQuery, load_history
    from bench.report import load_report_input
    from bench.report.model import ReportInput

    if args.history_commits < 0:
        raise BenchError(f"--history-commits {args.history_commits}: give a number of "
                         "commits, or 0 for all")
    history = load_history(HistoryStore(args.history),
                           PointQuery(last_commits=args.history_commits))
    if not history.series:
        raise BenchError(f"{args.history}: the history store holds no measured case yet; add "
                         "runs with `archbench history add RUN`")
    if args.runs:
        return replace(load_report_input(args.runs, title=args.title, question=question),
                       history=history)
    return ReportInput(runs=(), title=args.title or f"history {args.history}", history=history)


def handle(args: argparse.Namespace) -> int:
    # imported here: pandas and plotly would slow down every other command's start
    from bench.report import load_report_input, write_html
    from bench.report.export import flat_table, write_table

    question = None
    if args.constraint:  # else the question of the run's suite ([decide]), if it has one
        from bench.decide import Question

        question = Question(args.objective, tuple(args.constraint), args.top, args.confidence)
    fmt = args.format
    if args.history is None:
        report = load_report_input(args.runs, title=args.title, question=question)
    else:
        report = with_history(args, question)
        if not report.runs and fmt in ("csv", "parquet"):
            raise BenchError(f"--format {fmt} writes the results of runs; give RUN folders, "
                             "or use `archbench history show --json` for the history")
    if args.out == "-" or (fmt == "markdown" and args.out is None):
        if fmt == "parquet":
            raise BenchError("Parquet is binary and cannot go to the terminal; give "
                             "-o FILE.parquet")
        if fmt == "csv":
            flat_table(report.all_rows, keep_lists=False).to_csv(sys.stdout, index=False)
        else:
            sys.stdout.write(render(report, fmt))
        return 0
    out = Path(args.out) if args.out else REPORTS_DIR / f"{default_name(report)}{SUFFIX[fmt]}"
    if fmt in ("csv", "parquet"):
        path = write_table(report.all_rows, out, fmt)
    elif fmt == "markdown":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(report, fmt), encoding="utf-8")
        path = out
    else:
        path = write_html(render(report, fmt), out)
    say(f"report: {path}")
    if fmt == "html":
        say(f"open it: {path.resolve().as_uri()}")
    return 0


def report_after_run(run_dir: Path) -> None:
    """The HTML report of a finished run, written into its folder; a problem drawing it is
    reported but never loses the run (its records are already on disk)."""
    from bench.report import load_report_input, write_html


    try:
        report = load_report_input([run_dir])
        path = write_html(render(report, "html"), run_dir / RUN_REPORT)
    except Exception as exc:  # the run is saved; say why there is no report and how to retry
        say(("warning:", "yellow"), f" no report drawn ({type(exc).__name__}: {exc}); try again "
            f"with: archbench report {run_dir}", err=True)
        return
    say(f"report: {path}")
