"""Collector types: what a case measures besides its latency.

Two kinds, because the timed code must never share its process with a sampler:

- **Parent-side samplers** (`ParentCollector`) run in threads of the parent process while the
  worker runs: RSS of the worker pid (`rss`), NVML telemetry and energy (`nvml`). They start
  when the worker's pid is known, hear the worker's phase messages (build, warmup, timed,
  ..., teardown, each with the worker's unix time) and are stopped when the worker has ended.
- **Worker probes** (`WorkerProbe`) run inside the worker and are driven by its `PhaseBus`:
  CUDA allocator peaks per phase (`cuda_memory`), RSS before the build and `ru_maxrss`
  (`host_memory`). The profiler and the bytes-moved estimate are worker stages called once
  (`bench.measure.probes.attach`).

This module holds the Protocols and the result types only; it never imports torch (the parent
imports it). `bench.collectors.registry` builds the parent-side collectors that apply to a
case, `bench.measure.probes.registry` the worker probes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Target:
    """The process a parent-side collector samples, and when it started (unix time)."""

    pid: int
    started_unix: float
    #: True when the case runs inside the parent (inline isolation): samples then include the
    #: harness itself, and the sampler thread shares the GIL with the timed code.
    inline: bool = False
    #: The CPU sampler threads pin themselves to, away from the worker's (None: anywhere).
    sampler_cpu: int | None = None


@dataclass(frozen=True)
class Series:
    """A raw time series on its own time base: (unix time, value) pairs."""

    name: str
    points: tuple[tuple[float, float], ...]
    #: How samples are combined when resampled onto the report's grid: "max" or "mean".
    combine: str = "mean"


@dataclass(frozen=True)
class CollectorResult:
    """What one collector found. `ok` False means its main figures are missing; `reason`
    then says why (also used for partial gaps, e.g. one NVML field NotSupported)."""

    name: str
    ok: bool
    reason: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    series: Sequence[Series] = ()
    warnings: Sequence[str] = ()
    #: Structured details for the record's info (worker probes only).
    info: Mapping[str, Any] = field(default_factory=dict)

    def status(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason}


@dataclass(frozen=True)
class Window:
    """The case's phases as the worker announced them, for attributing samples."""

    phases: tuple[tuple[str, float], ...]
    #: When the worker ended (or the parent stopped listening), unix time.
    ended_unix: float

    def span(self, phase: str) -> tuple[float, float] | None:
        """[start, end) of a phase: from its message to the next phase's (or the end)."""
        for index, (name, start) in enumerate(self.phases):
            if name == phase:
                end = self.phases[index + 1][1] if index + 1 < len(self.phases) else \
                    self.ended_unix
                return start, end
        return None

    def phase_at(self, t_unix: float) -> str:
        current = "start"
        for name, start in self.phases:
            if start > t_unix:
                break
            current = name
        return current


@dataclass(frozen=True)
class CaseFacts:
    """What the parent knows about a finished case, for collectors that derive figures."""

    batch_size: int
    #: Median time per iteration in seconds, None when the case produced no samples.
    median_s: float | None
    window: Window
    #: Device UUID the worker reported it ran on (CUDA cases), for cross-checking mapping.
    worker_cuda_uuid: str | None = None


class ParentCollector(Protocol):
    """Samples the worker from the parent. Every method must return quickly and never raise
    for a missing source: a collector that cannot measure says why in its result."""

    name: str

    def start(self, target: Target) -> None: ...

    def on_phase(self, phase: str, t_unix: float) -> None: ...

    def stop(self) -> None: ...

    def results(self, facts: CaseFacts) -> list[CollectorResult]:
        """One result per figure group (the NVML sampler reports `nvml` and `energy`)."""


class WorkerProbe(Protocol):
    """Runs inside the worker, driven by its phase messages."""

    name: str

    def on_phase(self, phase: str) -> None: ...

    def result(self) -> CollectorResult: ...
