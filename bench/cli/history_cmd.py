"""`archbench history ...`: keep every run of every commit, and find where cases changed.

    archbench history add RUN...            append run folders to the store
    archbench history import PATH...        pytest-benchmark JSON (.benchmarks/) and baselines
    archbench history show [PATTERN...]     per-case levels and the changes found
    archbench history check [PATTERN...]    CI: exit 1 on a new regression in the newest commits
    archbench history accept COMMIT         a change that was meant: stop reporting it

Exit codes: 0 ok; 1 `check` found a regression; 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from bench.cli.console import SUMMARY_ENV, append_summary, say, table_console
from bench.errors import ResultsError
from bench.gate.thresholds import TIMING_METRIC
from bench.history.store import EXTRA_METRICS
from bench.results.baselines import BASELINES_DIR_HELP

if TYPE_CHECKING:
    from bench.history import History, HistoryStore

STORE_ENV = "ARCHBENCH_HISTORY"
DEFAULT_STORE = Path(".archbench") / "history"
#: Commits analysed by default: enough context for any level, and a bounded cost per command
#: whatever the store's age (conbench looks back 100 commits, Otava 50 at a time).
DEFAULT_COMMITS = 250


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "history", help="every run of every commit: trends and change points",
        description="Keep runs in a history store (Parquet files queried with DuckDB; no "
                    "server), keyed by case, environment fingerprint and commit, and find "
                    "where each case's level changed.",
        epilog="Exit codes: 0 ok; 1 `history check` found a regression; 2 bad usage or input.")
    sub = parser.add_subparsers(dest="history_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="append run folders to the store",
                         description="Append run folders (archbench run) to the store, "
                                     "creating it if needed. Adding a run again adds nothing.")
    add.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    _store_argument(add)
    _commit_arguments(add)
    add.set_defaults(handler=handle_add)

    imp = sub.add_parser("import", help="bring pytest-benchmark JSON and baselines in",
                         description="Import pytest-benchmark's saved JSON (files, or folders "
                                     "such as .benchmarks/ searched for *.json) and saved "
                                     "archbench baselines.")
    imp.add_argument("paths", nargs="*", metavar="PATH",
                     help="pytest-benchmark JSON files or folders holding them")
    imp.add_argument("--baseline", action="append", default=[], metavar="NAME",
                     help="a saved archbench baseline (repeatable); --all-baselines for all")
    imp.add_argument("--all-baselines", action="store_true", help="every saved baseline")
    imp.add_argument("--baselines-dir", type=Path, metavar="DIR", help=BASELINES_DIR_HELP)
    _store_argument(imp)
    _commit_arguments(imp)
    imp.set_defaults(handler=handle_import)

    show = sub.add_parser("show", help="per-case levels and the changes found",
                          description="Each case's newest level, its noise and its newest "
                                      "change; above the table, the changes grouped by the "
                                      "commit that brought them in, newest first.")
    _query_arguments(show)
    out = show.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the findings as JSON")
    out.add_argument("--markdown", action="store_true", help="print markdown")
    show.set_defaults(handler=handle_show)

    chk = sub.add_parser("check", help="fail on a regression in the newest commits (CI)",
                         description="Exit 1 when a change point in the newest commits makes "
                                     "a case slower by at least its threshold and was not "
                                     "accepted. Markdown goes to $GITHUB_STEP_SUMMARY too.")
    _query_arguments(chk)
    chk.add_argument("--threshold", "-t", action="append", default=[], metavar="SPEC",
                     help='timing thresholds as for `archbench compare`: "5%%" (default), '
                          '"cnn-*:median_ms=10%%", "timing=off"; later rules win')
    chk.add_argument("--last", type=int, default=5, metavar="N",
                     help="judge changes brought in by the newest N commits (default 5)")
    out = chk.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    out.add_argument("--markdown", action="store_true",
                     help=f"print markdown (also appended to ${SUMMARY_ENV} when set)")
    chk.set_defaults(handler=handle_check)

    acc = sub.add_parser("accept", help="mark a change as intended",
                         description="Accept the change at COMMIT (for the cases matching "
                                     "--case, else all): it is no longer reported, and a new "
                                     "level starts there.")
    acc.add_argument("commit", metavar="COMMIT", help="commit (a unique prefix will do)")
    acc.add_argument("--case", action="append", default=[], metavar="PATTERN",
                     help="only these cases (substring or glob of the name, or a case_id)")
    acc.add_argument("--note", default="", help="why (kept with the acceptance)")
    _store_argument(acc)
    acc.set_defaults(handler=handle_accept)


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, metavar="DIR",
                        help=f"the history store (default ${STORE_ENV} or {DEFAULT_STORE})")


def _commit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--commit", metavar="SHA",
                        help="the commit measured (default: what the run recorded)")
    parser.add_argument("--commit-time", metavar="ISO-TIME",
                        help="that commit's time (default: asked of git)")
    parser.add_argument("--branch", metavar="NAME", help="the branch (default: recorded)")


def _query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="*", metavar="PATTERN",
                        help="cases whose name contains PATTERN (or matches a glob, or whose "
                             "case_id it is); default all")
    _store_argument(parser)
    parser.add_argument("--branch", metavar="NAME", help="only runs of this branch")
    parser.add_argument("--env", metavar="FINGERPRINT",
                        help="only this environment (a fingerprint prefix, as shown)")
    parser.add_argument("--commits", type=int, default=DEFAULT_COMMITS, metavar="N",
                        help=f"analyse the newest N commits (default {DEFAULT_COMMITS}; 0: all)")
    parser.add_argument("--metric", action="append", choices=[TIMING_METRIC, *EXTRA_METRICS],
                        metavar="NAME",
                        help="analyse only this metric (repeatable): the timing "
                             f"({TIMING_METRIC}), peak RSS, CUDA memory or instruction "
                             f"counts ({', '.join(EXTRA_METRICS)}); default all a run "
                             "recorded")
    parser.add_argument("--dirty", action="store_true",
                        help="include runs of dirty working trees (left out by default: their "
                             "code is not the commit's)")


def store_path(arg: Path | None) -> Path:
    return Path(arg) if arg else Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def open_store(arg: Path | None, *, create: bool = False) -> HistoryStore:
    from bench.history import HistoryStore

    return HistoryStore(store_path(arg), create=create)


def handle_add(args: argparse.Namespace) -> int:
    from bench.history import add_run

    store = open_store(args.store, create=True)
    for run in args.runs:
        result = add_run(store, run, commit=args.commit, commit_time=args.commit_time,
                         branch=args.branch)
        _say_added(str(run), result.added, result.skipped)
    say(f"store: {store.path}")
    return 0


def handle_import(args: argparse.Namespace) -> int:
    from bench.history import add_run
    from bench.history.rows import Commit, parse_time, pytest_benchmark_rows
    from bench.results.baselines import baselines_dir, list_baselines

    if not args.paths and not args.baseline and not args.all_baselines:
        raise ResultsError("nothing to import: give pytest-benchmark JSON files or folders "
                           "(e.g. .benchmarks), --baseline NAME or --all-baselines")
    store = open_store(args.store, create=True)
    commit = None
    if args.commit:
        if not args.commit_time:
            raise ResultsError("--commit needs --commit-time for imported files (they are "
                               "not in this repository's history)")
        commit = Commit(sha=args.commit, time=parse_time(args.commit_time),
                        branch=args.branch)
    files = []
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.rglob("*.json"))
            if not found:
                raise ResultsError(f"{path}: no *.json file in it; pytest-benchmark saves "
                                   "into .benchmarks/<machine>/NNNN_*.json")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ResultsError(f"{path}: no such file or folder")
    for file in files:
        result = store.add(pytest_benchmark_rows(file, commit=commit))
        _say_added(str(file), result.added, result.skipped)
    directory = baselines_dir(args.baselines_dir)
    names = list(args.baseline)
    if args.all_baselines:
        names += [b["name"] for b in list_baselines(directory) if "error" not in b]
    for name in names:
        folder = directory / name
        if not (folder / "run.json").is_file():
            known = ", ".join(b["name"] for b in list_baselines(directory)) or "none saved"
            raise ResultsError(f'no baseline "{name}" in {directory} (baselines: {known})')
        result = add_run(store, folder, source=f"baseline {name}", commit=args.commit,
                         commit_time=args.commit_time, branch=args.branch)
        _say_added(f"baseline {name}", result.added, result.skipped)
    say(f"store: {store.path}")
    return 0


def _say_added(what: str, added: int, skipped: int) -> None:
    extra = f", {skipped} already stored" if skipped else ""
    say(f"{what}: {added} case(s) added{extra}")


def _history(args: argparse.Namespace) -> History:
    from bench.history import PointQuery, load_history

    store = open_store(args.store)
    if args.commits < 0:
        raise ResultsError(f"--commits {args.commits}: give a number of commits, or 0 for all")
    chosen = args.metric or [TIMING_METRIC, *EXTRA_METRICS]
    query = PointQuery(patterns=tuple(args.patterns), branch=args.branch,
                       include_dirty=args.dirty, fingerprint=args.env,
                       last_commits=args.commits, timing=TIMING_METRIC in chosen,
                       metrics=tuple(m for m in chosen if m != TIMING_METRIC))
    history = load_history(store, query)
    if not history.series:
        what = f" matching {' '.join(args.patterns)}" if args.patterns else ""
        raise ResultsError(f"{store.path}: no measured case{what} in the store"
                           f"{' on branch ' + args.branch if args.branch else ''}; add runs "
                           "with `archbench history add RUN`")
    return history


def handle_show(args: argparse.Namespace) -> int:
    from bench.history import render

    history = _history(args)
    if args.json:
        print(json.dumps({"series": len(history.series), "commits": len(history.commits),
                          "findings": render.finding_dicts(history.findings)}, indent=2))
        return 0
    if args.markdown:
        print(render.show_markdown(history), end="")
        return 0
    out = table_console()
    say(f"{len(history.series)} series over {len(history.commits)} commits", to=out)
    findings = [f for f in history.findings if not f.accepted]
    if findings:
        say(("changes, newest first", "bold"), to=out)
        for finding in findings[:20]:
            style = "red" if finding.direction == "slower" else "green"
            names = ", ".join(c.series.label for c in finding.changes[:6])
            more = f" and {len(finding.changes) - 6} more" if len(finding.changes) > 6 else ""
            say((render.finding_line(finding), style), f": {names}{more}", to=out)
        if len(findings) > 20:
            say(f"... {len(findings) - 20} older; --json lists every one", to=out)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for title, justify in (("case", "left"), ("env", "left"), ("points", "right"),
                           ("latest (ms)", "right"), ("95% band", "right"),
                           ("noise", "right"), ("changes", "right"),
                           ("newest change [95% CI]", "left")):
        table.add_column(title, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in render.level_rows(history):
        low, high = row["band_ms"]
        table.add_row(row["case"], row["environment"], str(row["points"]),
                      f"{row['latest_ms']:.4g}", f"{low:.4g}–{high:.4g}",
                      f"{row['noise_pct']:.1f}%", str(row["changes"]),
                      row["last_change"])
    out.print(table)
    envs = render.environments(history)
    if len(envs) > 1:
        for key, text in envs.items():
            say(f"env {key}: {text}", to=out)
    return 0


def handle_check(args: argparse.Namespace) -> int:
    from bench.gate.thresholds import parse_thresholds
    from bench.history import check, render

    rules = parse_thresholds(args.threshold)
    if args.last < 1:
        raise ResultsError(f"--last {args.last}: judge at least the newest commit")
    history = _history(args)
    result = check(history, rules, last=args.last)
    text = render.check_markdown(result, history)
    if args.json:
        print(json.dumps({"failed": result.failed, "newest": list(result.newest),
                          "verdicts": [{"verdict": v.verdict, "threshold_pct": v.threshold,
                                        **render.change_dict(v.change)}
                                       for v in result.verdicts]}, indent=2))
    elif args.markdown:
        print(text, end="")
    else:
        _print_check(result)
    if args.markdown:
        append_summary(text)
    return 1 if result.failed else 0


_STYLE = {"regression": "bold red", "improvement": "green", "below threshold": "dim",
          "not gated": "dim", "accepted": "dim"}


def _print_check(result: Any) -> None:
    from bench.history import render

    out = table_console()
    if result.verdicts:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for title in ("verdict", "case", "env", "change [95% CI]", "commits", "kind"):
            table.add_column(title, overflow="fold")
        for v in result.verdicts:
            c = v.change
            table.add_row(v.verdict, c.series.label, c.series.fingerprint[:8],
                          f"{render.pct_text(c.point.change_pct)} {render.interval_text(c)}",
                          render.commit_range(c), c.point.kind, style=_STYLE[v.verdict])
        out.print(table)
    n = len(result.regressions)
    if n:
        say((f"{n} regression(s)", "bold red"), f" in the newest {len(result.newest)} "
            "commit(s); if intended: archbench history accept COMMIT [--case PATTERN]", to=out)
    else:
        say(("no regression", "bold green"),
            f" in the newest {len(result.newest)} commit(s)", to=out)


def handle_accept(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    entry = store.accept(args.commit, args.case, note=args.note)
    which = ", ".join(entry.cases) if entry.cases else "every case"
    say(f"accepted the change at {entry.commit[:12]} for {which}")
    return 0
