"""Statistics of raw timing samples and of a case's workers. Pure functions: no I/O, no torch.

Within one worker the median leads (robust to the long right tail of timings), with the IQR as
its spread and a distribution-free confidence interval from order statistics, which makes no
normality assumption — timings are rarely normal. Across a case's workers, the level is the
geometric mean of their medians and its interval the t-interval on their logs (`level`): what
moves between worker processes (start-up, memory layout, the machine's state) is usually far
larger than the noise inside one, and only an interval over workers sees it. `plan_workers`
splits a case's measuring time between workers and samples from the variance at each level
(Kalibera & Jones, "Rigorous Benchmarking in Reasonable Time", ISMM 2013).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: IQR / median at or above this is flagged as a noisy measurement.
NOISE_WARNING_RATIO = 0.10


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based ranks (lo, hi) of the sorted samples bounding the median's CI.

    With B ~ Binomial(n, 1/2), [x(l), x(n-l+1)] (1-based) covers the median with probability
    1 - 2·P(B <= l-1); l is the largest rank keeping that at or above `confidence`. Below six
    samples no rank qualifies at 95% and the full range is returned.
    """
    from scipy import stats as sps  # loaded on first use: the CLI starts without scipy

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
    """Everything the report and the gate read about one case's timing, in milliseconds.

    `median_ms` and its interval (`ci_low_ms`, `ci_high_ms`, `ci_rel`) are the case's level
    (`level`): across its workers when there are two or more (`between_workers`), else the
    one worker's median and its own interval. The spread and the percentiles describe the
    pooled per-call samples; `worker_ci_rel` is what one worker's own interval claimed (the
    median over workers)."""

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
    workers: int = 1
    between_workers: bool = False
    worker_ci_rel: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples_ns: Sequence[float], *, items_per_iter: int = 1,
              confidence: float = 0.95, worker_medians_ns: Sequence[float] = (),
              worker_ci_rel: Sequence[float] = ()) -> Summary:
    """Summary statistics of per-iteration times given in nanoseconds: of one worker's, or
    of a case's workers pooled (with each worker's median and own relative interval)."""
    ms = np.asarray(samples_ns, dtype=float) / 1e6
    if ms.size == 0:
        raise ValueError("no samples to summarise")
    q1, median, q3, p90, p95, p99 = np.percentile(ms, [25, 50, 75, 90, 95, 99])
    medians = np.asarray(worker_medians_ns, dtype=float) / 1e6
    if medians.size >= 2 and np.all(medians > 0):
        case = level(medians, confidence)
    else:
        case = level([median], confidence, own_interval=median_ci(ms, confidence))
    lo, hi, centre = case.low, case.high, case.value
    iqr = float(q3 - q1)
    noise = iqr / median if median > 0 else math.inf
    own = [float(x) for x in worker_ci_rel if x is not None and math.isfinite(x)]
    return Summary(
        n=int(ms.size),
        median_ms=float(centre),
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
        ci_rel=case.rel,
        noise=noise,
        noise_warning=noise >= NOISE_WARNING_RATIO,
        throughput_items_s=items_per_iter / (centre / 1e3) if centre > 0 else math.inf,
        workers=case.workers,
        between_workers=case.between_workers,
        worker_ci_rel=float(np.median(own)) if own else (
            None if case.between_workers else case.rel),
    )


# ---- a case's level across its workers ------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """A case's typical time per call and its confidence interval (in the medians' unit).

    `between_workers` says what the interval includes. True (two or more workers): the
    geometric mean of the workers' medians and the t-interval on their logs, with k - 1
    degrees of freedom. Each worker's median carries what moves between processes as well as
    its own sampling noise, so the interval covers both; with 3–10 workers a t-interval on
    worker-level values is what Kalibera & Jones use at the top level, and a bootstrap of so
    few values would only echo their observed range (too narrow). False (one worker): its
    median and the median's distribution-free interval, which sees only the noise inside that
    worker — readers must say that variation between runs was not measured.
    """

    value: float
    low: float
    high: float
    workers: int
    between_workers: bool

    @property
    def rel(self) -> float:
        """The larger distance from the level to a bound, as a fraction of the level."""
        if not self.value > 0:
            return math.inf
        return max(self.value - self.low, self.high - self.value) / self.value


#: What every display of a one-worker interval says beside it.
ONE_WORKER = "one worker: variation between runs not measured"


def interval_basis(workers: int, between_workers: bool) -> str:
    """What a level's interval includes, in words, for every place that shows one."""
    return f"{workers} workers" if between_workers else ONE_WORKER


def t_quantile(df: float, p: float) -> float:
    """Student's t quantile, through scipy.special (scipy.stats alone takes 0.4 s to import)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


def level(worker_medians: Samples, confidence: float = 0.95,
          own_interval: tuple[float, float] | None = None) -> Level:
    """The level of a case from its workers' medians; with one worker, `own_interval` is its
    median's own interval (NaN bounds when not given)."""
    medians = np.asarray(worker_medians, dtype=float)
    if medians.size == 0:
        raise ValueError("no worker medians")
    if medians.size == 1:
        low, high = own_interval if own_interval is not None else (math.nan, math.nan)
        return Level(float(medians[0]), float(low), float(high), 1, False)
    if not np.all(medians > 0):
        raise ValueError("worker medians must be positive times")
    logs = np.log(medians)
    centre = float(logs.mean())
    half = t_halfwidth(logs, confidence)
    return Level(math.exp(centre), math.exp(centre - half), math.exp(centre + half),
                 int(medians.size), True)


def t_halfwidth(values: Samples, confidence: float = 0.95) -> float:
    """Half-width of the t-interval of the mean of `values` (two or more)."""
    data = np.asarray(values, dtype=float)
    k = data.size
    if k < 2:
        raise ValueError("a t-interval needs at least two values")
    return t_quantile(k - 1, 0.5 + confidence / 2) * float(data.std(ddof=1)) / math.sqrt(k)


@dataclass(frozen=True)
class Drift:
    """How the machine's speed moved between the rounds of a run: each round's effect is the
    median, over the cases measured in it, of the log ratio of their worker's median to the
    case's level (every case slowed alike by the machine moves it; a case's own scatter does
    not). `sd` is the spread of the round effects and `span` slowest over fastest round.
    Levels are averages over these moments; two runs taken while the machine is this
    unsteady can differ by more than their intervals, which see only their own run."""

    rounds: int
    effects: tuple[float, ...]
    sd: float
    span: float

    def describe(self) -> str:
        """The drift in words, as the run's output and the report state it."""
        return (f"the machine's speed moved ±{self.sd * 100:.1f}% between the {self.rounds} "
                f"rounds (slowest {self.span:.2f}× the fastest)")


#: Round effects this spread (relative) or more make a run's levels hard to compare with
#: another run's; below it, the machine held its speed through the run.
STEADY_DRIFT = 0.02


def round_drift(cases: Sequence[tuple[Sequence[int], Sequence[float]]]) -> Drift | None:
    """The drift of a run from its cases' (rounds, worker medians); None with fewer than
    three rounds of at least three cases that have two or more workers."""
    by_round: dict[int, list[float]] = {}
    for rounds, medians in cases:
        values = np.asarray(medians, dtype=float)
        if len(rounds) != values.size or values.size < 2 or not np.all(values > 0):
            continue
        logs = np.log(values)
        for k, deviation in zip(rounds, logs - logs.mean(), strict=True):
            by_round.setdefault(int(k), []).append(float(deviation))
    effects = [float(np.median(v)) for _, v in sorted(by_round.items()) if len(v) >= 3]
    if len(effects) < 3:
        return None
    return Drift(rounds=len(effects), effects=tuple(effects),
                 sd=math.expm1(float(np.std(effects, ddof=1))),
                 span=math.exp(max(effects) - min(effects)))


@dataclass(frozen=True)
class WorkerRun:
    """One finished worker of a case, as the planner of the next one sees it."""

    median: float
    #: Relative half-width of its median's own confidence interval (inf: unknown).
    own_rel: float
    #: Seconds of timed sampling, and the rest of what the worker cost (start, build,
    #: transforms, warm-up, teardown).
    measure_s: float
    overhead_s: float


@dataclass(frozen=True)
class WorkerPlan:
    """How the next worker of a case should spend its time, and why."""

    #: Measuring window for the next worker.
    window_s: float
    #: Variance components on the log scale: between workers beyond their own noise (sd),
    #: and inside one worker per second of measuring (variance x seconds).
    between_sd: float
    within_rate: float
    #: Workers the target would take at that window, if the components hold; None when even
    #: `max_workers` would not reach it.
    workers_needed: int | None


def plan_workers(runs: Sequence[WorkerRun], target_rel: float, confidence: float, *,
                 min_window_s: float, max_window_s: float, max_workers: int) -> WorkerPlan:
    """Split a case's measuring time between workers and samples (Kalibera & Jones 2013).

    With T² the variance between workers' medians beyond their own noise, v the variance of
    a worker's median times its measuring seconds (its own noise shrinks as 1/t) and c the
    fixed cost of a worker, the level's variance over k workers of window t is
    (T² + v / t) / k at a cost of k·(c + t); the cheapest window for any precision is
    t* = sqrt(c·v / T²). Workers that already agree (T² ≈ 0) get the longest window; workers
    that disagree get short windows and more of them.
    """
    from scipy import stats as sps  # loaded on first use: the CLI starts without scipy

    if not runs:
        raise ValueError("no workers to plan from")
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    own = np.array([math.log1p(r.own_rel) / z if math.isfinite(r.own_rel) else math.nan
                    for r in runs])
    seconds = np.array([max(r.measure_s, 1e-6) for r in runs])
    within_rate = float(np.nanmedian(own ** 2 * seconds)) if np.isfinite(own).any() else 0.0
    between_var = 0.0
    if len(runs) >= 2:
        logs = np.log([r.median for r in runs])
        between_var = max(float(logs.var(ddof=1)) - float(np.nanmean(own ** 2)), 0.0)
    overhead = float(np.median([max(r.overhead_s, 0.0) for r in runs]))
    if between_var > 0 and within_rate > 0:
        window = math.sqrt(overhead * within_rate / between_var)
    else:
        window = max_window_s if within_rate > 0 else min_window_s
    window = min(max(window, min_window_s), max_window_s)
    own_var = within_rate / window if window > 0 else float(np.nanmean(own ** 2) or 0.0)
    goal = math.log1p(target_rel)
    needed = next((k for k in range(2, max_workers + 1)
                   if t_quantile(k - 1, 0.5 + confidence / 2)
                   * math.sqrt((between_var + own_var) / k) <= goal), None)
    return WorkerPlan(window_s=window, between_sd=math.sqrt(between_var),
                      within_rate=within_rate, workers_needed=needed)


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
    from scipy import stats as sps  # loaded on first use: the CLI starts without scipy

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
    from scipy import stats as sps  # loaded on first use: the CLI starts without scipy

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
