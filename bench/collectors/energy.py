"""Energy over the timed window, from NVML samples. Pure functions.

Two sources, best first:

- **counter**: `nvmlDeviceGetTotalEnergyConsumption` (Volta and newer), millijoules since the
  driver loaded. The driver refreshes it periodically, so a sample shows the energy up to the
  counter's last update, not up to the moment of the read. The window is therefore taken
  between counter *updates* (samples where the value changed): the last update at or before
  the timed window starts and the first at or after it ends. That window encloses the timed
  one; it is longer by at most about one update period plus one sampling interval at each
  end, and the record keeps its length (`energy_window_s`).
- **power-integral**: the trapezoidal integral of sampled power over the samples enclosing
  the timed window, when the counter is missing or never moved.

A timed window shorter than the counter's update period is never reported as zero energy:
it is extended to the enclosing updates and flagged. Per-item energy is the average power
over the measured window times the median time per item — the figure the latency column
describes.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Flag an energy window longer than the timed window by more than this fraction.
EXTENSION_WARN_RATIO = 0.10


@dataclass(frozen=True)
class Energy:
    energy_j: float
    window_s: float
    method: str  # "counter" | "power-integral"
    #: How much longer the measured window is than the timed window.
    extended_s: float
    #: Update period of the counter as observed (None for the power integral).
    update_period_s: float | None = None

    @property
    def mean_power_w(self) -> float:
        return self.energy_j / self.window_s

    def per_item_j(self, median_s: float, batch_size: int) -> float:
        return self.mean_power_w * median_s / batch_size

    def warning(self, timed_s: float) -> str | None:
        if self.extended_s <= EXTENSION_WARN_RATIO * timed_s:
            return None
        period = (f"; the counter updates every ~{self.update_period_s * 1e3:.0f} ms"
                  if self.update_period_s else "")
        return (f"energy measured over {self.window_s:.3f} s for a {timed_s:.3f} s timed "
                f"window ({self.method}{period}); per-item energy assumes the power outside the "
                "timed window was the same — raise min_time_s for a tighter figure")


class EnergyUnavailable(Exception):
    """No honest energy figure could be made; the message says why."""


def from_counter(points: Sequence[tuple[float, float]], span: tuple[float, float]) -> Energy:
    """Energy from (unix time, millijoules) counter samples enclosing `span`."""
    if len(points) < 2:
        raise EnergyUnavailable("fewer than two energy-counter samples")
    ordered = sorted(points)
    for (_, before), (_, after) in itertools.pairwise(ordered):
        if after < before:
            raise EnergyUnavailable("the energy counter went backwards (driver reload?)")
    # The first sample is not an update: when the counter last moved before it is unknown.
    updates = [(t, v) for (_, prev), (t, v) in itertools.pairwise(ordered)
               if v != prev]
    if len(updates) < 2:
        raise EnergyUnavailable("the energy counter did not change while the case ran")
    start, end = span
    first = [u for u in updates if u[0] <= start]
    last = [u for u in updates if u[0] >= end]
    if not first or not last:
        raise EnergyUnavailable("no energy-counter update before the timed window began or "
                                "after it ended (sampling started late, stopped early, or the "
                                "counter updates too rarely)")
    (t0, e0), (t1, e1) = first[-1], last[0]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(updates)]
    period = statistics.median(gaps) if gaps else None
    return Energy(energy_j=(e1 - e0) / 1e3, window_s=t1 - t0, method="counter",
                  extended_s=(t1 - t0) - (end - start), update_period_s=period)


def from_power(points: Sequence[tuple[float, float]], span: tuple[float, float]) -> Energy:
    """Energy from (unix time, watts) samples: trapezoids over the samples enclosing `span`."""
    ordered = sorted(points)
    start, end = span
    before = [p for p in ordered if p[0] <= start]
    after = [p for p in ordered if p[0] >= end]
    if not before or not after:
        raise EnergyUnavailable("the power samples do not enclose the timed window")
    t0, t1 = before[-1][0], after[0][0]
    inside = [p for p in ordered if t0 <= p[0] <= t1]
    if len(inside) < 2 or t1 <= t0:
        raise EnergyUnavailable("fewer than two power samples around the timed window")
    joules = sum((b[0] - a[0]) * (a[1] + b[1]) / 2
                 for a, b in itertools.pairwise(inside))
    return Energy(energy_j=joules, window_s=t1 - t0, method="power-integral",
                  extended_s=(t1 - t0) - (end - start))


def best(counter: Sequence[tuple[float, float]], power: Sequence[tuple[float, float]],
         span: tuple[float, float]) -> tuple[Energy, str | None]:
    """Counter first, else the power integral; returns the figure and why the counter was
    not used (None when it was). Raises EnergyUnavailable naming both reasons."""
    counter_reason = "no energy-counter samples (not supported before Volta)"
    if counter:
        try:
            return from_counter(counter, span), None
        except EnergyUnavailable as exc:
            counter_reason = str(exc)
    if not power:
        raise EnergyUnavailable(f"counter: {counter_reason}; power: no power samples")
    try:
        return from_power(power, span), counter_reason
    except EnergyUnavailable as exc:
        raise EnergyUnavailable(f"counter: {counter_reason}; power: {exc}") from None
