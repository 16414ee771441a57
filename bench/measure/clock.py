"""Clocks: where timestamps come from. The timing loop only ever talks to this protocol.

A clock marks points on its own timeline (host `perf_counter_ns`, or CUDA events on the
stream) and turns pairs of marks into durations. CUDA marks can only be read after a
synchronise, so the loop reads marks in rounds and synchronises once per round.

`FakeClock` is the test seam (as torch Timer's `_timer_cls`): workloads advance it by the
duration they pretend to take, which makes calibration and stopping tests exact and instant.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Protocol


class Clock(Protocol):
    name: str

    def now_ns(self) -> int:
        """Host time, for the warm-up, min_time and max_time budgets."""

    def mark(self) -> Any:
        """A point on the clock's timeline."""

    def synchronize(self) -> None:
        """Wait until every mark taken so far can be read."""

    def elapsed_ns(self, start: Any, end: Any) -> float:
        """Duration between two marks (after `synchronize`)."""

    def min_block_ns(self) -> float:
        """Shortest timed block for which the clock's own cost is negligible."""


#: torch Timer's rule: the timer's overhead must stay below 1e-4 of a timed block.
CPU_OVERHEAD_RATIO = 1e-4


class PerfCounterClock:
    """Host clock: `time.perf_counter_ns`, monotonic, nanosecond resolution."""

    name = "perf_counter_ns"

    def __init__(self) -> None:
        self._min_block: float | None = None

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def mark(self) -> int:
        return time.perf_counter_ns()

    def synchronize(self) -> None:
        pass

    def elapsed_ns(self, start: int, end: int) -> float:
        return float(end - start)

    def overhead_ns(self) -> float:
        """Median cost of an empty timed interval (two marks back to back)."""
        clock = time.perf_counter_ns
        gaps = []
        for _ in range(200):
            start = clock()
            gaps.append(clock() - start)
        return max(float(statistics.median(gaps)), 1.0)

    def min_block_ns(self) -> float:
        if self._min_block is None:
            self._min_block = self.overhead_ns() / CPU_OVERHEAD_RATIO
        return self._min_block


class CudaEventClock:
    """CUDA events on the current stream: device-side timestamps with ~0.5 µs resolution.

    Events cost nothing on the device timeline, so the block rule is about resolution, not
    overhead: a block must span 1000 resolution steps (0.5 ms) for a 0.1% quantisation error.
    """

    name = "cuda_event"
    RESOLUTION_NS = 500.0

    def __init__(self, device: Any) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)

    def now_ns(self) -> int:
        return time.perf_counter_ns()

    def mark(self) -> Any:
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self._device)

    def elapsed_ns(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end)) * 1e6

    def min_block_ns(self) -> float:
        return self.RESOLUTION_NS * 1000


class FakeClock:
    """Deterministic clock for tests: time moves only when `advance` is called.

    `mark_cost_ns` is added on every mark, so the timer's own overhead can be simulated.
    """

    name = "fake"

    def __init__(self, *, mark_cost_ns: float = 50.0, min_block_ns: float | None = None) -> None:
        self.t = 0.0
        self.mark_cost_ns = mark_cost_ns
        self._min_block = min_block_ns
        self.synchronize_calls = 0

    def advance(self, ns: float) -> None:
        self.t += ns

    def now_ns(self) -> int:
        return int(self.t)

    def mark(self) -> float:
        self.t += self.mark_cost_ns
        return self.t

    def synchronize(self) -> None:
        self.synchronize_calls += 1

    def elapsed_ns(self, start: float, end: float) -> float:
        return end - start

    def min_block_ns(self) -> float:
        if self._min_block is not None:
            return self._min_block
        return max(self.mark_cost_ns, 1.0) / CPU_OVERHEAD_RATIO
