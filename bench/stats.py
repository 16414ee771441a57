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


# ---- tail percentiles -----------------------------------------------------------------------
def quantile_ci_ranks(n: np.ndarray | int, q: float, confidence: float = 0.95,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks (lo, hi) of the sorted samples bounding the q-quantile's CI, for one
    sample count or an array of them.

    The distribution-free interval of order statistics: with B ~ Binomial(n, q) the number of
    samples below the true quantile, [x(l), x(u)] (1-based) covers it with probability
    P(l <= B < u). Each tail gets at most (1 - confidence) / 2. Where a tail cannot be bounded
    with so few samples (a p99 from 50 samples has no upper bound at 95%), its rank is -1
    (below) or n (above): the interval is open on that side. For q = 0.5 these are the ranks
    of `median_ci_ranks`, except that it clamps to the extreme samples instead of opening.
    """
    sizes = np.atleast_1d(np.asarray(n, dtype=np.int64))
    if (sizes < 1).any():
        raise ValueError("need at least one sample")
    alpha = 1.0 - confidence
    low_k = sps.binom.ppf(alpha / 2, sizes, q).astype(np.int64)
    # the lower bound x(l) needs P(B <= l - 1) <= alpha/2: l - 1 < low_k, i.e. 0-based l - 1
    lo = np.where(sps.binom.cdf(low_k, sizes, q) <= alpha / 2, low_k, low_k - 1)
    hi = sps.binom.ppf(1 - alpha / 2, sizes, q).astype(np.int64)  # P(B >= u) <= alpha/2
    return lo, np.minimum(hi, sizes)


def quantile_ci(samples: Samples, q: float, confidence: float = 0.95,
                ) -> tuple[float, float]:
    """The q-quantile's distribution-free CI from raw samples; -inf/inf on a side the samples
    are too few to bound."""
    ordered = np.sort(np.asarray(samples, dtype=float))
    lo, hi = (int(r[0]) for r in quantile_ci_ranks(len(ordered), q, confidence))
    return (float(ordered[lo]) if lo >= 0 else -math.inf,
            float(ordered[hi]) if hi < len(ordered) else math.inf)


def samples_to_bound(n: int, q: float, share: float, confidence: float = 0.95, *,
                     upper: bool = True, cap: int = 10_000_000) -> int | None:
    """How many samples in all would bring the q-quantile's CI bound to the far side of a
    limit, if the distribution stays as sampled; None when no count up to `cap` does.

    `share` is the fraction of the samples at or below the limit (for the upper bound) or at
    or above it (for the lower bound, with `upper=False`). The upper bound x(u) lies at or
    below the limit while u <= share·n, so the answer is the smallest n with
    hi_rank(n) + 1 <= share·n: a normal-approximation guess, then the exact binomial ranks
    around it.
    """
    level = q if upper else 1.0 - q
    if share <= level:
        return None
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    guess = max(n, int(z * z * level * (1 - level) / (share - level) ** 2))
    candidates = np.unique(np.clip(np.concatenate([
        np.arange(n, n + 64), np.geomspace(max(guess // 2, 1), guess * 4 + 64, 256)]),
        n, cap).astype(np.int64))
    hi = sps.binom.ppf(1 - (1 - confidence) / 2, candidates, level)
    ok = hi + 1 <= share * candidates
    if not ok.any():
        return None
    return int(candidates[np.argmax(ok)])


# ---- trade-offs -----------------------------------------------------------------------------
def pareto_mask(x: Samples, y: Samples) -> np.ndarray:
    """True for the points no other point beats, minimising both x and y.

    A point is dominated when another is at least as good in both and strictly better in one;
    exact duplicates of a frontier point are on the frontier too. NaN/inf points are never on
    it. To maximise a quantity, pass its negative.
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape:
        raise ValueError("x and y need the same length")
    mask = np.zeros(xs.shape, dtype=bool)
    valid = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
    if not valid.size:
        return mask
    order = valid[np.lexsort((ys[valid], xs[valid]))]
    x_sorted, y_sorted = xs[order], ys[order]
    starts = np.flatnonzero(np.r_[True, x_sorted[1:] != x_sorted[:-1]])
    group_min = y_sorted[starts]  # sorted by y within an x: the first is the group's best
    earlier_best = np.r_[math.inf, np.minimum.accumulate(group_min)[:-1]]
    group_of = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, order.size]))
    mask[order] = (y_sorted == group_min[group_of]) & (group_min < earlier_best)[group_of]
    return mask


@dataclass(frozen=True)
class LogLogFit:
    """y ≈ exp(intercept) · x**slope, fitted by least squares on log y against log x."""

    slope: float
    intercept: float
    #: Coefficient of determination in log space; None with two points (a line fits exactly).
    r2: float | None
    n: int

    def predict(self, x: float) -> float:
        return float(math.exp(self.intercept) * x ** self.slope)

    def solve(self, y: float) -> float | None:
        """The x at which the fit reaches y; None for a flat fit or one that never does."""
        if self.slope == 0 or y <= 0:
            return None
        log_x = (math.log(y) - self.intercept) / self.slope
        return float(math.exp(log_x)) if abs(log_x) < 700 else None


def fit_loglog(x: Samples, y: Samples) -> LogLogFit | None:
    """The log–log slope of y against x over the positive finite points; None when fewer
    than two distinct x values remain (no slope to fit)."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    lx, ly = np.log(xs[keep]), np.log(ys[keep])
    if lx.size < 2 or lx.min() == lx.max():
        return None
    dx = lx - lx.mean()  # closed-form least squares: polyfit's answer, without its overhead
    slope = float(dx @ (ly - ly.mean()) / (dx @ dx))
    intercept = float(ly.mean() - slope * lx.mean())
    r2: float | None = None
    if lx.size > 2:
        residual = float(np.sum((ly - (slope * lx + intercept)) ** 2))
        total = float(np.sum((ly - ly.mean()) ** 2))
        r2 = 1.0 - residual / total if total > 0 else 1.0
    return LogLogFit(slope=float(slope), intercept=float(intercept), r2=r2, n=int(lx.size))
