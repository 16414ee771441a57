"""Host memory of the worker, sampled from the parent: peak RSS over the case and over the
timed window.

The parent reads the worker's resident set size every `rss_interval_s` (5 ms by default) —
`/proc/<pid>/statm` through one open descriptor on Linux, psutil elsewhere — so the worker's
timed code never shares its GIL with the sampler. Sampling can miss a spike shorter
than the interval; the worker's own `ru_maxrss` (the kernel's high-water mark, recorded by the
`host_memory` probe) is the cross-check, and a large gap between the two is a warning.

With inline isolation the case runs in the parent itself: this process is sampled, the
figures include the harness, and the sampler thread competes with the timed code; the record
says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import psutil

from bench.collectors import timeline
from bench.collectors.base import CaseFacts, CollectorResult, Series, Target
from bench.collectors.sampler import PeriodicSampler, StopSampling
from bench.suite.spec import Case

#: A sampled peak this far below ru_maxrss means the sampler missed a short spike.
MISSED_PEAK_RATIO = 0.9


class RssCollector:
    name = "rss"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._sampler: PeriodicSampler | None = None
        self._target: Target | None = None
        self._error: str | None = None
        self._close: Callable[[], None] | None = None

    def start(self, target: Target) -> None:
        self._target = target
        try:
            process = psutil.Process(target.pid)
        except psutil.Error as exc:
            self._error = f"cannot open process {target.pid}: {exc}"
            return
        statm = _statm_reader(target.pid)
        if statm is not None:
            read, self._close = statm
        else:
            read = _psutil_reader(process)
        self._sampler = PeriodicSampler(read, self.interval_s, name="rss-sampler",
                                        cpu=target.sampler_cpu)
        self._sampler.start()

    def on_phase(self, phase: str, t_unix: float) -> None:
        pass

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        if self._close is not None:
            self._close()
            self._close = None

    def results(self, facts: CaseFacts) -> list[CollectorResult]:
        sampler = self._sampler
        if sampler is None or not sampler.samples:
            why = self._error or (sampler.error if sampler else None) or \
                "the worker ended before the first RSS sample"
            return [CollectorResult(self.name, ok=False, reason=why)]
        points = tuple((t, float(v)) for t, v in sampler.samples)
        metrics: dict[str, Any] = {"peak_rss_bytes": int(max(v for _, v in points))}
        timed = timeline.in_window(points, facts.window.span("timed"))
        reason: str | None = None
        if timed:
            metrics["peak_rss_timed_bytes"] = int(max(timed))
        elif facts.window.span("timed") is not None:
            reason = ("no RSS sample fell inside the timed window (shorter than "
                      f"rss_interval_s = {self.interval_s:g} s)")
        if sampler.error:
            reason = f"sampling stopped early: {sampler.error}"
        warnings = []
        if self._target is not None and self._target.inline:
            warnings.append("inline isolation: RSS is the runner's own process (harness "
                            "included) and its sampler thread ran beside the timed code")
            reason = (reason + "; " if reason else "") + "inline: sampled the runner process"
        return [CollectorResult(self.name, ok=True, reason=reason, metrics=metrics,
                                series=(Series("rss_bytes", points, combine="max"),),
                                warnings=warnings)]


def _psutil_reader(process: psutil.Process) -> Callable[[], int]:
    def read() -> int:
        try:
            rss = int(process.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            raise StopSampling from None
        if rss == 0:  # the process is exiting: its memory is already released
            raise StopSampling
        return rss
    return read


def _statm_reader(pid: int) -> tuple[Callable[[], int], Callable[[], None]] | None:
    """On Linux, read /proc/<pid>/statm through one open descriptor: the same figure psutil
    reports (resident pages × page size) for half the sampler's CPU time, which matters at
    200 samples a second on a machine whose cores the worker uses."""
    try:
        fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
    except OSError:
        return None
    page = os.sysconf("SC_PAGE_SIZE")

    def read() -> int:
        try:
            resident = int(os.pread(fd, 256, 0).split()[1]) * page
        except (OSError, IndexError, ValueError):  # ESRCH once the process is reaped
            raise StopSampling from None
        if resident == 0:  # a zombie: its memory is already released
            raise StopSampling
        return resident

    return read, lambda: os.close(fd)


def make(case: Case) -> RssCollector:
    return RssCollector(case.settings.rss_interval_s)


def check_against_ru_maxrss(metrics: dict[str, Any]) -> str | None:
    """A warning when the sampled peak is well below the kernel's high-water mark."""
    sampled, kernel = metrics.get("peak_rss_bytes"), metrics.get("ru_maxrss_bytes")
    if not sampled or not kernel or sampled >= MISSED_PEAK_RATIO * kernel:
        return None
    return (f"sampled peak RSS ({sampled / 2**20:.0f} MiB) is below the worker's ru_maxrss "
            f"({kernel / 2**20:.0f} MiB): a spike shorter than rss_interval_s was missed; "
            "ru_maxrss_bytes is the true peak")
