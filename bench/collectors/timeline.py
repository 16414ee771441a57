"""Turning raw sample series into the record's timeline and per-window summaries.

Pure functions (no I/O, no threads). Each collector samples on its own schedule (RSS every
5 ms, NVML every 20 ms); the record keeps one timeline on a shared grid, `info["telemetry"]`:

    {"t_s": [...], "phase": [...], "rss_bytes": [...], "gpu_util_pct": [...], ...}

`t_s` is seconds since the worker started; each series holds, per grid bin, the max (memory,
temperature) or mean (utilisation, power, clocks) of the samples in that bin, or None where
none fell in it. A series is present only when it was sampled. Long cases are binned more
coarsely so a record stays small (at most `MAX_POINTS` bins).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from bench.collectors.base import Series, Window

MAX_POINTS = 2000


def in_window(points: Iterable[tuple[float, float]], span: tuple[float, float] | None
              ) -> list[float]:
    """Values sampled inside [start, end]."""
    if span is None:
        return []
    start, end = span
    return [v for t, v in points if start <= t <= end]


def resample(series: Sequence[Series], window: Window, *, t0_unix: float,
             interval_s: float, max_points: int = MAX_POINTS) -> dict[str, list[Any]]:
    """All series on one grid from `t0_unix` to the end of the case."""
    usable = [s for s in series if s.points]
    if not usable:
        return {}
    end = max(window.ended_unix, *(s.points[-1][0] for s in usable))
    duration = max(end - t0_unix, interval_s)
    width = max(interval_s, duration / max_points)
    bins = max(1, math.ceil(duration / width - 1e-9))
    out: dict[str, list[Any]] = {
        "t_s": [round(i * width, 6) for i in range(bins)],
        "phase": [window.phase_at(t0_unix + i * width) for i in range(bins)],
    }
    for s in usable:
        buckets: list[list[float]] = [[] for _ in range(bins)]
        for t, value in s.points:
            index = min(max(math.floor((t - t0_unix) / width + 1e-9), 0), bins - 1)
            buckets[index].append(value)
        out[s.name] = [_combine(b, s.combine) for b in buckets]
    return out


def _combine(values: list[float], how: str) -> float | None:
    if not values:
        return None
    if how == "max":
        return max(values)
    return sum(values) / len(values)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def peak(values: Sequence[float]) -> float | None:
    return max(values) if values else None
