"""The paired test of A/B runs: log-ratios of pairs, intervals, MDE, adaptive stop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.gate.paired import (
    detectable_change,
    log_ratios,
    paired_test,
    signed_rank_interval,
    signed_rank_pmf,
    stop_state,
    walsh_averages,
)


def pairs(ratio: float, n: int, sd: float = 0.02, seed: int = 0,
          drift: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """n pairs whose machine speed drifts by up to ±drift between pairs (shared by both
    workers of a pair) while the candidate is `ratio` times the baseline."""
    rng = np.random.default_rng(seed)
    machine = np.exp(rng.uniform(-drift, drift, n))
    base = 1.0 * machine * np.exp(rng.normal(0, sd, n))
    cand = ratio * machine * np.exp(rng.normal(0, sd, n))
    return base, cand


def test_t_matches_scipy_paired_t_on_logs() -> None:
    base, cand = pairs(1.07, 8, seed=1)
    test = paired_test(base, cand)
    ref = sps.ttest_rel(np.log(cand), np.log(base), alternative="greater")
    assert test.p_greater == pytest.approx(ref.pvalue)
    assert test.p_less == pytest.approx(1 - ref.pvalue)
    d = np.log(cand) - np.log(base)
    assert test.ratio == pytest.approx(math.exp(d.mean()))
    half = sps.t.ppf(0.975, 7) * d.std(ddof=1) / math.sqrt(8)
    assert test.ratio_low == pytest.approx(math.exp(d.mean() - half))
    assert test.ratio_high == pytest.approx(math.exp(d.mean() + half))
    assert test.df == 7 and test.n_pairs == 8


def test_pairing_cancels_drift_that_hides_the_change_unpaired() -> None:
    """±30% machine drift between pairs, 5% slower candidate: the paired interval is a few
    percent wide and excludes zero; the same numbers unpaired (Welch) cannot tell."""
    base, cand = pairs(1.05, 6, sd=0.01, seed=2)
    test = paired_test(base, cand)
    assert test.ratio_low is not None and test.ratio_low > 1.0
    assert test.ratio_high is not None and test.ratio_high - test.ratio_low < 0.05
    welch = sps.ttest_ind(np.log(cand), np.log(base), equal_var=False, alternative="greater")
    assert welch.pvalue > 0.2 and test.p_greater < 0.001


def test_interval_covers_the_true_ratio_at_its_level() -> None:
    covered = 0
    for seed in range(200):
        base, cand = pairs(1.1, 6, sd=0.03, seed=seed)
        t = paired_test(base, cand)
        covered += t.ratio_low <= 1.1 <= t.ratio_high  # type: ignore[operator]
    assert 0.92 <= covered / 200 <= 0.98


def test_mde_has_its_power() -> None:
    """A true change of the stated MDE is caught (one-sided, at alpha) about 80% of the time."""
    n, sd, alpha = 6, 0.03, 0.01
    se = sd * math.sqrt(2) / math.sqrt(n)
    mde = detectable_change(se, n - 1, alpha)
    assert mde is not None
    caught = 0
    trials = 300
    for seed in range(trials):
        base, cand = pairs(1 + mde / 100, n, sd=sd, seed=1000 + seed)
        caught += paired_test(base, cand, alpha=alpha).p_greater < alpha
    assert 0.7 <= caught / trials <= 0.9


def test_mde_shrinks_with_pairs() -> None:
    values = [paired_test(*pairs(1.0, n, seed=5)).mde_pct for n in (3, 6, 12, 24)]
    assert all(v is not None for v in values)
    assert values == sorted(values, reverse=True)  # type: ignore[type-var]


def test_wilcoxon_matches_scipy_and_hodges_lehmann() -> None:
    base, cand = pairs(1.08, 9, sd=0.02, seed=3)
    test = paired_test(base, cand, method="wilcoxon")
    d = np.log(cand) - np.log(base)
    assert test.p_greater == pytest.approx(sps.wilcoxon(d, alternative="greater").pvalue)
    assert test.ratio == pytest.approx(math.exp(np.median(walsh_averages(d))))
    assert test.ratio_low is not None and test.ratio_high is not None
    assert test.ratio_low <= test.ratio <= test.ratio_high
    assert test.method == "wilcoxon" and test.df is None


def test_signed_rank_pmf_is_the_exact_null() -> None:
    n = 7
    pmf = signed_rank_pmf(n)
    assert pmf.sum() == pytest.approx(1.0)
    # Brute force over all 2**n sign patterns.
    ranks = np.arange(1, n + 1)
    totals = [int((ranks * ((mask >> np.arange(n)) & 1)).sum()) for mask in range(2 ** n)]
    assert np.allclose(np.bincount(totals, minlength=pmf.size) / 2 ** n, pmf)


def test_signed_rank_interval_needs_six_pairs_at_95() -> None:
    assert signed_rank_interval([0.1, 0.2, 0.3, 0.4, 0.5]) is None
    low, high = signed_rank_interval([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # type: ignore[misc]
    assert (low, high) == (0.1, 0.6)  # c = 1: the extreme Walsh averages


def test_identical_pairs_give_the_sign() -> None:
    test = paired_test([1.0, 2.0, 3.0], [1.1, 2.2, 3.3])
    assert test.p_greater < 1e-12 and test.p_less == pytest.approx(1.0)
    assert test.ratio == pytest.approx(1.1)


def test_bad_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        log_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        log_ratios([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="at least two"):
        paired_test([1.0], [1.0])
    with pytest.raises(ValueError, match="unknown paired test"):
        paired_test([1.0, 2.0], [1.0, 2.0], method="sign")


def test_stop_state() -> None:
    same = pairs(1.0, 8, sd=0.002, seed=4)
    slower = pairs(1.2, 8, sd=0.002, seed=4)
    unclear = pairs(1.04, 8, sd=0.05, seed=4)
    assert stop_state(*same, 5.0) == "same"
    assert stop_state(*slower, 5.0) == "changed"
    assert stop_state(*unclear, 5.0) is None
    # Never before min_pairs, however clear.
    assert stop_state(slower[0][:3], slower[1][:3], 5.0) is None


def test_adaptive_stop_reads_the_gates_thresholds_and_worker_quantile() -> None:
    from dataclasses import replace

    from gate_helpers import record

    from bench.gate.paired import AdaptiveStop
    from bench.gate.thresholds import parse_thresholds
    from bench.suite.spec import Case

    def worker(ms: float, k: int) -> object:
        # Mostly clean samples near `ms`, a few hit by interference (slower, never faster).
        samples = [ms * (1 + 0.001 * i) for i in range(18)] + [ms * 3, ms * 4]
        return replace(record("mlp", samples), repeat=k)

    case = Case(model="mlp", batch_size=1, suite="s")
    base = [worker(1.0, k) for k in range(6)]
    slower = [worker(1.2, k) for k in range(6)]
    rule = AdaptiveStop()
    assert rule(case, base, slower) == "changed"
    assert rule(case, base, base) == "same"
    # A 25% threshold for this case: a 20% change lies inside it.
    loose = AdaptiveStop(thresholds=parse_thresholds(f"{case.name}:median_ms=25%"))
    assert loose(case, base, slower) == "same"
    off = AdaptiveStop(thresholds=parse_thresholds("median_ms=off"))
    assert off(case, base, slower) == "same"
    with pytest.raises(Exception, match="percentile"):
        AdaptiveStop(quantile=120)
