"""The worker probes: which exist, and which apply to a case (imported inside workers).

Names are unique across both sides, since a record's `collectors` status holds both.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.collectors import registry as parent_registry
from bench.collectors.base import CollectorResult, WorkerProbe
from bench.measure.probes import cuda_memory, host_memory
from bench.suite.spec import Case

WorkerFactory = Callable[[Case], "WorkerProbe | CollectorResult"]

_WORKER: dict[str, WorkerFactory] = {"cuda_memory": cuda_memory.make,
                                     "host_memory": host_memory.make}


def register_worker(name: str) -> Callable[[WorkerFactory], WorkerFactory]:
    def add(factory: WorkerFactory) -> WorkerFactory:
        if name in _WORKER or name in parent_registry.known():
            raise ValueError(f"collector {name!r} is already registered")
        _WORKER[name] = factory
        return factory
    return add


def known() -> list[str]:
    """Every collector name, parent side first."""
    return [*parent_registry.known(), *_WORKER]


def worker_probes(case: Case) -> list[WorkerProbe | CollectorResult]:
    """The in-worker probes for a case (none when `settings.telemetry` is off)."""
    if not case.settings.telemetry:
        return []
    return [factory(case) for factory in _WORKER.values()]
