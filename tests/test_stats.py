"""Statistics of raw samples, checked against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.stats import (
    NOISE_WARNING_RATIO,
    median_ci,
    median_ci_ranks,
    relative_ci_halfwidth,
    summarize,
)


@pytest.mark.parametrize(("n", "ranks"), [(10, (1, 8)), (20, (5, 14)), (100, (39, 60))])
def test_median_ci_ranks_match_binomial_tables(n, ranks):
    assert median_ci_ranks(n, 0.95) == ranks


@pytest.mark.parametrize("n", [6, 10, 25, 101, 1000])
def test_median_ci_coverage_is_at_least_the_confidence(n):
    lo, _ = median_ci_ranks(n, 0.95)
    # [x(lo+1), x(hi+1)] (1-based) covers the median unless fewer than lo+1 samples fall
    # below it, or fewer than n-hi fall above it.
    coverage = 1 - 2 * sps.binom.cdf(lo, n, 0.5)
    assert coverage >= 0.95
    # and the next narrower interval would not be
    assert 1 - 2 * sps.binom.cdf(lo + 1, n, 0.5) < 0.95


def test_median_ci_below_six_samples_is_the_full_range():
    assert median_ci([5.0, 1.0, 3.0], 0.95) == (1.0, 5.0)


def test_relative_halfwidth_of_identical_samples_is_zero():
    assert relative_ci_halfwidth([2.0] * 30) == 0.0


def test_median_ci_empirical_coverage():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        sample = rng.lognormal(0.0, 0.5, size=30)  # true median exp(0) = 1
        lo, hi = median_ci(sample, 0.95)
        hits += lo <= 1.0 <= hi
    assert 0.95 <= hits / 2000 <= 0.995


def test_summarize_known_values():
    samples_ns = [float(v) * 1e6 for v in range(1, 101)]  # 1..100 ms
    s = summarize(samples_ns, items_per_iter=10)
    assert s.n == 100
    assert s.median_ms == pytest.approx(50.5)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.min_ms == 1 and s.max_ms == 100
    assert s.q1_ms == pytest.approx(25.75) and s.q3_ms == pytest.approx(75.25)
    assert s.iqr_ms == pytest.approx(49.5)
    assert s.p90_ms == pytest.approx(90.1) and s.p99_ms == pytest.approx(99.01)
    assert s.std_ms == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert (s.ci_low_ms, s.ci_high_ms) == (40.0, 61.0)
    assert s.throughput_items_s == pytest.approx(10 / 0.0505)
    assert s.noise_warning  # IQR/median ≈ 98%


def test_noise_warning_threshold():
    quiet = [100.0] * 10 + [100.0 + i for i in range(10)]
    assert not summarize(quiet).noise_warning
    spread = np.linspace(90, 110 + 200 * NOISE_WARNING_RATIO, 41)
    assert summarize(spread).noise >= NOISE_WARNING_RATIO and summarize(spread).noise_warning


def test_summarize_refuses_empty():
    with pytest.raises(ValueError):
        summarize([])


def test_single_sample_has_zero_spread():
    s = summarize([1e6])
    assert s.std_ms == 0.0 and s.median_ms == 1.0 and not math.isnan(s.ci_rel)
