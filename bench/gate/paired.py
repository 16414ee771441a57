"""Paired evidence for the A/B gate: baseline and candidate measured side by side, in one run.

A baseline measured at another moment carries the machine's drift (a neighbour's job, a
clock that moved, another runner) into the comparison. In an A/B run each case alternates
sides worker by worker, so the two workers of a pair share the machine's state and the drift
cancels in their ratio. The unit of evidence is therefore the **log-ratio of one pair**
(log candidate median - log baseline median), and the questions are one-sample ones:

- `t` (default): the paired t on the log-ratios; with a handful of pairs it uses the data
  far better than a rank test (the signed-rank test's smallest one-sided p at 5 pairs is
  1/32, too large to survive a correction over a few cases) and its interval reads as a
  percent;
- `wilcoxon`: the signed-rank test (scipy) and the Hodges–Lehmann estimate (median of the
  Walsh averages) with its distribution-free interval, for pairs with outliers.

The verdict is not decided here: the result is a `ShiftTest`, judged by the gate's one rule
(effect and corrected evidence, `bench.compare`). This module adds what only a paired design
can do: the **minimum detectable effect** per case, and an **adaptive stop** that adds pairs
until the interval is inside ±threshold or clearly outside it. Pure: no I/O, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import numpy as np

from bench.errors import CompareError
from bench.gate.significance import ShiftTest
from bench.gate.thresholds import TIMING_METRIC, ThresholdRule, metric_specs, threshold_for
from bench.results.record import Record
from bench.suite.spec import Case

PAIRED_TESTS = ("t", "wilcoxon")
#: What each worker brings to its pair: this percentile of its samples. Interference on a busy
#: machine (preemption, a neighbour's cache and memory traffic) only ever adds time, so the
#: fast end of a worker's samples is its code's cost with the least interference (Chen &
#: Revels 2016 argue the minimum for this reason); the 10th percentile keeps that while
#: depending far less than the minimum on how many samples the worker took. On this
#: project's loaded 2-core machine it cut the spread of pair ratios from 3-85% (medians) to
#: 0.4-11% (benchmarks/gate_quality.py --ab). 50 gives the median.
PAIR_QUANTILE = 10.0
#: Power at which the minimum detectable effect is quoted (the usual 80%).
MDE_POWER = 0.8
#: Pairs a case needs before the adaptive stop may end it (the t has 3 degrees of freedom).
MIN_PAIRS = 4
#: The stop looks at the data after every pair; a stricter interval for that decision keeps
#: the repeated looks from inflating the error rates of the final verdict (which uses the
#: gate's usual 95%).
STOP_CONFIDENCE = 0.99

Samples = Sequence[float] | np.ndarray
StopState = Literal["same", "changed"] | None


@dataclass(frozen=True)
class PairedTest:
    """One case's pairs. `ratio` = candidate / baseline (geometric mean of the pair ratios
    for `t`, Hodges–Lehmann for `wilcoxon`), `ratio_low`/`ratio_high` its interval (None when
    the pairs are too few), `mde_pct` the smallest change (in %) the test would catch with
    80% power at the per-case level it was given; None when it cannot be estimated."""

    n_pairs: int
    p_greater: float
    p_less: float
    ratio: float
    ratio_low: float | None
    ratio_high: float | None
    mde_pct: float | None
    method: str
    #: Of the t-interval (n_pairs - 1); None for the rank interval.
    df: float | None = None

    def as_shift(self) -> ShiftTest:
        """In the shape the gate's decision rule reads (both sides have n_pairs values)."""
        return ShiftTest(n_baseline=self.n_pairs, n_candidate=self.n_pairs,
                         p_greater=self.p_greater, p_less=self.p_less, ratio=self.ratio,
                         ratio_low=self.ratio_low, ratio_high=self.ratio_high, df=self.df)


def worker_time(samples: Samples, quantile: float = PAIR_QUANTILE) -> float:
    """One worker's contribution to its pair (see PAIR_QUANTILE)."""
    return float(np.percentile(np.asarray(samples, dtype=float), quantile))


def log_ratios(baseline: Samples, candidate: Samples) -> np.ndarray:
    """log(candidate / baseline) pair by pair; both sides positive and of equal length."""
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    if b.shape != c.shape or b.ndim != 1:
        raise ValueError(f"pairs need equal-length sides, got {b.shape} and {c.shape}")
    if b.size and (b.min() <= 0 or c.min() <= 0):
        raise ValueError("paired log-ratios need positive times on both sides")
    return np.log(c) - np.log(b)


def paired_test(baseline: Samples, candidate: Samples, *, confidence: float = 0.95,
                method: str = "t", alpha: float = 0.05) -> PairedTest:
    """The paired test of one case. `alpha` is the one-sided level the minimum detectable
    effect is quoted at (the gate passes alpha / cases: the first step of Holm)."""
    if method not in PAIRED_TESTS:
        raise ValueError(f"unknown paired test {method!r}; use one of {PAIRED_TESTS}")
    d = log_ratios(baseline, candidate)
    if d.size < 2:
        raise ValueError("the paired test needs at least two pairs")
    if method == "t":
        return _t_test(d, confidence, alpha)
    return _wilcoxon_test(d, confidence, alpha)


def _t_test(d: np.ndarray, confidence: float, alpha: float) -> PairedTest:
    from scipy import stats as sps

    n, mean = d.size, float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n)
    df = n - 1
    if se == 0.0:  # every pair gave the same ratio: its sign is all there is
        p_greater = 0.0 if mean > 0 else 1.0
        p_less = 0.0 if mean < 0 else 1.0
        half = 0.0
    else:
        t = mean / se
        p_greater, p_less = float(sps.t.sf(t, df)), float(sps.t.cdf(t, df))
        half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    return PairedTest(n_pairs=n, p_greater=p_greater, p_less=p_less, ratio=math.exp(mean),
                      ratio_low=math.exp(mean - half), ratio_high=math.exp(mean + half),
                      mde_pct=detectable_change(se, df, alpha), method="t", df=df)


def _wilcoxon_test(d: np.ndarray, confidence: float, alpha: float) -> PairedTest:
    n = d.size
    if np.all(d == 0):
        p_greater = p_less = 1.0
    else:
        from scipy import stats as sps

        # zero_method="zsplit" keeps zero differences (ties of the pair) as evidence of "no
        # change" instead of dropping them, which would overstate a shift.
        p_greater = float(sps.wilcoxon(d, alternative="greater", zero_method="zsplit").pvalue)
        p_less = float(sps.wilcoxon(d, alternative="less", zero_method="zsplit").pvalue)
    walsh = walsh_averages(d)
    estimate = float(np.median(walsh))
    interval = signed_rank_interval(d, confidence)
    low = high = mde = None
    if interval is not None:
        low, high = math.exp(interval[0]), math.exp(interval[1])
        mde = mde_from_interval(low, high, confidence, alpha)
    return PairedTest(n_pairs=n, p_greater=_unit(p_greater), p_less=_unit(p_less),
                      ratio=math.exp(estimate), ratio_low=low, ratio_high=high, mde_pct=mde,
                      method="wilcoxon")


def walsh_averages(d: Samples) -> np.ndarray:
    """(d_i + d_j) / 2 for i <= j, sorted: the Hodges–Lehmann estimate is their median."""
    x = np.asarray(d, dtype=float)
    i, j = np.triu_indices(x.size)
    return np.sort((x[i] + x[j]) / 2)


def signed_rank_pmf(n: int) -> np.ndarray:
    """Exact null distribution of the signed-rank statistic T+ for n pairs (no ties): each
    rank k joins T+ or not with probability 1/2."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        shifted = np.zeros_like(counts)
        shifted[k:] = counts[:-k]
        counts = counts + shifted
    return counts / counts.sum()


def signed_rank_interval(d: Samples, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval of the centre of d (Hollander & Wolfe): with W(1..M) the
    sorted Walsh averages, [W(c), W(M + 1 - c)] where c is the largest rank whose tail
    P(T+ <= c - 1) stays at or under (1 - confidence) / 2. None below ~6 pairs at 95%."""
    walsh = walsh_averages(d)
    cdf = np.cumsum(signed_rank_pmf(np.asarray(d).size))
    ok = np.nonzero(cdf <= (1.0 - confidence) / 2 + 1e-12)[0]
    if not ok.size:
        return None
    c = int(ok[-1]) + 1
    return float(walsh[c - 1]), float(walsh[walsh.size - c])


# ---- minimum detectable effect --------------------------------------------------------------
def detectable_change(se_log: float, df: float, alpha: float,
                      power: float = MDE_POWER) -> float | None:
    """The smallest slowdown (in %) a one-sided test at level `alpha` catches with `power`,
    given the standard error of the log-ratio: (t_{1-alpha} + t_{power}) · SE."""
    if not math.isfinite(se_log) or df < 1 or not 0 < alpha < 1:
        return None
    from scipy import stats as sps

    k = float(sps.t.ppf(1 - alpha, df)) + float(sps.t.ppf(power, df))
    return (math.exp(k * se_log) - 1) * 100


def mde_from_interval(ratio_low: float, ratio_high: float, confidence: float, alpha: float,
                      power: float = MDE_POWER, df: float | None = None) -> float | None:
    """The same from a test's interval on the ratio, for tests without a standard error
    (rank intervals): SE = half-width of the log interval / its quantile (normal unless df)."""
    if ratio_low <= 0 or ratio_high <= 0:
        return None
    from scipy import stats as sps

    q = float(sps.t.ppf(0.5 + confidence / 2, df) if df else sps.norm.ppf(0.5 + confidence / 2))
    se = (math.log(ratio_high) - math.log(ratio_low)) / (2 * q)
    return detectable_change(se, df if df else 1e9, alpha, power)


# ---- adaptive stop --------------------------------------------------------------------------
@dataclass(frozen=True)
class AdaptiveStop:
    """The A/B engine's stop rule (`bench.engine.ab.StopRule`): each worker by its
    `quantile` time, the case's timing threshold from the gate's rules, `stop_state`."""

    thresholds: tuple[ThresholdRule, ...] = ()
    method: str = "t"
    quantile: float = PAIR_QUANTILE
    min_pairs: int = MIN_PAIRS

    def __post_init__(self) -> None:
        if self.method not in PAIRED_TESTS:
            raise CompareError(f'paired test "{self.method}" is unknown; use one of '
                               f"{PAIRED_TESTS}")
        if not 0 <= self.quantile <= 100:
            raise CompareError(f"pair quantile {self.quantile:g} must be a percentile, 0 to "
                               "100 (10 by default, 50 for the median)")

    def __call__(self, case: Case, baseline: Sequence[Record],
                 candidate: Sequence[Record]) -> StopState:
        threshold = threshold_for(metric_specs()[TIMING_METRIC], case.name, case.case_id,
                                  self.thresholds)
        if threshold is None:  # timing not gated for this case: its minimum is enough
            return "same" if len(baseline) >= self.min_pairs else None
        return stop_state([worker_time(r.samples_ns, self.quantile) for r in baseline],
                          [worker_time(r.samples_ns, self.quantile) for r in candidate],
                          threshold, min_pairs=self.min_pairs, method=self.method)


def stop_state(baseline: Samples, candidate: Samples, threshold_pct: float, *,
               min_pairs: int = MIN_PAIRS, confidence: float = STOP_CONFIDENCE,
               method: str = "t") -> StopState:
    """Whether a case has pairs enough: "same" when the (stricter) interval lies inside
    ±threshold, "changed" when it lies wholly beyond it, None to keep adding pairs."""
    if len(baseline) < max(min_pairs, 2):
        return None
    test = paired_test(baseline, candidate, confidence=confidence, method=method)
    if test.ratio_low is None or test.ratio_high is None:
        return None
    low, high = (test.ratio_low - 1) * 100, (test.ratio_high - 1) * 100
    if -threshold_pct < low and high < threshold_pct:
        return "same"
    if low >= threshold_pct or high <= -threshold_pct:
        return "changed"
    return None


def _unit(p: float) -> float:
    return 1.0 if math.isnan(p) else min(max(p, 0.0), 1.0)


# ---- comparisons inside one run -------------------------------------------------------------
@dataclass(frozen=True)
class Speedup:
    """How many times faster a case is than a reference case of the same run, and on what
    evidence: `pairs` workers of each measured in the same rounds (their ratios, so drift
    between moments cancels), or the two levels' intervals when there are fewer than two
    such pairs (`basis` then says what those intervals include)."""

    value: float
    low: float
    high: float
    pairs: int
    basis: str

    @property
    def evidence(self) -> str:
        """What the interval rests on, in words."""
        return f"{self.pairs} paired rounds" if self.pairs else self.basis


def round_pairs(reference: Mapping[str, Any], case: Mapping[str, Any]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The worker medians (ms) of two `bench.load()` rows in the rounds both were measured
    in, aligned by round (a worker's repeat index is its round); empty when the rows come
    from different runs."""
    if reference.get("run_id") != case.get("run_id"):
        return np.empty(0), np.empty(0)
    by_round = []
    for row in (reference, case):
        ids, medians = row.get("repeat_ids"), row.get("repeat_medians_ms")
        if not (_listlike(ids) and _listlike(medians)) or len(ids) != len(medians):
            return np.empty(0), np.empty(0)
        by_round.append({int(k): float(m) for k, m in zip(ids, medians, strict=True)})
    common = sorted(by_round[0].keys() & by_round[1].keys())
    return (np.array([by_round[0][k] for k in common]),
            np.array([by_round[1][k] for k in common]))


def round_test(reference: Mapping[str, Any], case: Mapping[str, Any],
               confidence: float = 0.95) -> PairedTest | None:
    """The paired t of `case` against `reference` over the rounds both ran in (ratio =
    case / reference); None with fewer than two such rounds."""
    ref, other = round_pairs(reference, case)
    if ref.size < 2 or ref.min() <= 0 or other.min() <= 0:
        return None
    return paired_test(ref, other, confidence=confidence)


def speedup(reference: Mapping[str, Any], case: Mapping[str, Any],
            confidence: float = 0.95) -> Speedup | None:
    """reference / case for two `bench.load()` rows of one run (> 1: the case is faster).

    From the workers measured in the same rounds when there are two or more such pairs;
    otherwise the ratio of the levels with the interval their own intervals span (faster
    only when even the slowest bound of one beats the fastest of the other)."""
    from bench.stats import interval_basis

    test = round_test(reference, case, confidence)
    if test is not None and test.ratio_low and test.ratio_high:
        return Speedup(1 / test.ratio, 1 / test.ratio_high, 1 / test.ratio_low,
                       test.n_pairs, "paired")
    try:
        ref, value = float(reference["median_ms"]), float(case["median_ms"])
        ref_low, ref_high = float(reference["ci_low_ms"]), float(reference["ci_high_ms"])
        low, high = float(case["ci_low_ms"]), float(case["ci_high_ms"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (ref > 0 and value > 0):
        return None
    workers = min(int(_number(reference.get("repeats"), 1)), int(_number(case.get("repeats"), 1)))
    between = bool(reference.get("ci_between_workers")) and bool(case.get("ci_between_workers"))
    return Speedup(ref / value, ref_low / high if high > 0 else math.nan,
                   ref_high / low if low > 0 else math.inf, 0,
                   interval_basis(workers, between))


def _listlike(value: Any) -> TypeGuard[list[Any] | tuple[Any, ...] | np.ndarray]:
    return isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0


def _number(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default
