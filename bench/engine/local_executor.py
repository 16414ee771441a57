"""The default executor: a run's cases one at a time on this machine, each in its own worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import env
from bench.collectors import peaks_cache
from bench.engine.case import probe_torch, run_case
from bench.engine.executor import OnFinished, OnStarted, RunContext
from bench.engine.outcome import Backend
from bench.suite.spec import Case


class LocalExecutor:
    """One case at a time on this machine, each in its own worker (`isolation`)."""

    name = "local"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.isolation = backend.name
        self._environment: dict[str, Any] | None = None

    def environment(self) -> dict[str, Any]:
        if self._environment is None:
            self._environment = {**env.host_info(), **probe_torch(self.backend)}
        return dict(self._environment)

    def describe(self) -> dict[str, Any]:
        return {"executor": {"name": self.name}}

    def check(self, cases: Sequence[Case]) -> None:
        """Every case can run here (one a machine cannot run is recorded `unsupported`)."""

    def execute(self, plan: Sequence[tuple[Case, int]], context: RunContext,
                started: OnStarted, finished: OnFinished) -> None:
        calibrations = peaks_cache.Index(self.environment())
        logs = None if self.backend.name == "inline" else context.run_dir / "logs"
        for case, repeat in plan:
            started(case, repeat)
            finished(run_case(case, self.backend, context.run_id,
                              search_path=context.search_path, log_dir=logs,
                              run_dir=context.run_dir, calibrations=calibrations,
                              repeat=repeat), {})

    def close(self) -> None:
        self.backend.close()
