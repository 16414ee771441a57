"""The parent-side collectors: which exist, and which apply to a case.

A factory takes the case and returns a collector, or a `CollectorResult` saying why the
collector does not apply (a CPU case has no NVML device). Add one with `register_parent`.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.collectors import nvml, rss
from bench.collectors.base import CollectorResult, ParentCollector
from bench.suite.spec import Case

ParentFactory = Callable[[Case], "ParentCollector | CollectorResult"]

#: name -> factory, in registration order.
_PARENT: dict[str, ParentFactory] = {"rss": rss.make, "nvml": nvml.make}


def register_parent(name: str) -> Callable[[ParentFactory], ParentFactory]:
    def add(factory: ParentFactory) -> ParentFactory:
        if name in _PARENT:
            raise ValueError(f"collector {name!r} is already registered")
        _PARENT[name] = factory
        return factory
    return add


def known() -> list[str]:
    return list(_PARENT)


def parent_collectors(case: Case) -> list[ParentCollector | CollectorResult]:
    """The parent-side collectors for a case (none when `settings.telemetry` is off)."""
    if not case.settings.telemetry:
        return []
    return [factory(case) for factory in _PARENT.values()]
