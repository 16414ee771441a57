"""Host memory seen from inside the worker: RSS before the model is built, and the kernel's
own high-water mark (`ru_maxrss`) at teardown.

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

from bench.collectors import CollectorResult, register_worker
from bench.spec import Case


def ru_maxrss_bytes() -> int:
    """The process's peak RSS; Linux reports KiB, macOS bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class HostMemoryProbe:
    name = "host_memory"

    def __init__(self) -> None:
        self.metrics: dict[str, Any] = {}
        self.error: str | None = None

    def on_phase(self, phase: str) -> None:
        try:
            if phase == "build" and "rss_before_build_bytes" not in self.metrics:
                self.metrics["rss_before_build_bytes"] = int(psutil.Process().memory_info().rss)
            elif phase == "teardown":
                self.metrics["ru_maxrss_bytes"] = ru_maxrss_bytes()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def result(self) -> CollectorResult:
        return CollectorResult(self.name, ok=self.error is None and bool(self.metrics),
                               reason=self.error, metrics=self.metrics)


@register_worker("host_memory")
def make(case: Case) -> HostMemoryProbe:
    return HostMemoryProbe()
