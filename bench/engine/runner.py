"""Run suites: every case in isolation, every outcome a record on disk as soon as it ends.

A failing case (exception, OOM, crash, hang) becomes a record with its status and message and
the sweep goes on. Ctrl-C kills the running worker, marks the run interrupted and leaves every
finished record on disk; `resume` continues a run folder without redoing finished cases.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from bench import env
from bench._version import __version__
from bench.engine.backends import ISOLATION_MODES, backend_for
from bench.engine.case import probe_torch, run_case
from bench.engine.counting import counter_label, perf_instructions
from bench.engine.executor import EXECUTORS, Executor, OnFinished, OnStarted, RunContext
from bench.engine.local_executor import LocalExecutor
from bench.engine.outcome import Backend
from bench.engine.rounds import Rounds
from bench.errors import BenchError, BenchWarning, FileProblem
from bench.results.lock import LOCK_FILE, RunFolderLock
from bench.results.record import Record
from bench.results.store import ResultsStore, read_run
from bench.suite.spec import Case, Suite

__all__ = ["RunInterrupted", "RunOptions", "RunResult", "RunSession", "probe_torch", "run",
           "run_case"]

DEFAULT_RUNS_DIR = Path("reports") / "runs"


class RunObserver(Protocol):
    """Progress callbacks (the CLI draws its progress bar from these)."""

    def run_started(self, run_dir: Path, total: int, skipped: int) -> None: ...

    def case_started(self, index: int, total: int, case: Case) -> None: ...

    def case_finished(self, index: int, total: int, record: Record) -> None: ...

    def case_decided(self, record: Record) -> None:
        """A case has all its workers: `record` is their merge (its level and interval)."""


class RunInterrupted(BenchError):
    """Ctrl-C or SIGTERM stopped the run; everything finished is on disk and `--resume`
    continues. `exit_code` follows the shell's 128 + signal number (130, 143)."""

    def __init__(self, run_dir: Path, done: int, total: int, *, resume_command: str,
                 signum: int = signal.SIGINT) -> None:
        self.run_dir = run_dir
        self.resume_command = resume_command
        self.exit_code = 128 + signum
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        super().__init__(f"interrupted by {what} after {done} of {total} cases; finished cases "
                         f"are saved in {run_dir}. Continue with:\n{resume_command}")


def resume_command(suites: Sequence[Suite], command: Sequence[str], run_dir: Path) -> str:
    """The command that continues a run, ready to paste: the original command line with its
    --out/--resume replaced, or `archbench run SUITES` when the run did not come from one."""
    args = list(command[2:]) if command[1:2] == ["run"] else [s.path for s in suites]
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--out", "-o"):
            skip = True
        elif not (arg == "--resume" or arg.startswith(("--out=", "-o"))):
            kept.append(arg)
    return shlex.join(["archbench", "run", *kept, "--resume", "--out", str(run_dir)])


class SignalInterrupt(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would raise KeyboardInterrupt; `signum` says
    which, so the exit code can be the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextmanager
def _signals_interrupt() -> Iterator[list[int]]:
    """SIGTERM and SIGHUP (CI cancellation, `timeout`, a closed terminal) stop a run the way
    Ctrl-C does: as a KeyboardInterrupt (`SignalInterrupt`), once; the signals received are
    listed."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
            raise SignalInterrupt(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class RunResult:
    run_dir: Path
    records: list[Record] = field(default_factory=list)
    skipped: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)


@dataclass
class RunOptions:
    out: Path | None = None
    isolation: str = "forkserver"
    resume: bool = False
    #: Passed on the command line, kept in run.json so the run can be repeated exactly.
    command: list[str] = field(default_factory=list)
    #: Where cases execute: "local" (this machine, one at a time) or "ray" (a cluster).
    executor: str = "local"
    #: Ray: None (a Ray instance on this machine for the run), "auto" or "HOST:PORT".
    ray_address: str | None = None
    #: Ray: timed CPU cases at once per node (more than 1 disturbs them; records say so).
    cpu_slots: int = 1

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise BenchError(f"unknown executor {self.executor!r}; use one of "
                             f"{', '.join(EXECUTORS)}")
        if self.isolation not in ISOLATION_MODES:
            raise BenchError(f"unknown isolation {self.isolation!r}; use one of "
                             f"{', '.join(ISOLATION_MODES)}")
        if self.executor != "ray" and (self.ray_address is not None or self.cpu_slots != 1):
            raise BenchError("--ray-address and --cpu-slots apply to --executor ray only")
        if self.executor == "ray" and self.isolation != "forkserver":
            raise BenchError(f"--isolation {self.isolation} cannot run on Ray: each node runs "
                             "cases in forkserver workers (drop --isolation)")


def make_executor(options: RunOptions, backend: Backend | None = None) -> Executor:
    """The run's executor, ready: a missing Ray or a bad address fails here, before any run
    folder is made. `backend` replaces the local executor's (tests run plans without
    workers)."""
    if options.executor == "ray":
        from bench.engine.ray_executor import RayExecutor, RayOptions

        return RayExecutor(RayOptions(address=options.ray_address, cpu_slots=options.cpu_slots))
    return LocalExecutor(backend or backend_for(options.isolation))


def run(suites: Sequence[Suite], cases: Sequence[Case], options: RunOptions,
        observer: RunObserver | None = None, backend: Backend | None = None,
        executor: Executor | None = None) -> RunResult:
    """Run `cases` (taken from `suites`) into a run folder; returns the records of this run.

    Cases are measured in rounds (`bench.engine.rounds`): each round gives every case that
    still needs one another worker, so a case's workers sample the machine at different
    moments of the run. `backend` replaces the one `options.isolation` names (tests run the
    plan without workers); `executor` the one `options.executor` names (benchmarks run
    stand-in cases on Ray).
    """
    with _signals_interrupt() as received:
        session = RunSession(suites, cases, options, backend, executor)
        skipped = session.recorded(cases)
        result = RunResult(run_dir=session.run_dir, skipped=skipped)
        total = skipped + Rounds(cases, session.run_id).at_least(session.measured)

        def started(case: Case, repeat: int, expected: int) -> None:
            nonlocal total
            total = max(total, expected)
            if observer:
                observer.case_started(skipped + len(result.records) + 1, total, case)

        def finished(record: Record) -> None:
            result.records.append(record)
            if observer:
                observer.case_finished(skipped + len(result.records), total, record)

        def decided(record: Record) -> None:
            if observer:
                observer.case_decided(record)

        try:
            if observer:
                observer.run_started(session.run_dir, total, skipped)
            session.execute_rounds(cases, started, finished, decided)
        except KeyboardInterrupt:
            session.close("interrupted")
            raise RunInterrupted(session.run_dir, skipped + len(result.records), total,
                                 resume_command=resume_command(suites, options.command,
                                                               session.run_dir),
                                 signum=received[0] if received else signal.SIGINT) from None
        except BaseException as exc:
            session.close("failed", keep=exc)
            raise
        session.close("complete")
    return result


# ---- run folder -----------------------------------------------------------------------------
def _prepare_run_dir(suites: Sequence[Suite], options: RunOptions) -> tuple[Path, RunFolderLock]:
    """The run folder, created and locked for this process (see `bench.results.lock`)."""
    if options.resume:
        if options.out is None:
            raise BenchError("--resume needs --out RUN_DIR: the run folder to continue")
        read_run(options.out)  # raises a clear error if it is not a run folder
        return options.out, RunFolderLock(options.out).acquire()
    if options.out is not None:
        if options.out.exists() and not options.out.is_dir():
            raise FileProblem(f"--out {options.out} is a file, not a folder; choose a folder "
                              "(a new one, or a run folder with --resume)",
                              path=str(options.out))
        # Checked before locking (no lock file is left in someone's folder) and again after
        # (a run that started at the same moment may have written it meanwhile).
        _refuse_if_used(options.out)
        options.out.mkdir(parents=True, exist_ok=True)
        lock = RunFolderLock(options.out).acquire()
        try:
            _refuse_if_used(options.out)
        except BenchError:
            lock.release()
            raise
        return options.out, lock
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = DEFAULT_RUNS_DIR / f"{stamp}-{suites[0].name if suites else 'run'}"
    run_dir, n = base, 1
    while True:
        try:
            run_dir.mkdir(parents=True)  # atomic: two runs started together get two folders
        except FileExistsError:
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
            continue
        return run_dir, RunFolderLock(run_dir).acquire()


def _refuse_if_used(out: Path) -> None:
    if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise BenchError(f"{out} already holds files; add --resume to continue that run, or "
                         "choose a new --out")


def _run_meta(run_dir: Path, suites: Sequence[Suite], cases: Sequence[Case],
              options: RunOptions, executor: Executor, store: ResultsStore) -> dict[str, Any]:
    previous = store.read_run() if options.resume else {}
    environment = executor.environment()
    environment["threads"] = _threads(cases)
    counters = sorted({counter_label(c.settings.count_isa) for c in cases
                       if c.settings.counted})
    if counters:  # in the fingerprint: counts from another valgrind or ISA do not compare
        environment["counter"] = counters[0] if len(counters) == 1 else "mixed"
        environment["perf_instructions"] = perf_instructions()
    return {
        "schema_version": 1,
        "run_id": previous.get("run_id", run_dir.name),
        "archbench_version": __version__,
        "status": "running",
        "started_at": previous.get("started_at", _now()),
        "resumed_at": [*previous.get("resumed_at", []), _now()] if options.resume else [],
        "ended_at": None,
        "suites": [s.to_dict() for s in suites],
        "cases_total": len(cases),
        "isolation": executor.isolation,
        "command": options.command,
        "cwd": os.getcwd(),
        "env": environment,
        "fingerprint": env.fingerprint(environment),
        **executor.describe(),
    }


def _threads(cases: Sequence[Case]) -> int | str | None:
    """The thread count the run used: one number, or "mixed" when cases set different ones.
    Unset, a case's count is one per CPU but one (`bench.env.auto_threads`), which is also
    the count of a session whose cases arrive later (the pytest fixture)."""
    counts = {c.settings.for_counting().threads or env.auto_threads() for c in cases} \
        or {env.auto_threads()}
    return counts.pop() if len(counts) == 1 else "mixed"


def _finish(store: ResultsStore, meta: dict[str, Any], status: str) -> None:
    meta.update(status=status, ended_at=_now())
    store.write_run(meta)


def _search_path(suites: Sequence[Suite]) -> list[str]:
    folders = [str(Path(s.path).resolve().parent) for s in suites] + [os.getcwd()]
    return list(dict.fromkeys(folders))


def _now() -> str:
    return datetime.now(UTC).isoformat()


class RunSession:
    """A run folder open for cases: the one place a run's folder, metadata, executor and
    records come together. `run()` drives it through a plan; the pytest plugin runs a case
    when pytest reaches its item. `close()` marks the run complete (or whatever status is
    given) and releases the executor.
    """

    def __init__(self, suites: Sequence[Suite], cases: Sequence[Case], options: RunOptions,
                 backend: Backend | None = None, executor: Executor | None = None) -> None:
        #: An executor handed in is the caller's to close (it may run more than one run).
        self._own_executor = executor is None
        self.executor = executor or make_executor(options, backend)
        self.lock: RunFolderLock | None = None
        try:
            self.executor.check(cases)
            self.run_dir, self.lock = _prepare_run_dir(suites, options)
            self.store = ResultsStore(self.run_dir)
            #: Every record of the run by case_id: from the run resumed, then each one stored.
            self.measured: dict[str, list[Record]] = {}
            for record in self.store.records() if options.resume else ():
                self.measured.setdefault(record.case_id, []).append(record)
            #: (case_id, repeat) on disk.
            self.done = {(r.case_id, r.repeat) for rs in self.measured.values() for r in rs}
            self.meta = _run_meta(self.run_dir, suites, cases, options, self.executor,
                                  self.store)
            self.store.write_run(self.meta)
            self.search_path = _search_path(suites)
            self.records: list[Record] = []
            (self.run_dir / "logs").mkdir(exist_ok=True)
        except BaseException as exc:
            if hasattr(self, "meta"):  # run.json may say "running": say what became of it
                with contextlib.suppress(OSError, FileProblem):
                    _finish(self.store, self.meta, "interrupted"
                            if isinstance(exc, KeyboardInterrupt) else "failed")
            if self._own_executor:
                self.executor.close()
            if self.lock is not None:
                self.lock.release()
            raise

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    def recorded(self, cases: Sequence[Case]) -> int:
        """Workers of these cases already on disk (a resumed run's)."""
        return sum(len(self.measured.get(c.case_id, ())) for c in {c.case_id: c
                                                                   for c in cases}.values())

    def execute_rounds(self, cases: Sequence[Case],
                       started: Callable[[Case, int, int], None] | None = None,
                       finished: Callable[[Record], None] | None = None,
                       decided: Callable[[Record], None] | None = None) -> None:
        """Measure `cases` round by round until none needs another worker
        (`bench.engine.rounds`). `started(case, repeat, expected)` hears of each worker sent,
        with the number of workers the run expects in all so far; `decided(record)` of each
        case once it has all its workers, with their merge."""
        from bench.results.repeats import merge

        rounds = Rounds(cases, self.run_id)
        while True:
            this = rounds.next(self.measured)
            for case_id in this.decided:
                if decided is not None and self.measured.get(case_id):
                    decided(merge(self.measured[case_id]))
            if not this.visits:
                return
            expected = self.recorded(cases) + max(rounds.at_least(self.measured),
                                                  len(this.visits))

            def on_started(case: Case, repeat: int, expected: int = expected) -> None:
                if started is not None:
                    started(case, repeat, expected)

            self.execute(this.visits, on_started, finished)

    @property
    def context(self) -> RunContext:
        return RunContext(run_id=self.run_id, run_dir=self.run_dir,
                          search_path=tuple(self.search_path))

    def execute(self, plan: Sequence[tuple[Case, int]], started: OnStarted | None = None,
                finished: Callable[[Record], None] | None = None) -> None:
        """Run a plan on the executor, storing each record (and the files its case wrote)
        as it arrives; `finished` hears of each record once it is on disk."""
        def store(record: Record, files: Mapping[str, bytes]) -> None:
            if self.append(record, files) and finished is not None:
                finished(record)

        on_finished: OnFinished = store
        self.executor.execute(plan, self.context, started or (lambda case, repeat: None),
                              on_finished)

    def run_case(self, case: Case, repeat: int = 0) -> Record:
        """Measure one repeat of a case and store its record."""
        records: list[Record] = []
        self.execute([(case, repeat)], finished=records.append)
        if not records:
            raise BenchError(f"{case.name} (repeat {repeat}) is already recorded in "
                             f"{self.run_dir}")
        return records[0]

    def measure(self, cases: Sequence[Case],
                progress: Callable[[int, int, Case, int], None] | None = None
                ) -> dict[str, Record]:
        """Every worker of `cases` (in rounds), merged into one record per case_id;
        `progress(index, total, case, repeat)` is called before each worker starts."""
        from bench.results.repeats import merge

        sent = 0

        def started(case: Case, repeat: int, expected: int) -> None:
            nonlocal sent
            sent += 1
            if progress:
                progress(sent, max(expected, sent), case, repeat)

        self.execute_rounds(cases, started)
        return {c.case_id: merge(self.measured[c.case_id]) for c in cases
                if self.measured.get(c.case_id)}

    def append(self, record: Record, files: Mapping[str, bytes] | None = None) -> bool:
        """Store a record (with files its case wrote elsewhere, by run-folder path); False,
        with a warning, for a repeat this run already holds: a case is never recorded twice."""
        key = (record.case_id, record.repeat)
        if key in self.done:
            warnings.warn(f"{record.name} repeat {record.repeat} came back twice; the record "
                          "already stored is kept", BenchWarning, stacklevel=2)
            return False
        for name, data in (files or {}).items():
            self._write_file(name, data)
        self.store.append(record)
        self.done.add(key)
        self.records.append(record)
        self.measured.setdefault(record.case_id, []).append(record)
        return True

    def close(self, status: str = "complete", keep: BaseException | None = None) -> None:
        """Mark the run `status` in run.json, stop the workers and release the folder.

        With `keep` (the error that ended the run) a failure to write run.json is dropped
        in favour of it: a full disk must not hide why the run stopped.
        """
        try:
            self.meta.update(self.executor.describe())
            _finish(self.store, self.meta, status)
        except (OSError, FileProblem):
            if keep is None:
                raise
        finally:
            try:
                if self._own_executor:
                    self.executor.close()
            finally:
                if self.lock is not None:
                    self.lock.release()

    def _write_file(self, name: str, data: bytes) -> None:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise BenchError(f"refusing to write {name!r} outside the run folder {self.run_dir}")
        path = self.run_dir.joinpath(*relative.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
