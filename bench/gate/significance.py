"""Two-sample evidence for the regression gate. Pure functions: no I/O, no torch.

Which test depends on how the runs were measured. With enough repeats a side (`MIN_REPEATS`
worker processes per case, spread through each run), `repeat_shift_test` tests the per-repeat
medians with Welch's t on their logs: it is only as sure as run-to-run variation allows.
Otherwise `shift_test` works on the raw samples, which are skewed, heavy-tailed and rarely
normal, and whose counts differ between runs (the adaptive stop ends each case when *its*
confidence interval is tight). So, on raw samples:

- the test is the one-sided Mann–Whitney U: rank-based (no normality),
  valid for any two sample sizes (pyperf's unequal-n t-test is the counter-example), with
  scipy's tie correction;
- the interval is the Hodges–Lehmann shift on log times with its distribution-free
  confidence interval, which inverts the very same rank statistic (an uncorrected one-sided
  test at 2.5% rejects when the 95% interval excludes zero, up to ties and the normal
  approximation), needs no random resampling (the gate gives the same answer every time it
  reads the same data) and, on log times, reads as a percent;
- the many cases of a sweep are corrected together (Holm by default; Benjamini–Hochberg on
  request), see `adjust_pvalues`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CORRECTIONS = ("holm", "bh")
#: Up to this many pairwise differences are materialised; above it the order statistics are
#: found by bisection with counting, in O((n + m) log n) per step.
MATERIALISE_LIMIT = 2_000_000
#: The exact null distribution of U is tabulated up to this n·m; above it, the normal
#: approximation (with continuity correction) is within a rank of it.
EXACT_LIMIT = 2_500

Samples = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class ShiftTest:
    """Candidate versus baseline for one case: test, shift estimate and its interval.

    `p_greater` is the one-sided p-value for "the candidate is slower", `p_less` for "the
    candidate is faster". The shift is multiplicative: `ratio` = candidate / baseline under
    the Hodges–Lehmann estimate, `ratio_low`/`ratio_high` its confidence interval (None when
    the samples are too few for the asked confidence).
    """

    n_baseline: int
    n_candidate: int
    p_greater: float
    p_less: float
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    #: Degrees of freedom of a t-interval (None: a rank interval, normal in the large).
    df: float | None = None


def shift_test(baseline: Samples, candidate: Samples, confidence: float = 0.95) -> ShiftTest:
    """Mann–Whitney U both ways and the Hodges–Lehmann ratio with its interval."""
    x = np.sort(np.asarray(baseline, dtype=float))
    y = np.sort(np.asarray(candidate, dtype=float))
    if x.size == 0 or y.size == 0:
        raise ValueError("both sides need at least one sample")
    p_greater = _mwu(y, x, "greater")
    p_less = _mwu(y, x, "less")
    ratio = low = high = None
    if x[0] > 0 and y[0] > 0:  # log scale needs positive times (a fake clock may give zero)
        lx, ly = np.log(x), np.log(y)
        ratio = math.exp(hodges_lehmann(lx, ly))
        interval = shift_interval(lx, ly, confidence)
        if interval is not None:
            low, high = math.exp(interval[0]), math.exp(interval[1])
    return ShiftTest(n_baseline=int(x.size), n_candidate=int(y.size), p_greater=p_greater,
                     p_less=p_less, ratio=ratio, ratio_low=low, ratio_high=high)


def _mwu(y: np.ndarray, x: np.ndarray, alternative: str) -> float:
    """One-sided p-value that y is stochastically greater ("greater") or less than x.

    When every sample on both sides is equal there is no evidence either way: p = 1
    (scipy would return NaN, the tie-corrected variance being zero).
    """
    if np.all(x == x[0]) and np.all(y == x[0]):
        return 1.0
    from scipy import stats as sps  # loaded on first use: `archbench --help` stays fast

    result = sps.mannwhitneyu(y, x, alternative=alternative, method="auto")
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else min(max(p, 0.0), 1.0)


#: Repeats a side from which the test uses per-repeat medians instead of the samples.
MIN_REPEATS = 3


def repeat_shift_test(baseline: Samples, candidate: Samples,
                      confidence: float = 0.95) -> ShiftTest:
    """Welch's t-test on log per-repeat medians, and the ratio's t-interval.

    Samples from one worker share that moment's machine state (clock, neighbours, memory
    layout), so they are not independent evidence about another run: a test on them calls
    any drift between two runs significant. The repeats of a case are separate workers spread
    through the run; their medians vary as runs do, so a test on them is only as sure as
    run-to-run variation allows. Logs make the shift multiplicative (a ratio, read as %);
    with a handful of repeats a side, Welch's t uses the data far better than a rank test,
    whose smallest possible p-value at 3 vs 3 is 0.05.
    """
    # Student's t through scipy.special, as scipy.stats.t computes it: scipy.stats alone
    # takes 0.4 s to import, most of `archbench history check`'s budget.
    from scipy.special import stdtr, stdtrit

    lx = np.log(np.asarray(baseline, dtype=float))
    ly = np.log(np.asarray(candidate, dtype=float))
    if lx.size < 2 or ly.size < 2:
        raise ValueError("the repeat test needs at least two repeats a side")
    diff = float(ly.mean() - lx.mean())
    vx, vy = float(lx.var(ddof=1)) / lx.size, float(ly.var(ddof=1)) / ly.size
    se = math.sqrt(vx + vy)
    df = float(lx.size + ly.size - 2)
    if se == 0.0:  # identical repeats on both sides: the sign of the shift is all there is
        p_greater = 0.0 if diff > 0 else 1.0
        p_less = 0.0 if diff < 0 else 1.0
        half = 0.0
    else:
        df = (vx + vy) ** 2 / (vx ** 2 / (lx.size - 1) + vy ** 2 / (ly.size - 1))
        t = diff / se
        p_greater, p_less = float(stdtr(df, -t)), float(stdtr(df, t))
        half = float(stdtrit(df, 0.5 + confidence / 2)) * se
    return ShiftTest(n_baseline=int(lx.size), n_candidate=int(ly.size), p_greater=p_greater,
                     p_less=p_less, ratio=math.exp(diff), ratio_low=math.exp(diff - half),
                     ratio_high=math.exp(diff + half), df=df)


# ---- Hodges–Lehmann shift and its interval --------------------------------------------------
def hodges_lehmann(x: Samples, y: Samples) -> float:
    """Median of all pairwise differences y_j - x_i: the shift estimate behind the U test."""
    xs, ys = np.sort(np.asarray(x, dtype=float)), np.sort(np.asarray(y, dtype=float))
    total = xs.size * ys.size
    lower = kth_difference(xs, ys, (total - 1) // 2)
    upper = kth_difference(xs, ys, total // 2)
    return (lower + upper) / 2


def shift_interval(x: Samples, y: Samples, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval for the shift of y over x (Bauer 1972; Hollander & Wolfe).

    With D(1) <= ... <= D(nm) the sorted differences, [D(c), D(nm + 1 - c)] covers the shift
    with probability 1 - 2·P(U <= c - 1) under the shift model, for U the null Mann–Whitney
    statistic; c is the largest rank keeping that at or above `confidence`. None when even the
    full range cannot reach it (e.g. 2 samples a side at 95%).
    """
    xs, ys = np.sort(np.asarray(x, dtype=float)), np.sort(np.asarray(y, dtype=float))
    c = interval_rank(xs.size, ys.size, confidence)
    if c is None:
        return None
    total = xs.size * ys.size
    return kth_difference(xs, ys, c - 1), kth_difference(xs, ys, total - c)


@functools.lru_cache(maxsize=1024)
def interval_rank(n: int, m: int, confidence: float) -> int | None:
    """The 1-based rank c of the interval's lower end, or None when no rank qualifies
    (remembered: the history describes many changes with the same window sizes)."""
    half_alpha = (1.0 - confidence) / 2
    if n * m <= EXACT_LIMIT:
        cdf = np.cumsum(u_null_pmf(n, m))
        ok = np.nonzero(cdf <= half_alpha + 1e-12)[0]  # k with P(U <= k) <= alpha/2
        return int(ok[-1]) + 1 if ok.size else None
    sigma = math.sqrt(n * m * (n + m + 1) / 12)
    from scipy.special import ndtri  # the normal quantile without scipy.stats' 0.4 s import

    k = math.floor(n * m / 2 - 0.5 + float(ndtri(half_alpha)) * sigma)
    return k + 1 if k >= 0 else None


def u_null_pmf(n: int, m: int) -> np.ndarray:
    """Exact null distribution of the Mann–Whitney U for sizes n and m (no ties)."""
    counts = u_null_counts(n + m, min(n, m))[-1]
    return counts / counts.sum()


def u_null_counts(total: int, k_max: int) -> list[np.ndarray]:
    """Null counts of U for k points against total - k, for k = 0..k_max: entry u of row k
    is how many of the C(total, k) orders give U = u (floats: exact to 2**53, relative
    precision beyond).

    They are the coefficients of the Gaussian binomial [total choose k]_q, built from row
    k - 1 by [total choose k] = [total choose k - 1] (1 - q^(total - k + 1)) / (1 - q^k): a
    shift and subtraction, then a running sum with stride k. The lower half of each row is a
    sum of non-negative terms and keeps its precision; the upper half would be a difference
    of large sums, so it is taken from the lower by the distribution's symmetry. All rows
    together cost about one pass over the last.
    """
    rows = [np.ones(1)]
    for k in range(1, min(k_max, total) + 1):
        size = k * (total - k) + 1
        shift = total - k + 1
        grown = np.zeros(size + shift)
        grown[:rows[-1].size] = rows[-1]
        grown[shift:] -= grown[:size].copy()  # times (1 - q^shift)
        pad = -size % k  # divided by (1 - q^k): a running sum over each residue mod k
        strided = np.concatenate([grown[:size], np.zeros(pad)]).reshape(-1, k)
        row = np.cumsum(strided, axis=0).ravel()[:size]
        half = size // 2  # the upper half is a difference of large sums: mirror the lower
        row[size - half:] = row[:half][::-1]
        rows.append(row)
    return rows


def kth_difference(xs: np.ndarray, ys: np.ndarray, k: int) -> float:
    """The k-th smallest (0-based) of the n·m differences ys[j] - xs[i]; both sorted."""
    total = xs.size * ys.size
    if not 0 <= k < total:
        raise ValueError(f"rank {k} outside 0..{total - 1}")
    if total <= MATERIALISE_LIMIT:
        diffs = np.subtract.outer(ys, xs).ravel()
        return float(np.partition(diffs, k)[k])
    lo, hi = float(ys[0] - xs[-1]), float(ys[-1] - xs[0])
    # Smallest d with #(diff <= d) >= k + 1; 200 halvings reach float resolution.
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if _count_at_most(xs, ys, mid) >= k + 1:
            hi = mid
        else:
            lo = mid
    return hi


def _count_at_most(xs: np.ndarray, ys: np.ndarray, d: float) -> int:
    """#{(i, j): ys[j] - xs[i] <= d} = sum over j of #{i: xs[i] >= ys[j] - d}."""
    return int(xs.size * ys.size - np.searchsorted(xs, ys - d, side="left").sum())


# ---- correction across cases ----------------------------------------------------------------
def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values for a family of tests; compare each with alpha.

    holm: step-down Holm–Bonferroni; controls the family-wise error rate (the chance that
    *any* flagged case is noise) under any dependence between the tests.
    bh: Benjamini–Hochberg step-up; controls the false discovery rate (the expected share of
    flagged cases that are noise), more permissive when many cases really changed.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; use one of {CORRECTIONS}")
    p = np.asarray(pvalues, dtype=float)
    k = p.size
    if k == 0:
        return []
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        scaled = np.maximum.accumulate((k - np.arange(k)) * ranked)
    else:
        scaled = np.minimum.accumulate((k / np.arange(1, k + 1) * ranked)[::-1])[::-1]
    adjusted = np.empty(k)
    adjusted[order] = np.minimum(scaled, 1.0)
    return [float(v) for v in adjusted]
