"""`archbench run`: measure the cases of suites into a run folder, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.cli.best_cmd import print_answer
from bench.cli.console import Part, console, say
from bench.cli.report_cmd import report_after_run
from bench.cli.suites import add_measure_argument, add_suite_arguments, load_suites
from bench.engine.backends import ISOLATION_HELP, ISOLATION_MODES
from bench.engine.executor import EXECUTORS
from bench.results.record import FAILURE_STATUSES

if TYPE_CHECKING:  # the runner pulls in numpy/scipy: imported when a run starts, not for --help
    from bench.engine.runner import RunResult
    from bench.results.record import Record
    from bench.suite.question import Question
    from bench.suite.spec import Case


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run", help="measure the cases of suites",
        description="Measure every case of the suites, each in its own worker process, and "
                    "store raw results in a run folder (default reports/runs/<run-id>/).",
        epilog="Exit codes: 0 every case ok or unsupported; 1 some case failed, crashed, ran "
               "out of memory or timed out; 2 bad suite or options; 130 interrupted "
               "(finished cases are saved; continue with --resume --out RUN_DIR).")
    add_suite_arguments(parser)
    parser.add_argument("--out", "-o", type=Path, metavar="RUN_DIR",
                        help="run folder to write (default: reports/runs/<time>-<suite>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out, skipping cases already recorded")
    parser.add_argument("--isolation", choices=ISOLATION_MODES, default="forkserver",
                        help=ISOLATION_HELP)
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local (default): one case at a time on this machine; ray: each "
                             "case repeat a task on a Ray cluster, one timed case per GPU and "
                             "one timed CPU case per node (pip install 'archbench[ray]')")
    parser.add_argument("--ray-address", metavar="auto|HOST:PORT",
                        help="with --executor ray: the cluster to use (auto: the one this "
                             "machine belongs to); default: RAY_ADDRESS, else a Ray instance "
                             "started on this machine for the run")
    parser.add_argument("--cpu-slots", type=int, default=1, metavar="N",
                        help="with --executor ray: timed CPU cases at once per node (default "
                             "1; more makes them disturb each other, and each record says so)")
    parser.add_argument("--profile", action="store_true",
                        help="after timing each case, run torch.profiler over a few calls: top "
                             "operators in the record, a Chrome trace in RUN_DIR/traces/")
    add_measure_argument(parser)
    parser.add_argument("--no-report", action="store_true",
                        help="do not draw RUN_DIR/report.html at the end")
    parser.add_argument("--history", type=Path, metavar="STORE",
                        help="at the end, append the run to this history store (created if "
                             "needed; see `archbench history`)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from bench.engine.runner import RunInterrupted, RunOptions, run

    if args.profile:
        args.settings = [*args.settings, "profile=true"]
    suites, cases = load_suites(args)
    options = RunOptions(out=args.out, isolation=args.isolation, resume=args.resume,
                         command=["archbench", *sys.argv[1:]], executor=args.executor,
                         ray_address=args.ray_address, cpu_slots=args.cpu_slots)
    observer = ProgressObserver()
    try:
        with observer:
            result = run(suites, cases, options, observer)
    except RunInterrupted as exc:
        say((str(exc), "yellow"))
        return exc.exit_code
    observer.summary(result)
    if args.history is not None:
        add_to_history(args.history, result.run_dir)
    if not args.no_report:
        report_after_run(result.run_dir)
    question = next((s.decide for s in suites if s.decide is not None), None)
    if question is not None:
        answer_after_run(result.run_dir, question)
    return 1 if any(r.status in FAILURE_STATUSES for r in result.records) else 0


def answer_after_run(run_dir: Path, question: Question) -> None:
    """The suite's `[decide]` question, answered from the run just made. A question the run
    cannot answer (a metric no case collected) is said, not raised: the run is saved."""
    from bench.decide import DecideError, decide
    from bench.results import load

    say("")
    try:
        print_answer(decide(load(run_dir), question))
    except DecideError as exc:
        say(("warning:", "yellow"), f" no answer to the suite's [decide] question: {exc}",
            err=True)


class ProgressObserver:
    """A rich progress bar (case i/N, ETA) with one line per finished case above it."""

    def __init__(self) -> None:
        self.out = console()
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.out, transient=True)
        self.task = self.progress.add_task("", total=None)

    def __enter__(self) -> ProgressObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def run_started(self, run_dir: Path, total: int, skipped: int) -> None:
        self.progress.update(self.task, total=total, completed=skipped)
        say(f"run folder: {run_dir}")
        if skipped:
            say(f"resuming: {skipped} of {total} case(s) already recorded")

    def case_started(self, index: int, total: int, case: Case) -> None:
        self.progress.update(self.task, description=case.name)

    def case_finished(self, index: int, total: int, record: Record) -> None:
        """A worker ended: the bar moves; a worker that did not end ok is said at once."""
        self.progress.update(self.task, total=total)
        self.progress.advance(self.task)
        if record.status == "ok":
            return
        of = f" (worker {record.repeat + 1})" if (record.most_workers or 1) > 1 else ""
        say(_status(record.status), f" {record.name}{of}{_node(record)}  {describe(record)}")

    def case_decided(self, record: Record) -> None:
        """A case has all its workers: its level and interval, once."""
        if record.status == "ok":
            say(_status(record.status), f" {record.name}{_node(record)}  {describe(record)}")

    def summary(self, result: RunResult) -> None:
        from bench.results.repeats import merge_repeats

        cases = merge_repeats(result.records)
        counts = ", ".join(f"{n} {s}" for s in ("ok", "unsupported", *FAILURE_STATUSES)
                           if (n := sum(c.status == s for c in cases)))
        done = len(result.records)
        what = f"{len(cases)} case(s) run" if done == len(cases) else (
            f"{len(cases)} case(s) run by {done} workers")
        resumed = f", {result.skipped} worker(s) resumed" if result.skipped else ""
        say(f"{what}{resumed}: {counts or 'nothing to do'}")
        drift_line(result.records)
        where = str(result.run_dir)
        say(f"results: {where}/results.jsonl")
        say(f"load them with: python -c \"import bench; print(bench.load('{where}'))\"")


def drift_line(records: list[Record]) -> None:
    """How steady the machine was between rounds, and what that means for comparing runs."""
    from bench.results.repeats import run_drift
    from bench.stats import STEADY_DRIFT

    drift = run_drift(records)
    if drift is None:
        return
    moved = drift.describe()
    if drift.sd <= STEADY_DRIFT:
        say(f"{moved}: steady")
    else:
        say(("warning:", "yellow"), f" {moved}: levels from another run may differ by more "
            "than their intervals; compare within one run (best, the report) or with "
            "`archbench ab`", err=True)


_STATUS_STYLE: dict[str, Part] = {"ok": ("  ok", "green"), "unsupported": ("skip", "yellow")}


def _status(status: str) -> Part:
    return _STATUS_STYLE.get(status, ("FAIL", "bold red"))


def _node(record: Record) -> str:
    node = record.info.get("node") or {}
    if node.get("node_id"):  # ran on a cluster node
        return f" on {node.get('hostname')}:{str(node['node_id'])[:6]}"
    return ""


def describe(record: Record) -> str:
    """One-line result: the level, its interval and what the interval includes; or the
    status and reason."""
    if record.status != "ok":
        reason = (record.reason or "").splitlines()[0] if record.reason else ""
        return f"{record.status}: {reason}"
    per_call = record.metrics.get("instructions_per_call")
    if isinstance(per_call, (int, float)):
        spread = record.metrics.get("instructions_spread_pct")
        spread_text = f", spread {spread:.3g}%" if isinstance(spread, (int, float)) else ""
        samples_n = len((record.info.get("counting") or {}).get("samples") or [])
        return f"{per_call:,.0f} instructions/call ({samples_n} samples{spread_text})"
    from bench.stats import interval_basis

    summary = record.summary()
    if summary is None:
        return "ok (no samples)"
    met = "" if record.target_met(summary) is not False else (
        f" (target ±{record.settings['target_ci'] * 100:g}% not met)")
    return (f"median {summary.median_ms:.4g} ms ±{summary.ci_rel * 100:.1f}%{met}  "
            f"{interval_basis(summary.workers, summary.between_workers)}, n={summary.n}")


def add_to_history(store_path: Path, run_dir: Path) -> None:
    """Append the finished run to a history store; the run folder is kept whatever happens,
    so a store that cannot take it only costs a message (and the command to retry)."""
    from bench.errors import BenchError
    from bench.history import HistoryStore, add_run

    try:
        result = add_run(HistoryStore(store_path, create=True), run_dir)
    except BenchError as exc:
        say(("warning:", "yellow"), f" not added to the history: {exc}; retry with: archbench "
            f"history add --store {store_path} {run_dir}", err=True)
        return
    say(f"history: {result.added} case(s) added to {store_path}")
