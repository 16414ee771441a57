"""Where a run's cases execute: this machine, one at a time (the default), or a Ray cluster.

The runner owns everything else about a run — the plan, resume, the run folder, records on
disk, progress — and hands an executor the plan. An executor calls `started(case, repeat)`
when it sends a repeat off and `finished(record, files)` as each record comes back, in
whatever order they finish; `files` are what the case wrote (log, profiler trace), by path
relative to the run folder, for executors whose cases run on another machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.results.record import Record
from bench.suite.spec import Case

EXECUTORS = ("local", "ray")
OnStarted = Callable[[Case, int], None]
OnFinished = Callable[[Record, Mapping[str, bytes]], None]


@dataclass(frozen=True)
class RunContext:
    """What every case of a run shares, wherever it executes."""

    run_id: str
    run_dir: Path
    #: Folders searched first for user factory modules (the suites' folders, the cwd).
    search_path: tuple[str, ...] = ()


class Executor(Protocol):
    name: str
    #: How each case is isolated where it runs (a backend name: forkserver, spawn, inline).
    isolation: str

    def environment(self) -> dict[str, Any]:
        """The environment the cases measure in (host and torch), for run.json's `env`."""
        ...

    def describe(self) -> dict[str, Any]:
        """Extra run.json entries: how the run executed (and on which nodes)."""
        ...

    def check(self, cases: Sequence[Case]) -> None:
        """Raise a BenchError, before the run folder is made, if some case cannot run."""
        ...

    def execute(self, plan: Sequence[tuple[Case, int]], context: RunContext,
                started: OnStarted, finished: OnFinished) -> None: ...

    def close(self) -> None: ...
