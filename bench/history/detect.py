"""Change points in one case's history. Pure: arrays in, change points out; no I/O, no torch.

A history point is one commit's measurement of a case: the log of its level (one value per
commit, however many workers measured it). The detector works on the *ranks* of those
levels (bench.history.ranks says why: a rank test's false alarms do not depend on what the
noise looks like), in four stages:

1. **Search**: seeded binary segmentation (Kovács, Li, Bühlmann, Haltmeier & Munk,
   Biometrika 2023): intervals of every scale (lengths n, n/√2, n/2, ... down to twice the
   smallest segment, each scale covering the series twice over); in each, the split whose
   rank-sum z is largest. The narrowest interval whose best z clears `z_threshold` gives a
   change point, every interval holding it is dropped, and so on (narrowest over threshold:
   a short excursion — a regression fixed a few commits later — is found in a short
   interval, where a search over the whole series would not see it).
2. **Placement**: each change point is moved to the best split between its neighbours.
3. **Confirmation**: every change — step or drift — must be borne out by the commits either
   side (up to `window` a side, never across a neighbouring change): the same two-sided
   rank test, p below `alpha`, with at least MIN_SIZE commits on each side, so a change is
   reported once MIN_SIZE commits sit at the new level. Its z is divided by the square root
   of the wander's variance factor (`ranks.dependence_factor`, measured on the residuals
   of a first fit that assumes none, then again on the fit that allows for it, until it
   stops growing), so autocorrelated noise needs more evidence. The
   weakest change failing it is dropped and the rest placed again, until all pass.
4. **Kind**: changes in the same direction within `drift_gap` commits, or a single one,
   whose neighbourhood a ramp fits better than a step (robustly: levels are medians, the
   fit's error is absolute, the ramp's extra parameter must pay DRIFT_PENALTY times
   its BIC price, and under wander the points count for fewer) are one **drift** from
   the first commit that moved to the first at the new level, confirmed like a step;
   everything else is a **step**.

Why three commits at the new level (MIN_SIZE), not two: with one measurement per commit,
two outliers in a row are indistinguishable from a new level by any test that does not
assume the noise's shape (a rank test can say no more than "the two highest of n"), and
at 1–5% outliers a 50-case suite would see such a pair on several pushes in a hundred.

The step is the Hodges–Lehmann shift of the logs either side, with its distribution-free
95% interval (`bench.gate.significance`, the gate's own), read as a ratio.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from bench.history.ranks import RankScan, dependence_factor, two_sample_z

#: A split must reach this rank-sum z in some seeded interval to become a candidate (the
#: confirmation then corrects for wander). Calibrated on flat synthetic series
#: (benchmarks/history_quality.py, tuning seeds): the lowest z whose false changes per
#: 1,000 flat commits stay below 1 on every noise family, with room for their sampling
#: error; with ranks the rate holds for every noise whose commits are exchangeable (see
#: docs/guides/history.md for the figures).
DEFAULT_Z = 4.5
#: Two-sided level of the rank test every reported change must pass on its neighbourhood.
DEFAULT_ALPHA = 1e-3
#: Commits a side that confirm and describe a change.
DEFAULT_WINDOW = 60
#: Same-direction changes at most this many commits apart are tested together as one drift.
DEFAULT_DRIFT_GAP = 10
#: Smallest segment: a change needs this many commits at its new level (and its old one).
MIN_SIZE = 3
#: Fewest commits a drift spans from the last one at the old level to the first at the new
#: one (3 in between): shorter ramps are told from a step by noise alone.
RAMP_MIN = 4
#: How many times its BIC price the ramp's extra parameter must pay (see `_ramp`): a step
#: must never be called a drift, and noise next to a step can look like a ramp into it.
#: Calibrated on benchmarks/history_quality.py's tuning seeds: no step series of any family
#: needed more than 4 (docs/guides/history.md).
DRIFT_PENALTY = 5.0
#: Density floor (kernel units) in placing a change: a point that fits neither side (an
#: outlier) costs the same on both.
KERNEL_FLOOR = 1e-3
#: Most fits the wander's measurement takes (each on the previous one's change points).
WANDER_ROUNDS = 3
#: Ratio of consecutive interval lengths in the seeded search.
SEED_DECAY = 1 / math.sqrt(2)


@dataclass(frozen=True)
class ChangePoint:
    """A level change in one series between points `index - 1` and `index` (a step), or across
    `start`..`index` (a drift: the level moved over the commits `start` to `index`).

    `ratio` = new level / old level (> 1 is slower for timings), `ratio_low`/`ratio_high` its
    95% interval (None when the sides are too short for one), `p_value` the two-sided rank
    test's p (with the wander's correction).
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
    #: Robust standard deviation (log units) of the points around their segments' levels:
    #: all the scatter between commits, whatever its source.
    noise: float
    #: Median standard error (log units) of the points' own intervals (within a run).
    se_median: float
    #: Variance factor of the wander between successive commits (1: none).
    dependence: float
    #: Segment boundaries as indices (0, ..., n) and each segment's median (log).
    bounds: tuple[int, ...]
    levels: tuple[float, ...]


def fit_series(log_level: Sequence[float] | np.ndarray,
               se: Sequence[float] | np.ndarray | None = None, *,
               z_threshold: float = DEFAULT_Z, alpha: float = DEFAULT_ALPHA,
               window: int = DEFAULT_WINDOW, drift_gap: int = DEFAULT_DRIFT_GAP,
               forced: Sequence[int] = ()) -> SeriesFit:
    """Change points of one series (oldest point first).

    `se` (the points' own standard errors, from their runs' intervals) is reported, not used
    to weigh the points: an interval from within one run cannot see what differs between
    runs (another host, the machine's state), which is most of what a history's commits
    scatter by. `forced` are indices where a new level starts regardless (accepted
    changes): the series is cut there and each part is fitted on its own, so an accepted
    change is neither reported again nor lets the old level bleed into the new one.
    """
    y = np.asarray(log_level, dtype=float)
    if y.ndim != 1:
        raise ValueError("log_level must be a 1-d array")
    s = np.zeros_like(y) if se is None else np.asarray(se, dtype=float)
    if s.shape != y.shape:
        raise ValueError("log_level and se must have the same length")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(s)):
        raise ValueError("history points must be finite")
    n = y.size
    cuts = sorted({i for i in forced if 0 < i < n})
    parts = list(itertools.pairwise([0, *cuts, n]))


    def fit_parts(dependence: float) -> list[int]:
        found = []
        for a, b in parts:
            found += [a + i for i in _changes(y[a:b], z_threshold, alpha, window, dependence)]
        return found

    # wander is measured on the residuals of a first fit that assumes none; that fit takes
    # stretches of wander for changes, whose cuts hide part of it, so it is measured again
    # on the fit that allows for it, until it stops growing
    detected = fit_parts(1.0)
    dependence = 1.0
    for _ in range(WANDER_ROUNDS):
        measured = dependence_factor(y, sorted({0, n, *cuts, *detected}))
        if measured <= dependence * 1.05:
            break
        dependence = measured
        detected = fit_parts(dependence)
    bounds = sorted({0, n, *cuts, *detected})
    points = [_describe(y, bounds, i, i, window, dependence) for i in detected]
    accepted = [replace(_describe(y, bounds, c, c, window, dependence), kind="accepted")
                for c in cuts]
    levels = [float(np.median(y[a:b])) for a, b in itertools.pairwise(bounds)]
    residual = np.concatenate([y[a:b] - lv for (a, b), lv in
                               zip(itertools.pairwise(bounds), levels, strict=True)]) \
        if n else np.zeros(0)
    noise = 1.4826 * float(np.median(np.abs(residual))) if n else 0.0
    steps = _drifts(y, points, bounds, drift_gap, window, alpha, dependence)
    return SeriesFit(change_points=tuple(steps), accepted=tuple(accepted), noise=noise,
                     se_median=float(np.median(s)) if n else 0.0, dependence=dependence,
                     bounds=tuple(bounds), levels=tuple(levels))


# ---- search, placement, confirmation ----------------------------------------------------------
def _changes(y: np.ndarray, z_threshold: float, alpha: float, window: int,
             dependence: float) -> list[int]:
    """Confirmed change points of one part (indices of the first point at a new level)."""
    from scipy.special import ndtr

    n = y.size
    if n < 2 * MIN_SIZE:
        return []
    scale = math.sqrt(dependence)
    scan = RankScan(y)
    chosen = _search(scan, n, z_threshold)
    while chosen:
        chosen = _place(scan, n, chosen)
        if not chosen:
            break
        bounds = [0, *chosen, n]
        lo = np.maximum(np.asarray(bounds[:-2]), np.asarray(chosen) - window)
        hi = np.minimum(np.asarray(bounds[2:]), np.asarray(chosen) + window)
        z = scan.z(lo, np.asarray(chosen), hi) / scale
        p = np.minimum(1.0, 2 * ndtr(-np.abs(z)))
        weakest = int(np.argmax(p))
        if p[weakest] < alpha:
            break
        del chosen[weakest]
    return chosen


@functools.lru_cache(maxsize=64)
def seeded_intervals(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of the seeded intervals [start, end) of a series of n points (the
    same for every series of a history: remembered; the arrays are never written)."""
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    length = float(n)
    while math.ceil(length) >= 2 * MIN_SIZE:
        size = math.ceil(length)
        count = 2 * math.ceil(n / size) - 1
        first = np.unique(np.rint(np.linspace(0, n - size, count)).astype(int))
        starts.append(first)
        ends.append(first + size)
        length *= SEED_DECAY
    if not starts:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    return np.concatenate(starts), np.concatenate(ends)


def _search(scan: RankScan, n: int, threshold: float) -> list[int]:
    """Narrowest-over-threshold selection among the seeded intervals' best splits."""
    starts, ends = seeded_intervals(n)
    split, value = scan.best_splits(starts, ends, MIN_SIZE)
    over = np.flatnonzero((split >= 0) & (value > threshold))
    order = over[np.lexsort((-value[over], ends[over] - starts[over]))]
    chosen: list[int] = []
    for i in order.tolist():
        a, b = int(starts[i]), int(ends[i])
        if not any(a < c < b for c in chosen):
            chosen.append(int(split[i]))
    return sorted(chosen)


def _place(scan: RankScan, n: int, chosen: list[int]) -> list[int]:
    """Each change point moved to the best split between its neighbours (once, left to
    right); points that no longer fit MIN_SIZE apart are dropped.

    The rank statistic finds *that* the level moved but places it loosely (once every point
    after a large step outranks every point before, moving the split by a few commits
    hardly changes the standardised rank sum; a minority of commits on a faster host
    flattens its peak further). The place is where the two sides' own distributions explain
    their points best: the likelihood of each point under a kernel density of its side
    (leave-one-out; the kernel's width is the jitter between successive commits). So the
    noise's shape comes from the data: a fast host's commit before a step down is at home
    on both sides and decides nothing, a commit at the old main level decides, and an
    outlier that fits neither side costs the same on both.
    """
    out: list[int] = []
    y = scan.y
    d = np.diff(y)
    width = max(1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2), 1e-9) \
        if n > 2 else 1.0
    for k in range(len(chosen)):
        lo = out[-1] if out else 0
        hi = chosen[k + 1] if k + 1 < len(chosen) else n
        if hi - lo < 2 * MIN_SIZE:
            continue
        out.append(lo + _likeliest_split(y[lo:hi], width))
    return out


def _likeliest_split(seg: np.ndarray, width: float) -> int:
    """The split of `seg` (both sides MIN_SIZE or more) under which the points are likeliest
    under their own side's kernel density; the first of equals."""
    m = seg.size
    kernel = np.exp(-0.5 * ((seg[:, None] - seg[None, :]) / width) ** 2)
    np.fill_diagonal(kernel, 0.0)  # leave one out
    below = np.zeros((m, m + 1))
    np.cumsum(kernel, axis=1, out=below[:, 1:])  # below[i, k]: kernel mass of points < k
    cand = np.arange(MIN_SIZE, m - MIN_SIZE + 1)
    rows = np.arange(m)[:, None]
    left = rows < cand[None, :]
    mass = np.where(left, below[:, cand] / (cand - 1),
                    (below[:, [m]] - below[:, cand]) / (m - cand - 1))
    loss = -np.log(mass + KERNEL_FLOOR).sum(axis=0)
    return int(cand[int(np.argmin(loss))])


def _rank_p(before: np.ndarray, after: np.ndarray, dependence: float) -> float:
    """Two-sided p of the rank test of `after` against `before`, the wander corrected; 1
    when a side has fewer than MIN_SIZE points."""
    from scipy.special import ndtr

    if before.size < MIN_SIZE or after.size < MIN_SIZE:
        return 1.0
    z = two_sample_z(before, after) / math.sqrt(dependence)
    return float(min(1.0, 2 * ndtr(-abs(z))))


# ---- description ----------------------------------------------------------------------------
def _describe(y: np.ndarray, bounds: list[int], start: int, index: int, window: int,
              dependence: float, kind: str = "step") -> ChangePoint:
    """The change from the commits before `start` to those from `index` on, within the
    neighbouring boundaries and `window` a side."""
    k0 = max(i for i, b in enumerate(bounds) if b <= start)
    k1 = min(i for i, b in enumerate(bounds) if b >= index)
    lo = bounds[k0 - 1] if bounds[k0] == start and k0 > 0 else bounds[k0]
    hi = bounds[k1 + 1] if bounds[k1] == index and k1 + 1 < len(bounds) else bounds[k1]
    before = y[max(lo, start - window):start]
    after = y[index:min(hi, index + window)]
    return _step(before, after, start, index, dependence, kind)


def _step(before: np.ndarray, after: np.ndarray, start: int, index: int, dependence: float,
          kind: str = "step") -> ChangePoint:
    from bench.gate.significance import hodges_lehmann, shift_interval

    low = high = p = None
    if before.size and after.size:
        ratio = math.exp(hodges_lehmann(before, after))
        interval = shift_interval(before, after, 0.95)
        if interval is not None:
            low, high = math.exp(interval[0]), math.exp(interval[1])
        if before.size >= MIN_SIZE and after.size >= MIN_SIZE:
            p = _rank_p(before, after, dependence)
    else:
        ratio = 1.0
    return ChangePoint(index=index, start=start, kind=kind, ratio=ratio, ratio_low=low,
                       ratio_high=high, p_value=p, n_before=int(before.size),
                       n_after=int(after.size))


# ---- drifts ---------------------------------------------------------------------------------
def _drifts(y: np.ndarray, points: list[ChangePoint], bounds: list[int], gap: int,
            window: int, alpha: float, dependence: float) -> list[ChangePoint]:
    """Group same-direction changes at most `gap` commits apart; a group whose neighbourhood
    a ramp fits better than a step, and whose ends pass the confirmation, is one drift; the
    others stay steps. Neighbouring same-direction groups whose ramps come within `gap` of
    each other are one group (a long drift is found as several changes)."""
    groups: list[list[ChangePoint]] = []
    for point in points:
        last = groups[-1][-1] if groups else None
        if last is not None and point.index - last.index <= gap and \
                (point.ratio > 1) == (last.ratio > 1):
            groups[-1].append(point)
        else:
            groups.append([point])
    drifts = [_drift(y, g, bounds, window, alpha, dependence) for g in groups]
    k = 0
    while k + 1 < len(groups):
        a, b = groups[k], groups[k + 1]
        drift_a, drift_b = drifts[k], drifts[k + 1]
        end_a = drift_a.index if drift_a is not None else a[-1].index
        start_b = drift_b.start if drift_b is not None else b[0].index
        if (a[0].ratio > 1) == (b[0].ratio > 1) and (drifts[k] or drifts[k + 1]) and \
                start_b - end_a <= gap:
            groups[k:k + 2] = [a + b]
            drifts[k:k + 2] = [_drift(y, a + b, bounds, window, alpha, dependence)]
        else:
            k += 1
    out: list[ChangePoint] = []
    for group, drift in zip(groups, drifts, strict=True):
        out += [drift] if drift else group
    return out


def _drift(y: np.ndarray, group: list[ChangePoint], bounds: list[int], window: int,
           alpha: float, dependence: float) -> ChangePoint | None:
    """The group as one confirmed drift, or None when a step fits as well or the commits
    either side of the ramp do not bear a change out."""
    first, last = group[0], group[-1]
    k0, k1 = bounds.index(first.index), bounds.index(last.index)
    lo = max(bounds[k0 - 1], first.index - window)
    hi = min(bounds[k1 + 1], last.index + window)
    ramp = _ramp(y[lo:hi], dependence)
    if ramp is None:
        return None
    start, end = lo + ramp[0], lo + ramp[1]
    before = y[max(lo, start - window):start]
    after = y[end:min(hi, end + window)]
    if _rank_p(before, after, dependence) >= alpha:
        return None
    return _step(before, after, start, end, dependence, kind="drift")


def _ramp(y: np.ndarray, dependence: float = 1.0) -> tuple[int, int] | None:
    """(first moved point, first point at the new level) of the best ramp through y, when it
    fits clearly better than the best single step, else None.

    Both models hold the median of the points before (level 0) and after (level 1), and
    between them a straight line (a step has no points between). Their error is the sum of
    absolute deviations, so an outlier costs both the same; with a Laplace likelihood the
    ramp's gain is 2 n log(E_step / E_ramp), which must exceed DRIFT_PENALTY log n (the
    ramp's one extra parameter, its length, at DRIFT_PENALTY times BIC's price). Under
    wander, successive points are alike and a stretch of them can lie on a slope by chance:
    the gain counts n / `dependence` points (the wander's variance factor).
    """
    n = y.size
    if n < 2 * MIN_SIZE + RAMP_MIN - 1:
        return None
    # row s: the median of the points before s (left) and from s on (right), and the
    # absolute deviations from them; only splits leaving MIN_SIZE points a side
    cuts = np.arange(MIN_SIZE, n - MIN_SIZE + 1)
    before = np.arange(n)[None, :] < cuts[:, None]
    grid = np.broadcast_to(y, before.shape)
    left = np.full(n + 1, np.nan)
    right = np.full(n + 1, np.nan)
    err_left = np.full(n + 1, np.inf)
    err_right = np.full(n + 1, np.inf)
    left[cuts] = np.nanmedian(np.where(before, grid, np.nan), axis=1)
    right[cuts] = np.nanmedian(np.where(before, np.nan, grid), axis=1)
    err_left[cuts] = np.where(before, np.abs(grid - left[cuts][:, None]), 0.0).sum(axis=1)
    err_right[cuts] = np.where(before, 0.0, np.abs(grid - right[cuts][:, None])).sum(axis=1)
    step_err = err_left + err_right
    s_step = int(np.nanargmin(step_err))
    best_step = float(step_err[s_step])
    best_ramp, where = math.inf, (0, 0)
    for s in range(MIN_SIZE, n - MIN_SIZE - RAMP_MIN + 2):
        ends = np.arange(s + RAMP_MIN - 1, n - MIN_SIZE + 1)
        if ends.size == 0:
            continue
        idx = np.arange(s, ends[-1])
        frac = (idx[None, :] - s + 1) / (ends[:, None] - s + 1)
        line = left[s] + (right[ends][:, None] - left[s]) * frac
        inside = idx[None, :] < ends[:, None]
        middle = np.where(inside, np.abs(y[idx][None, :] - line), 0.0).sum(axis=1)
        total = err_left[s] + err_right[ends] + middle
        k = int(np.argmin(total))
        if total[k] < best_ramp:
            best_ramp, where = float(total[k]), (s, int(ends[k]))
    if best_ramp <= 0 or best_step <= 0:
        return None
    if 2 * n / dependence * math.log(best_step / best_ramp) > DRIFT_PENALTY * math.log(n):
        return where
    return None
