"""Constraints ("p99_ms<=5", "peak_rss_bytes<=2GiB") and their confidence-aware verdicts.

A timing constraint is met when the far bound of the metric's confidence interval meets it,
not merely its point value (the median's is the case's level and interval, across its
workers where there are several; other quantiles' are distribution-free, from the pooled
samples): `meets` (the whole interval is inside),
`uncertain` (the point value is inside, the interval is not; with the number of samples that
would settle it if the distribution stays as sampled) or `fails` (the point value is outside).
A metric without an interval (memory, energy, fidelity: one value per case) meets or fails on
its value. A case without a value for the metric fails it, saying so.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from bench.decide.metrics import Metric, available, resolve
from bench.gate.significance import MIN_REPEATS
from bench.stats import quantile_ci_ranks, samples_to_bound
from bench.suite.question import split_constraint

Verdict = Literal["meets", "uncertain", "fails"]
VERDICTS: tuple[Verdict, ...] = ("meets", "uncertain", "fails")
OPERATORS: dict[str, Any] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}

@dataclass(frozen=True)
class Constraint:
    """`metric op limit`, the limit in the metric's own unit; `text` as the user wrote it."""

    text: str
    metric: Metric
    op: str
    limit: float

    @property
    def upper(self) -> bool:
        """True for a ceiling (<=, <), False for a floor."""
        return self.op in ("<=", "<")

    def holds(self, value: float) -> bool:
        return bool(OPERATORS[self.op](value, self.limit))


def parse_constraint(text: str, frame: pd.DataFrame,
                     metrics: list[str] | None = None) -> Constraint:
    """Parse "metric<=value[unit]" against the metrics this frame has."""
    parts = split_constraint(text)
    metric = resolve(parts.metric, frame, what="constraint metric", metrics=metrics)
    return Constraint(text=text.strip(), metric=metric, op=parts.op,
                      limit=parts.number * metric.scale(parts.unit))


def parse_constraints(texts: Sequence[str], frame: pd.DataFrame) -> tuple[Constraint, ...]:
    """Each text may hold several constraints separated by commas."""
    metrics = available(frame)
    return tuple(parse_constraint(part, frame, metrics) for text in texts
                 for part in text.split(",") if part.strip())


# ---- intervals ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Values:
    """A metric over the rows of a frame: point values and confidence bounds (equal to the
    point where the metric has no interval; -inf/inf where the samples are too few)."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    #: Rows whose interval is across their workers (`bench.stats.level`): more workers, not
    #: more samples, would narrow it. None: no row's is.
    run_to_run: np.ndarray | None = None


def sorted_samples(frame: pd.DataFrame) -> list[np.ndarray]:
    """Each row's raw samples (ms), sorted; empty where a row has none. Sort once per
    question: every timing metric reads its order statistics from these."""
    if "samples_ms" not in frame.columns:
        return [np.empty(0) for _ in range(len(frame))]
    return [np.sort(np.asarray(s, dtype=float)) if isinstance(s, (list, tuple, np.ndarray))
            and len(s) else np.empty(0) for s in frame["samples_ms"]]


def values(frame: pd.DataFrame, metric: Metric, confidence: float,
           samples: list[np.ndarray] | None = None) -> Values:
    if metric.quantile is None:
        point = pd.to_numeric(frame[metric.name], errors="coerce").to_numpy(dtype=float) \
            if metric.name in frame.columns else np.full(len(frame), np.nan)
        return Values(point, point, point)
    q = metric.quantile
    if samples is None:
        samples = sorted_samples(frame)
    sizes = np.array([max(len(s), 1) for s in samples])
    lo_rank, hi_rank = quantile_ci_ranks(sizes, q, confidence)
    point = np.full(len(samples), np.nan)
    low, high = point.copy(), point.copy()
    for i, s in enumerate(samples):
        if not s.size:
            continue
        position = q * (s.size - 1)  # numpy's default (linear) percentile, without its overhead
        below = int(position)
        above = min(below + 1, s.size - 1)
        point[i] = float(s[below] + (position - below) * (s[above] - s[below]))
        low[i] = s[lo_rank[i]] if lo_rank[i] >= 0 else -math.inf
        high[i] = s[hi_rank[i]] if hi_rank[i] < s.size else math.inf
    run_to_run = None
    if q == 0.5 and {"median_ms", "ci_low_ms", "ci_high_ms"} <= set(frame.columns):
        # The median is the case's level, with the interval every reader shows
        # (`bench.stats.level`): across its workers where there are several.
        point = pd.to_numeric(frame["median_ms"], errors="coerce").to_numpy(dtype=float)
        low = pd.to_numeric(frame["ci_low_ms"], errors="coerce").to_numpy(dtype=float)
        high = pd.to_numeric(frame["ci_high_ms"], errors="coerce").to_numpy(dtype=float)
        if "ci_between_workers" in frame.columns:
            run_to_run = frame["ci_between_workers"].fillna(False).to_numpy(dtype=bool)
            run_to_run = run_to_run if run_to_run.any() else None
    if metric.per_item_rate:  # items/s = batch / median: the median's interval, inverted
        batch = pd.to_numeric(frame.get("batch_size", 1), errors="coerce")
        items = np.asarray(batch, dtype=float) * 1e3
        with np.errstate(divide="ignore"):
            return Values(items / point, items / high, items / np.where(low > 0, low, 0.0),
                          run_to_run)
    return Values(point, low, high, run_to_run)


def worker_medians(value: Any) -> np.ndarray | None:
    """A row's `repeat_medians_ms` when it holds MIN_REPEATS or more (enough for the gate's
    test across repeats), else None."""
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) < MIN_REPEATS:
        return None
    return np.asarray(value, dtype=float)


# ---- verdicts -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Checked:
    """One constraint over the rows: verdicts, values and bounds."""

    constraint: Constraint
    verdict: np.ndarray
    values: Values


def check(frame: pd.DataFrame, constraint: Constraint, confidence: float,
          samples: list[np.ndarray] | None = None) -> Checked:
    vals = values(frame, constraint.metric, confidence, samples)
    limit = constraint.limit
    compare = OPERATORS[constraint.op]
    with np.errstate(invalid="ignore"):
        point_ok = compare(vals.point, limit) & np.isfinite(vals.point)
        far = vals.high if constraint.upper else vals.low  # the bound on the limit's side
        bound_ok = compare(far, limit) & ~np.isnan(far)
    verdict = np.where(~point_ok, "fails", np.where(bound_ok, "meets", "uncertain"))
    return Checked(constraint, verdict, vals)


def extra_samples(samples: np.ndarray, constraint: Constraint, batch: float,
                  confidence: float) -> float:
    """Samples beyond those taken that would move the far bound past the limit, if the
    distribution stays as sampled (NaN where no count would)."""
    data = np.asarray(samples, dtype=float)
    metric = constraint.metric
    if not data.size or not metric.has_interval:
        return math.nan
    if metric.per_item_rate:  # rate >= L  <=>  median <= batch·1e3 / L (and the reverse)
        limit = batch * 1e3 / constraint.limit if constraint.limit > 0 else math.inf
        q, upper = 0.5, not constraint.upper
    else:
        limit, q, upper = constraint.limit, float(metric.quantile or 0.5), constraint.upper
    share = float(np.mean(data <= limit) if upper else np.mean(data >= limit))
    total = samples_to_bound(len(data), q, share, confidence, upper=upper)
    return math.nan if total is None else float(total - len(data))


def describe_failure(constraint: Constraint, value: float) -> str:
    """Why a value fails a constraint, by how much: "12% over p99_ms<=5 (5.6 ms)"."""
    metric = constraint.metric
    if math.isnan(value):
        return f"{metric.name} not measured for this case ({constraint.text})"
    shown = format_value(metric, value)
    limit = format_value(metric, constraint.limit)
    relative = metric.name.endswith(("_ms", "_s", "_bytes", "_j", "_w"))
    if relative and constraint.limit > 0:
        pct = abs(value - constraint.limit) / constraint.limit * 100
        side = "over" if constraint.upper else "under"
        if constraint.upper and pct >= 100:  # "6.2x the limit" reads better than "520% over"
            return f"{shown}: {value / constraint.limit:.3g}× the limit {constraint.text}"
        return f"{shown}: {pct:.3g}% {side} the limit {constraint.text}"
    sign = ">" if constraint.upper else "<"
    return f"{metric.name} {shown} {sign} {limit} ({constraint.text})"


def format_value(metric: Metric, value: float) -> str:
    """A value in the metric's unit, readable: 5.12 ms, 1.5 GiB, 0.995."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "unbounded"
    name = metric.name
    if name.endswith("_bytes"):
        for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
            if abs(value) >= size:
                return f"{value / size:.3g} {unit}"
        return f"{value:.0f} B"
    if name.endswith("_items_s"):
        return f"{value:,.4g} items/s"
    for suffix, unit in (("_ms", "ms"), ("_j", "J"), ("_w", "W"), ("_s", "s")):
        if name.endswith(suffix):
            return f"{value:.4g} {unit}"
    return f"{value:.4g}"
