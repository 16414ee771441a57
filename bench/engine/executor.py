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

from bench import env
from bench.collectors import calibration
from bench.errors import BenchError
from bench.isolation import backend_for
from bench.results import Record
from bench.spec import Case

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

    def environment(self) -> dict[str, Any]:
        """The environment the cases measure in (host and torch), for run.json's `env`."""
        ...

    def describe(self) -> dict[str, Any]:
        """Extra run.json entries: how the run executed (and on which nodes)."""
        ...

    def execute(self, plan: Sequence[tuple[Case, int]], context: RunContext,
                started: OnStarted, finished: OnFinished) -> None: ...

    def close(self) -> None: ...


class LocalExecutor:
    """One case at a time on this machine, each in its own worker (`isolation`)."""

    name = "local"

    def __init__(self, isolation: str = "forkserver") -> None:
        self.backend = backend_for(isolation)
        self._environment: dict[str, Any] | None = None

    def environment(self) -> dict[str, Any]:
        from bench.runner import probe_torch

        if self._environment is None:
            self._environment = {**env.host_info(), **probe_torch(self.backend)}
        return dict(self._environment)

    def describe(self) -> dict[str, Any]:
        return {"executor": {"name": self.name}}

    def execute(self, plan: Sequence[tuple[Case, int]], context: RunContext,
                started: OnStarted, finished: OnFinished) -> None:
        from bench.runner import run_case

        calibrations = calibration.Index(self.environment())
        logs = None if self.backend.name == "inline" else context.run_dir / "logs"
        for case, repeat in plan:
            started(case, repeat)
            finished(run_case(case, self.backend, context.run_id,
                              search_path=context.search_path, log_dir=logs,
                              run_dir=context.run_dir, calibrations=calibrations,
                              repeat=repeat), {})

    def close(self) -> None:
        self.backend.close()


@dataclass(frozen=True)
class ExecutorOptions:
    """How to execute a run, as the CLI and the pytest plugin take it."""

    name: str = "local"
    isolation: str = "forkserver"
    #: Ray only: None (a Ray instance on this machine for the run), "auto" or "HOST:PORT".
    ray_address: str | None = None
    cpu_slots: int = 1

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise BenchError(f"unknown executor {self.name!r}; use one of {', '.join(EXECUTORS)}")
        if self.name != "ray" and (self.ray_address is not None or self.cpu_slots != 1):
            raise BenchError("--ray-address and --cpu-slots apply to --executor ray only")
        if self.name == "ray" and self.isolation != "forkserver":
            raise BenchError(f"--isolation {self.isolation} cannot run on Ray: each node runs "
                             "cases in forkserver workers (drop --isolation)")


def make_executor(options: ExecutorOptions) -> Executor:
    """The executor, connected and ready: a bad address or a missing Ray fails here, before
    any run folder is made."""
    if options.name == "ray":
        from bench.engine.ray_executor import RayExecutor, RayOptions

        return RayExecutor(RayOptions(address=options.ray_address, cpu_slots=options.cpu_slots))
    return LocalExecutor(options.isolation)
