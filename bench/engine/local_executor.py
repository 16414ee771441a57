"""The default executor: a run's cases one at a time on this machine, each in its own worker
(a counted case in the run's counting worker under callgrind)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bench import env
from bench.collectors import peaks_cache
from bench.engine.case import probe_torch, run_case
from bench.engine.counting import CountingWorker
from bench.engine.executor import OnFinished, OnStarted, RunContext
from bench.engine.outcome import Backend
from bench.engine.process import ProcessBackend
from bench.suite import hf
from bench.suite.axes import TORCHAO_PRECISIONS
from bench.suite.spec import Case


class LocalExecutor:
    """One case at a time on this machine, each in its own worker (`isolation`)."""

    name = "local"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.isolation = backend.name
        self._environment: dict[str, Any] | None = None
        #: Counting workers by `count_isa`, started when the first counted case comes.
        self.counting: dict[str, CountingWorker] = {}

    def environment(self) -> dict[str, Any]:
        if self._environment is None:
            self._environment = {**env.host_info(), **probe_torch(self.backend)}
        return dict(self._environment)

    def describe(self) -> dict[str, Any]:
        return {"executor": {"name": self.name}}

    def check(self, cases: Sequence[Case]) -> None:
        """Every case can run here (one a machine cannot run is recorded `unsupported`).
        Called before the first worker starts: the forkserver also preloads the modules the
        run's transformers families need (seconds per worker otherwise)."""
        if isinstance(self.backend, ProcessBackend):
            quantised = any(c.precision in TORCHAO_PRECISIONS for c in cases)
            self.backend.preload([*hf.preload_modules(cases),
                                  *(["torchao.quantization"] if quantised else [])])

    def execute(self, plan: Sequence[tuple[Case, int]], context: RunContext,
                started: OnStarted, finished: OnFinished) -> None:
        calibrations = peaks_cache.Index(self.environment())
        for case, repeat in plan:
            started(case, repeat)
            backend = self.backend
            if case.settings.counted:  # whatever the isolation, with its counting settings
                case = replace(case, settings=case.settings.for_counting())
                backend = self._counting_worker(case.settings.count_isa)
            logs = None if backend.name == "inline" else context.run_dir / "logs"
            finished(run_case(case, backend, context.run_id,
                              search_path=context.search_path, log_dir=logs,
                              run_dir=context.run_dir, calibrations=calibrations,
                              repeat=repeat), {})

    def start_counting(self, cases: Sequence[Case]) -> None:
        """Start the counting workers these cases will need now, without waiting for them
        (their first case does): the sides of a counted A/B run start theirs together."""
        for case in cases:
            if case.settings.counted and case.device_kind == "cpu":
                self._counting_worker(case.settings.count_isa).start()

    def _counting_worker(self, isa: str) -> CountingWorker:
        if isa not in self.counting:
            self.counting[isa] = CountingWorker(isa)
        return self.counting[isa]

    def close(self) -> None:
        try:
            for worker in self.counting.values():
                worker.close()
        finally:
            self.backend.close()
