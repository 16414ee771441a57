"""The contract between the parent and a case's worker: the job it is handed and the messages
it answers with. Torch-free, because the parent imports it.

The worker sends `Phase` as it enters build / warmup / timed / profile / teardown (the
parent's samplers align with these), then exactly one final message: `Done` with what it
measured, or `Failed` with a status and the message. Messages are plain dataclasses of plain
values (`bench.plain`), so unpickling them in the parent never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.results.record import Status
from bench.suite.spec import Case


@dataclass(frozen=True)
class WorkerJob:
    case: Case
    #: Folders searched first for user factory modules (the suite's folder, the cwd).
    search_path: tuple[str, ...] = ()
    #: File receiving the worker's stdout/stderr and fatal-error tracebacks (None: inherit).
    log_path: str | None = None
    #: The run folder, for files a case writes there (profiler traces); None: write none.
    run_dir: str | None = None
    #: Which of the case's repeats this worker measures (0-based).
    repeat: int = 0
    #: Environment variables the worker sets before anything reads them (sorted pairs).
    environ: tuple[tuple[str, str], ...] = ()


@dataclass
class Findings:
    """What one side adds to a case's record: flat metrics (units in their names), structured
    info, and warnings a user should see. The worker's stages fill one, the parent's samplers
    another; the record merges them."""

    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Phase:
    """The worker entered a phase at `unix_time` (its clock, comparable with the parent's)."""

    name: str
    unix_time: float


@dataclass(frozen=True)
class Done:
    """The case measured: its timing (raw samples; see `bench.measure.timing`) and findings.
    A counted case (measure = "instructions") has no timing: its counts are findings."""

    timing: dict[str, Any] | None
    findings: Findings


@dataclass(frozen=True)
class Failed:
    """The case ended without a measurement; `status` is never "ok"."""

    status: Status
    message: str
    traceback: str | None = None


@dataclass(frozen=True)
class Ready:
    """The counting worker has imported torch under valgrind and takes cases
    (`bench.measure.counting_worker`); `error` says why it cannot count, if it cannot."""

    pid: int
    under_valgrind: bool
    threads: int
    start_s: float
    error: str | None = None


Final = Done | Failed
Message = Phase | Done | Failed
Send = Callable[[Message], None]
