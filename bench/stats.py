"""Statistics of raw timing samples. Pure functions: no I/O, no torch.

The median leads (robust to the long right tail of timings), with the IQR as its spread and a
distribution-free confidence interval from order statistics, which makes no normality
assumption — timings are rarely normal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

#: IQR / median at or above this is flagged as a noisy measurement.
NOISE_WARNING_RATIO = 0.10


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based ranks (lo, hi) of the sorted samples bounding the median's CI.

    With B ~ Binomial(n, 1/2), [x(l), x(n-l+1)] (1-based) covers the median with probability
    1 - 2·P(B <= l-1); l is the largest rank keeping that at or above `confidence`. Below six
    samples no rank qualifies at 95% and the full range is returned.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    alpha = 1.0 - confidence
    rank = int(sps.binom.ppf(alpha / 2, n, 0.5))  # smallest k with P(B <= k) >= alpha/2
    rank = max(rank, 1)
    return rank - 1, n - rank


Samples = Sequence[float] | np.ndarray


def median_ci(samples: Samples, confidence: float = 0.95) -> tuple[float, float]:
    ordered = np.sort(np.asarray(samples, dtype=float))
    lo, hi = median_ci_ranks(len(ordered), confidence)
    return float(ordered[lo]), float(ordered[hi])


def relative_ci_halfwidth(samples: Samples, confidence: float = 0.95) -> float:
    """The larger distance from the median to a CI bound, as a fraction of the median.

    This is the 'noise achieved' that the adaptive stop compares with its target (±1%).
    """
    ordered = np.sort(np.asarray(samples, dtype=float))
    median = float(np.median(ordered))
    if median <= 0:
        return math.inf
    lo, hi = median_ci_ranks(len(ordered), confidence)
    return float(max(median - ordered[lo], ordered[hi] - median) / median)


@dataclass(frozen=True)
class Summary:
    """Everything the report and the gate read about one case's timing, in milliseconds."""

    n: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    ci_low_ms: float
    ci_high_ms: float
    ci_rel: float
    noise: float
    noise_warning: bool
    throughput_items_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples_ns: Sequence[float], *, items_per_iter: int = 1,
              confidence: float = 0.95) -> Summary:
    """Summary statistics of per-iteration times given in nanoseconds."""
    ms = np.asarray(samples_ns, dtype=float) / 1e6
    if ms.size == 0:
        raise ValueError("no samples to summarise")
    q1, median, q3, p90, p95, p99 = np.percentile(ms, [25, 50, 75, 90, 95, 99])
    lo, hi = median_ci(ms, confidence)
    iqr = float(q3 - q1)
    noise = iqr / median if median > 0 else math.inf
    return Summary(
        n=int(ms.size),
        median_ms=float(median),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        q1_ms=float(q1),
        q3_ms=float(q3),
        iqr_ms=iqr,
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        ci_low_ms=lo,
        ci_high_ms=hi,
        ci_rel=max(median - lo, hi - median) / median if median > 0 else math.inf,
        noise=noise,
        noise_warning=noise >= NOISE_WARNING_RATIO,
        throughput_items_s=items_per_iter / (median / 1e3) if median > 0 else math.inf,
    )
