"""Change points in one case's history. Pure: arrays in, change points out; no I/O, no torch.

A history point is one commit's measurement of a case: the log of its level (the geometric
mean of the per-repeat medians, or the median when one worker measured it) and the standard
error of that log (from the spread of the per-repeat medians, or from the median's
distribution-free interval). The detector is binary segmentation (ruptures' Binseg search:
split where the cost drops most, while the drop exceeds the penalty), with this cost: the weighted
squared error of each segment around its weighted mean, the weight of a point being
1 / (its own variance + the series' run-to-run variance). So a point measured with wide
intervals moves the fit less, and a series whose runs wander needs a bigger or
longer-lasting step before it is called a change: what the penalty asks of every series is
the same amount of *evidence*, not the same size. A split must also be borne out by the
points either side (Welch's t), so one wild run beside a normal one is not a change.
(ruptures' PELT, exact where binary segmentation is greedy, took 160 ms per 200-commit
series here against 4 ms: its pure-Python search keeps nearly every candidate alive on a
flat series.)

The run-to-run variance (tau^2) is what a run's own intervals cannot see: the machine drifting
between one commit's run and the next. It is estimated from the series itself, robustly (the
median absolute successive difference, so steps and single outliers hardly move it).

A change point is then described on the points around it (up to `window` a side, never
across a neighbouring change point): the step as a ratio with its Welch t-interval on the
logs (the same test the gate uses on per-repeat medians), and classified:

- `step`: the level moved between two consecutive commits;
- `drift`: changes in the same direction within `drift_gap` points of each other (one or
  several) whose neighbourhood a ramp fits better than a single step (by the Bayesian
  information criterion): reported once, as the commits it spans and the total change.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

#: What a split must gain to be a change point: the drop of the weighted squared error, a
#: chi-square with one degree of freedom for a split at a fixed place on a flat series, so a
#: constant penalty gives the same false-alarm rate per commit whatever the series' length
#: (a log(n) penalty let short series raise more false alarms per commit). P(chi2_1 > 16)
#: is 6e-5 per place tried. Checked on synthetic histories with this machine's noise
#: (benchmarks/history_quality.py): see the README for the recall and false alarms.
DEFAULT_PENALTY = 16.0
#: Two-sided level of the Welch test a split's neighbours must pass (see `fit_series`).
DEFAULT_ALPHA = 0.01
#: Points a side that describe a change (its step and interval).
DEFAULT_WINDOW = 30
#: Same-direction changes at most this many points apart are tested together as one drift.
DEFAULT_DRIFT_GAP = 6
#: Smallest segment: a change needs this many commits at its new level to be confirmed.
MIN_SIZE = 2
#: Fewest commits a drift spans from the last point at the old level to the first at the new
#: one (3 points in between): shorter ramps are told from a step by noise alone.
RAMP_MIN = 4
#: Weight, in degrees of freedom, of the series' typical error when moderating each
#: point's (see `moderated_se`); errors from one worker's samples count as LARGE_DF.
PRIOR_DF = 6.0
LARGE_DF = 30.0
#: Floor on a point's standard deviation (log units, 0.01%): keeps weights finite when a fake
#: clock or identical repeats give a zero spread.
SE_FLOOR = 1e-4


@dataclass(frozen=True)
class ChangePoint:
    """A level change in one series between points `index - 1` and `index` (a step), or across
    `start`..`index` (a drift: the level moved over the commits `start` to `index`).

    `ratio` = new level / old level (> 1 is slower for timings), `ratio_low`/`ratio_high` its
    95% interval (None when a side has a single point), `p_value` the two-sided Welch p.
    """

    index: int
    start: int
    kind: str
    ratio: float
    ratio_low: float | None
    ratio_high: float | None
    p_value: float | None
    n_before: int
    n_after: int

    @property
    def change_pct(self) -> float:
        return (self.ratio - 1.0) * 100.0


@dataclass(frozen=True)
class SeriesFit:
    """Change points of one series, its noise figures, and its levels (one per segment)."""

    change_points: tuple[ChangePoint, ...]
    #: The steps at the forced cuts (accepted changes), described like the others.
    accepted: tuple[ChangePoint, ...]
    #: Run-to-run standard deviation (log units) the detector estimated and added.
    tau: float
    #: Median standard deviation (log units) of the points' own intervals.
    se_median: float
    #: Segment boundaries as indices (0, ..., n) and each segment's weighted mean (log).
    bounds: tuple[int, ...]
    levels: tuple[float, ...]


class _WeightedL2:
    """Weighted squared error of a segment around its weighted mean, O(1) by prefix sums."""

    def __init__(self, y: np.ndarray, w: np.ndarray) -> None:
        self._w = np.concatenate([[0.0], np.cumsum(w)])
        self._wy = np.concatenate([[0.0], np.cumsum(w * y)])
        self._wyy = np.concatenate([[0.0], np.cumsum(w * y * y)])

    def error(self, start: int, end: int) -> float:
        return float(self.errors(start, end))

    def errors(self, start: int | np.ndarray, end: int | np.ndarray) -> np.ndarray:
        """The error of one segment, or of many at once (element by element)."""
        w = self._w[end] - self._w[start]
        wy = self._wy[end] - self._wy[start]
        return np.asarray(self._wyy[end] - self._wyy[start] - wy * wy / w)


def run_to_run_sd(y: np.ndarray, se: np.ndarray) -> float:
    """Robust estimate of the variation between runs that the points' own errors miss.

    Successive differences of a flat series have variance se_i^2 + se_{i-1}^2 + 2 tau^2; the
    median absolute deviation of the differences (scaled to a normal's sd) is barely moved by
    steps, which touch one difference each, or by a single outlier, which touches two.
    """
    if y.size < 3:
        return 0.0
    d = np.diff(y)
    sd_diff = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    excess = sd_diff ** 2 / 2 - float(np.mean(se ** 2))
    return math.sqrt(excess) if excess > 0 else 0.0


def moderated_se(se: np.ndarray, repeats: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """Standard errors pulled toward the series' typical one, as far as they are uncertain.

    An error estimated from 3 repeats has 2 degrees of freedom: a point whose repeats happen
    to agree would otherwise weigh many times more than it deserves, and such points make
    change points out of noise. Each variance is averaged with the series' median variance,
    weighted by its degrees of freedom against PRIOR_DF (empirical Bayes, as limma moderates
    per-gene variances); errors from many samples (repeats None or 1) mostly keep theirs.
    """
    if se.size == 0:
        return se
    pooled = float(np.mean(se ** 2))  # the median of a few-df variance is biased low
    if repeats is None:
        df = np.full(se.size, LARGE_DF)
    else:
        r = np.asarray(repeats, dtype=float)
        df = np.where(r >= 2, r - 1, LARGE_DF)
    var = (df * se ** 2 + PRIOR_DF * pooled) / (df + PRIOR_DF)
    return np.maximum(np.sqrt(var), SE_FLOOR)


def fit_series(log_level: Sequence[float] | np.ndarray, se: Sequence[float] | np.ndarray, *,
               penalty: float = DEFAULT_PENALTY, window: int = DEFAULT_WINDOW,
               drift_gap: int = DEFAULT_DRIFT_GAP, forced: Sequence[int] = (),
               repeats: Sequence[int] | np.ndarray | None = None,
               alpha: float = DEFAULT_ALPHA) -> SeriesFit:
    """Change points of one series (oldest point first).

    A split must also be borne out by the points either side of it: Welch's t on their logs
    (the gate's repeat test) below `alpha`, so one wild run next to a normal one, which the
    squared error alone would split off, is not a change.

    `repeats` is how many per-repeat medians each point's error came from (None: many, as
    for an error from one worker's samples). `forced` are indices where a new level starts
    regardless (accepted changes): the series is cut there and each part is fitted on its
    own, so an accepted change is neither reported again nor lets the old level bleed into
    the new one.
    """
    y = np.asarray(log_level, dtype=float)
    s = np.asarray(se, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("log_level and se must be 1-d arrays of the same length")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(s)):
        raise ValueError("history points must be finite")
    s = moderated_se(s, repeats)
    n = y.size
    tau = run_to_run_sd(y, s)
    weight = 1.0 / (s ** 2 + tau ** 2)
    cuts = sorted({i for i in forced if 0 < i < n})
    parts = list(zip([0, *cuts], [*cuts, n], strict=True))
    bounds = [0]
    for a, b in parts:
        bounds += [a + k for k in _segment(y[a:b], weight[a:b], penalty)]
    bounds = sorted(set(bounds))
    detected = [b for b in bounds[1:-1] if b not in cuts]
    points = _describe(y, bounds, detected, window)
    while points:  # drop splits the points either side do not bear out, weakest first
        weakest = max(points, key=lambda p: 1.0 if p.p_value is None else p.p_value)
        if weakest.p_value is not None and weakest.p_value < alpha:
            break
        bounds.remove(weakest.index)
        detected.remove(weakest.index)
        points = _describe(y, bounds, detected, window)
    accepted = _describe(y, bounds, [c for c in cuts if c in bounds], window)
    levels = [float(np.average(y[a:b], weights=weight[a:b]))
              for a, b in itertools.pairwise(bounds)]
    steps = _drifts(y, weight, points, bounds, drift_gap, window)
    return SeriesFit(change_points=tuple(steps),
                     accepted=tuple(replace(p, kind="accepted") for p in accepted),
                     tau=tau, se_median=float(np.median(s)) if n else 0.0,
                     bounds=tuple(bounds), levels=tuple(levels))


def _segment(y: np.ndarray, weight: np.ndarray, penalty: float) -> list[int]:
    """Segment ends (the last is len(y)): binary segmentation, splitting while a split gains
    more than `penalty`.

    The search of ruptures' `Binseg(min_size=MIN_SIZE, jump=1)`, breakpoint for breakpoint
    (tests/test_history.py holds it to that), with each segment's candidate splits scored
    at once: importing ruptures costs more than the whole search (0.7 s: it loads every cost
    it ships, and scipy.stats and scipy.spatial with them), and `history show` is meant to
    answer within 2 s.
    """
    n = y.size
    if n < 2 * MIN_SIZE:
        return [n]
    cost = _WeightedL2(y, weight)
    best: dict[tuple[int, int], tuple[int | None, float]] = {}

    def best_split(start: int, end: int) -> tuple[int | None, float]:
        if (start, end) not in best:
            splits = np.arange(start + MIN_SIZE, end - MIN_SIZE + 1)
            if splits.size == 0:
                best[start, end] = (None, 0.0)
            else:
                gains = cost.error(start, end) - cost.errors(start, splits) \
                    - cost.errors(splits, end)
                k = splits.size - 1 - int(np.argmax(gains[::-1]))  # ties: the later split
                best[start, end] = (int(splits[k]), float(gains[k]))
        return best[start, end]

    ends = [n]
    while True:
        # the segment whose best split gains most (the first of equals)
        split, gain = max((best_split(a, b) for a, b in itertools.pairwise([0, *ends])),
                          key=lambda found: found[1])
        if split is None or not gain > penalty:
            return ends
        ends = sorted([*ends, split])


def _describe(y: np.ndarray, bounds: list[int], detected: list[int],
              window: int) -> list[ChangePoint]:
    """Each detected boundary as a step, measured on the segments either side of it."""
    out = []
    for index in detected:
        k = bounds.index(index)
        before = y[max(bounds[k - 1], index - window):index]
        after = y[index:min(bounds[k + 1], index + window)]
        out.append(_step(before, after, index, index))
    return out


def _step(before: np.ndarray, after: np.ndarray, start: int, index: int,
          kind: str = "step") -> ChangePoint:
    from bench.gate.significance import repeat_shift_test

    ratio = math.exp(float(after.mean() - before.mean()))
    low = high = p = None
    if before.size >= 2 and after.size >= 2:
        test = repeat_shift_test(np.exp(before), np.exp(after))
        low, high = test.ratio_low, test.ratio_high
        p = min(1.0, 2 * min(test.p_greater, test.p_less))
    return ChangePoint(index=index, start=start, kind=kind, ratio=ratio, ratio_low=low,
                       ratio_high=high, p_value=p, n_before=int(before.size),
                       n_after=int(after.size))


def _drifts(y: np.ndarray, weight: np.ndarray, points: list[ChangePoint], bounds: list[int],
            gap: int, window: int) -> list[ChangePoint]:
    """Group same-direction changes at most `gap` points apart; a group whose neighbourhood a
    ramp fits better than any single step is one drift, the others stay steps."""
    out: list[ChangePoint] = []
    group: list[ChangePoint] = []

    def flush() -> None:
        if not group:
            return
        first, last = group[0], group[-1]
        k0, k1 = bounds.index(first.index), bounds.index(last.index)
        lo = max(bounds[k0 - 1], first.index - window)
        hi = min(bounds[k1 + 1], last.index + window)
        ramp = _ramp(y[lo:hi], weight[lo:hi])
        if ramp is None:
            out.extend(group)
        else:
            start, end = lo + ramp[0], lo + ramp[1]
            before = y[max(lo, start - window):start]
            after = y[end:min(hi, end + window)]
            if before.size and after.size:
                out.append(_step(before, after, start, end, kind="drift"))
            else:
                out.extend(group)
        group.clear()

    for point in points:
        if group and (point.index - group[-1].index > gap or
                      (point.ratio > 1) != (group[-1].ratio > 1)):
            flush()
        group.append(point)
    flush()
    return out


def _ramp(y: np.ndarray, w: np.ndarray) -> tuple[int, int] | None:
    """(first moved point, first point at the final level) of the best ramp through y, when
    the Bayesian information criterion prefers it to the best single step, else None.

    Both models are a weighted least-squares fit of y = a + b x, with x a step (0 then 1) or
    a ramp (0, rising linearly over at least RAMP_MIN points, then 1). With weights of
    1 / variance the residual sum is -2 log-likelihood, and the ramp's one extra parameter,
    its length, costs log(n).
    """
    n = y.size
    if n < 2 * MIN_SIZE + 2:
        return None
    idx = np.arange(n, dtype=float)
    best = {True: (math.inf, (0, 0)), False: (math.inf, (0, 0))}
    for s in range(0, n - 1):
        ends = np.arange(s + 1, n)
        # x[e, i] = clip((i - s) / (e - s), 0, 1): 0 up to s, 1 from e on.
        x = np.clip((idx[None, :] - s) / (ends[:, None] - s), 0.0, 1.0)
        rss = _wls_rss(y, w, x)
        is_ramp = ends - s >= RAMP_MIN
        for ramp in (True, False):
            mask = is_ramp == ramp
            if mask.any():
                k = int(np.argmin(np.where(mask, rss, np.inf)))
                if rss[k] < best[ramp][0]:
                    best[ramp] = (float(rss[k]), (s + 1, int(ends[k])))
    if best[True][0] + math.log(n) < best[False][0]:
        return best[True][1]
    return None


def _wls_rss(y: np.ndarray, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Weighted residual sum of squares of y = a + b x for each row of x."""
    sw = w.sum()
    mx = (x * w).sum(axis=1) / sw
    my = float((w * y).sum() / sw)
    dx = x - mx[:, None]
    dy = y - my
    sxx = (w * dx * dx).sum(axis=1)
    sxy = (w * dx * dy).sum(axis=1)
    syy = float((w * dy * dy).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, syy - sxy * sxy / sxx, syy)
