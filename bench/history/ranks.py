"""Rank statistics behind the history's change points. Pure numpy (and scipy.special).

Why ranks: a benchmark's commits scatter in ways no one noise model covers — Gaussian jitter,
a share of commits on a faster host, rare outliers twice the level, heavy tails. Under any
of them, as long as the commits of a flat stretch are exchangeable, the ranks of its points
are a uniformly random permutation, so a rank test at a split has *one* null distribution:
its false alarms are the same whatever the noise looks like. A scale estimated from the
data (the previous detector's median absolute successive difference) sees only the noise it
was built for: it missed a minority of commits on a faster host, and two of them in a row
were a change. Ranks also put the fast host where it belongs: its commits sit in the lower
tail of the ranks, so a few of them together are as rare as their share makes them.

The statistic at a split is Wilcoxon's rank sum of the left side, standardised with its
permutation variance (ties averaged, their correction included), and read through its tail
probability as a z. The normal approximation is far too cautious in the far tail, where the
search's threshold sits (the rank sum is bounded, its tails are lighter than a normal's):
3 points above 100 others have p = 1/C(103, 3) = 6e-6 exactly, 2e-3 by the normal; a side
of 9 whose exact z is 4.5 reads 4.0. So where one side has at most EXACT_SIDE points the
p-value is exact (`rank_sum_cdf`, the Mann-Whitney null distribution), and beyond that the
normal z takes the Cornish-Fisher correction for the rank sum's (negative) kurtosis, within
0.05 of the exact z from 3 to 5.5 once both sides exceed 40 points.

Wander (successive commits alike: a machine's state that persists) breaks exchangeability:
`dependence_factor` estimates how much it inflates the variance of a rank sum, and the
detector divides its z-values by the square root of it.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

#: Points on the short side of a split up to which its p-value is exact.
EXACT_SIDE = 40
#: Lags whose autocorrelations fit the wander model in `dependence_factor`.
ACF_LAGS = 6
#: Largest variance inflation the wander may be credited with.
MAX_DEPENDENCE = 50.0


def midranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks along the last axis, tied values sharing the mean of their ranks; and,
    per row, whether it has ties."""
    a = np.asarray(values, dtype=float)
    order = np.argsort(a, axis=-1, kind="stable")
    ordered = np.take_along_axis(a, order, axis=-1)
    m = a.shape[-1]
    pos = np.broadcast_to(np.arange(m), a.shape)
    starts = np.ones(a.shape, dtype=bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends = np.ones(a.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=-1)
    last = np.minimum.accumulate(np.where(ends, pos, m - 1)[..., ::-1], axis=-1)[..., ::-1]
    ranks = np.empty(a.shape)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=-1)
    return ranks, np.asarray(~starts[..., 1:].all(axis=-1))


@functools.lru_cache(maxsize=256)
def rank_sum_cdf(m: int) -> tuple[np.ndarray, np.ndarray]:
    """P(U_k <= u) for k = 0..min(EXACT_SIDE, m // 2): U_k the Mann-Whitney statistic of k
    points against m - k under the null (the sum of k ranks drawn from 1..m, less
    k(k + 1)/2), all rows in one flat array, row k from offsets[k] (u = 0..k(m - k)).
    Remembered per m: the search asks the same few stretch lengths for every series of a
    history."""
    from bench.gate.significance import u_null_counts

    rows = [np.cumsum(c) / c.sum() for c in u_null_counts(m, min(EXACT_SIDE, m // 2))]
    offsets = np.cumsum([0] + [r.size for r in rows])
    return np.concatenate(rows), offsets


def split_z(windows: np.ndarray) -> np.ndarray:
    """z of the left side's rank sum at every split of every row (column j: the first j + 1
    points against the rest); positive when the left side is higher.

    Rows without ties take `tail_z` (exact or corrected tails); rows with ties the
    tie-corrected normal approximation.
    """
    w = np.atleast_2d(np.asarray(windows, dtype=float))
    rows, m = w.shape
    if m < 2:
        return np.zeros((rows, 0))
    ranks, tied = midranks(w)
    left = np.cumsum(ranks, axis=1)[:, :-1]
    k = np.arange(1, m, dtype=float)
    spread = ((ranks - (m + 1) / 2) ** 2).sum(axis=1, keepdims=True)
    var = k * (m - k) / (m * (m - 1)) * spread
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(var > 0, (left - k * (m + 1) / 2) / np.sqrt(var), 0.0)
    exact = np.flatnonzero(~tied)
    if exact.size:
        z[exact] = tail_z(np.full((exact.size, m - 1), m),
                          np.broadcast_to(k.astype(int), (exact.size, m - 1)), left[exact])
    return z


def tail_z(m: np.ndarray, k: np.ndarray, left: np.ndarray) -> np.ndarray:
    """z of the rank sum `left` of the first `k` of `m` points (no ties): the two-sided
    tail probability read as a z, positive when the left side is higher. Exact where a side
    has at most EXACT_SIDE points; elsewhere the continuity-corrected normal z with the
    Cornish-Fisher correction for the rank sum's kurtosis (within 0.05 of exact for z in
    3..5.5 there)."""
    from scipy.special import ndtri

    m, k, left = np.broadcast_arrays(np.asarray(m, dtype=int), np.asarray(k, dtype=int),
                                     np.asarray(left, dtype=float))
    mf, kf = m.astype(float), k.astype(float)
    n2 = mf - kf
    var = kf * n2 * (mf + 1) / 12
    centred = left - kf * (mf + 1) / 2
    out = np.zeros(m.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(var > 0, np.maximum(np.abs(centred) - 0.5, 0.0) / np.sqrt(var), 0.0)
        # fourth cumulant of the rank sum: -k n2 (m + 1)(m^2 + m - k n2) / 120
        excess = np.where(var > 0, -kf * n2 * (mf + 1) * (mf * mf + mf - kf * n2) / 120
                          / var ** 2, 0.0)
    out[...] = np.sign(centred) * (x - excess / 24 * (x ** 3 - 3 * x))
    short = np.minimum(k, m - k)
    at = np.flatnonzero((short <= EXACT_SIDE) & (short > 0))
    if at.size == 0:
        return out
    mm, kk, ss = m.ravel()[at], k.ravel()[at], short.ravel()[at]
    on_left = kk == ss
    # U of the short side: its rank sum less its least possible sum
    u_short = np.where(on_left, left.ravel()[at], mm * (mm + 1) / 2 - left.ravel()[at])
    u = np.rint(u_short - ss * (ss + 1) / 2).astype(int)
    top = ss * (mm - ss)
    p_low = np.empty(at.size)
    p_high = np.empty(at.size)
    for size in np.unique(mm).tolist():
        cdf, offsets = rank_sum_cdf(int(size))
        sel = mm == size
        base = offsets[ss[sel]]
        p_low[sel] = cdf[base + u[sel]]
        p_high[sel] = cdf[base + top[sel] - u[sel]]  # P(U >= u) = P(U <= top - u)
    z_short = np.where(p_high < p_low, -ndtri(np.minimum(p_high, 0.5)),
                       ndtri(np.minimum(p_low, 0.5)))
    out.reshape(-1)[at] = np.where(on_left, z_short, -z_short)
    return out


class RankScan:
    """Rank-sum z-values at the splits of any stretch [a, b) of one series, in O(1) each
    after an O(n^2) start: P[i, c] counts the points before c below point i, so the rank of
    i within [a, b) is P[i, b] - P[i, a] + 1, and S (P summed over i) gives a left side's
    rank sum from four entries. A series with ties takes the per-stretch path (midranks)."""

    def __init__(self, y: np.ndarray) -> None:
        self.y = np.asarray(y, dtype=float)
        n = self.y.size
        self.tied = bool(n > 1 and np.any(np.diff(np.sort(self.y)) == 0))
        self._s: np.ndarray | None = None
        if not self.tied and n:
            # counts up to n^2: int32 holds them for any history the CLI reads
            below = (self.y[None, :] < self.y[:, None]).astype(np.int32)
            p = np.zeros((n, n + 1), dtype=np.int32)
            np.cumsum(below, axis=1, out=p[:, 1:])
            self._s = np.zeros((n + 1, n + 1), dtype=np.int32)
            np.cumsum(p, axis=0, out=self._s[1:])

    def z(self, a: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
        """z of the split at k (first point of the right side) of each stretch [a, b)."""
        a, k, b = (np.asarray(v, dtype=int) for v in (a, k, b))
        if self._s is None:
            out = np.empty(a.shape)
            for i, (aa, kk, bb) in enumerate(zip(a.tolist(), k.tolist(), b.tolist(),
                                                 strict=True)):
                out[i] = split_z(self.y[aa:bb][None, :])[0, kk - aa - 1]
            return out
        s = self._s
        left = (s[k, b] - s[a, b] - s[k, a] + s[a, a]).astype(float) + (k - a)
        return tail_z(b - a, k - a, left)

    def best_splits(self, starts: np.ndarray, ends: np.ndarray,
                    min_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Per stretch [starts[i], ends[i]): the split with the largest |z| (both sides at
        least min_size points; the first of equals) and that |z|; split -1 where none fits."""
        starts, ends = np.asarray(starts, dtype=int), np.asarray(ends, dtype=int)
        counts = np.maximum(ends - starts - 2 * min_size + 1, 0)
        split = np.full(starts.size, -1)
        value = np.zeros(starts.size)
        fits = np.flatnonzero(counts)
        if fits.size == 0:
            return split, value
        c = counts[fits]
        group = np.repeat(np.arange(fits.size), c)
        offset = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        a, b = starts[fits][group], ends[fits][group]
        k = a + min_size + offset
        z = np.abs(self.z(a, k, b))
        first = np.cumsum(c) - c
        top = np.maximum.reduceat(z, first)
        hit = np.flatnonzero(z >= top[group] - 1e-12)
        _, where = np.unique(group[hit], return_index=True)
        split[fits] = k[hit[where]]
        value[fits] = top
        return split, value


def two_sample_z(before: np.ndarray, after: np.ndarray) -> float:
    """The rank-sum z of `after` against `before` (positive: `after` is higher)."""
    if after.size == 0 or before.size == 0:
        return 0.0
    both = np.concatenate([after, before])
    return float(split_z(both[None, :])[0, after.size - 1])


def dependence_factor(y: np.ndarray, bounds: list[int] | tuple[int, ...]) -> float:
    """How much wander inflates the variance of a rank sum (1: none).

    Within each segment the points are turned into centred ranks; their autocorrelations
    at lags 1..ACF_LAGS, pooled over the segments, are fitted by rho_h = A phi^(h - 1) (an
    AR(1) wander under white jitter), whose long-run variance factor is
    1 + 2 A / (1 - phi). Only positive dependence counts: a factor below 1 would make the
    detector bolder on the strength of noise.
    """
    parts = []
    for a, b in itertools.pairwise(bounds):
        if b - a >= 2 * ACF_LAGS:
            r, _ = midranks(y[a:b])
            parts.append(r - r.mean())
    n = sum(p.size for p in parts)
    if n < 4 * ACF_LAGS:
        return 1.0
    c0 = sum(float(p @ p) for p in parts)
    if c0 <= 0:
        return 1.0
    rho = np.array([sum(float(p[h:] @ p[:-h]) for p in parts) / c0
                    for h in range(1, ACF_LAGS + 1)])
    if rho[0] <= 2.0 / math.sqrt(n):  # no evidence of wander at lag 1
        return 1.0
    best = (math.inf, 0.0, 0.0)
    h = np.arange(ACF_LAGS)
    for phi in np.linspace(0.0, 0.95, 20):
        shape = phi ** h
        amp = max(float(rho @ shape) / float(shape @ shape), 0.0)
        err = float(((rho - amp * shape) ** 2).sum())
        if err < best[0]:
            best = (err, amp, float(phi))
    _, amp, phi = best
    return min(1.0 + 2.0 * amp / (1.0 - phi), MAX_DEPENDENCE)
