"""Host memory seen from inside the worker: RSS before the model is built, the kernel's own
high-water mark (`ru_maxrss`) at teardown, and the page faults taken in the timed window.

Page faults in the timed window mean the allocator keeps handing out fresh pages (each
first write costs a trip into the kernel): a model that allocates big blocks per call on an
allocator that returns them to the OS. `minor_faults_per_call` makes that visible.

`ru_maxrss` cannot miss a spike, unlike the parent's sampler, but it covers the whole life
of the process (including what the forkserver had loaded when the worker was forked) and
cannot be split by phase; the two together bound the peak. In inline isolation it is the
runner's lifetime peak, so the parent drops it there.
"""

from __future__ import annotations

import resource
import sys
from typing import Any

import psutil

from bench.collectors.base import CollectorResult
from bench.suite.spec import Case


def ru_maxrss_bytes() -> int:
    """The process's peak RSS; Linux reports KiB, macOS bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def faults() -> tuple[int, int]:
    """(minor, major) page faults of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_majflt


def faults_per_call(metrics: dict[str, Any], calls: int) -> None:
    """Turn the timed window's fault totals into per-call figures, once the call count is known."""
    for kind in ("minor", "major"):
        total = metrics.pop(f"{kind}_faults_timed", None)
        if total is not None and calls > 0:
            metrics[f"{kind}_faults_per_call"] = total / calls


class HostMemoryProbe:
    name = "host_memory"

    def __init__(self) -> None:
        self.metrics: dict[str, Any] = {}
        self.error: str | None = None
        self._faults_at_timed: tuple[int, int] | None = None

    def on_phase(self, phase: str) -> None:
        try:
            if self._faults_at_timed is not None:  # the phase after "timed" closes its window
                (minor0, major0), (minor1, major1) = self._faults_at_timed, faults()
                self.metrics.update(minor_faults_timed=minor1 - minor0,
                                    major_faults_timed=major1 - major0)
                self._faults_at_timed = None
            if phase == "timed":
                self._faults_at_timed = faults()
            elif phase == "build" and "rss_before_build_bytes" not in self.metrics:
                self.metrics["rss_before_build_bytes"] = int(psutil.Process().memory_info().rss)
            elif phase == "teardown":
                self.metrics["ru_maxrss_bytes"] = ru_maxrss_bytes()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def result(self) -> CollectorResult:
        return CollectorResult(self.name, ok=self.error is None and bool(self.metrics),
                               reason=self.error, metrics=self.metrics)


def make(case: Case) -> HostMemoryProbe:
    return HostMemoryProbe()
