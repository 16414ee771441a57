"""Rank statistics behind the gate: exact U distribution, Hodges–Lehmann interval."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.gate import significance
from bench.gate.significance import (
    hodges_lehmann,
    interval_rank,
    kth_difference,
    shift_interval,
    shift_test,
    u_null_pmf,
)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (3, 2), (4, 4), (2, 6)])
def test_exact_u_distribution_matches_enumeration(n, m):
    counts = np.zeros(n * m + 1)
    for first in itertools.combinations(range(n + m), n):  # ranks of the first sample
        u = sum(r - i for i, r in enumerate(first))  # second-sample values below each
        counts[u] += 1
    assert u_null_pmf(n, m) == pytest.approx(counts / math.comb(n + m, n))


def test_exact_u_distribution_keeps_both_tails_at_larger_sizes():
    """At 30 against 50 the tails are 1e-22 of the mass: the recursion over one sample's
    values (the definition) and the Gaussian-binomial rows agree at both ends."""
    n, m = 30, 50
    table = [np.zeros(n * m + 1) for _ in range(m + 1)]
    for j in range(m + 1):
        table[j][0] = 1.0
    for _ in range(n):  # W(u; i, j) = W(u - j; i - 1, j) + W(u; i, j - 1)
        new = [np.zeros(n * m + 1) for _ in range(m + 1)]
        new[0][0] = 1.0
        for j in range(1, m + 1):
            new[j] = new[j - 1].copy()
            new[j][j:] += table[j][: n * m + 1 - j]
        table = new
    expected = table[m] / table[m].sum()
    assert u_null_pmf(n, m) == pytest.approx(expected, rel=1e-9)


def test_interval_ranks_match_published_tables():
    # Hollander & Wolfe, Table A.6 (C_alpha for a 95% interval): n = m = 5 -> 3; 10 -> 24.
    assert interval_rank(5, 5, 0.95) == 3
    assert interval_rank(10, 10, 0.95) == 24
    assert interval_rank(2, 2, 0.95) is None  # four samples cannot give 95%


def test_normal_approximation_agrees_with_exact_at_the_switch(monkeypatch):
    exact = interval_rank(40, 60, 0.95)
    monkeypatch.setattr(significance, "EXACT_LIMIT", 0)
    assert abs(interval_rank(40, 60, 0.95) - exact) <= 1


def test_kth_difference_by_bisection_equals_materialised(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = np.sort(rng.lognormal(size=700)), np.sort(rng.lognormal(size=500) + 0.2)
    ranks = [0, 1, 12345, 174_999, 349_999]
    exact = [kth_difference(x, y, k) for k in ranks]
    monkeypatch.setattr(significance, "MATERIALISE_LIMIT", 0)
    assert [kth_difference(x, y, k) for k in ranks] == pytest.approx(exact, rel=1e-12)


def test_hodges_lehmann_recovers_a_shift():
    rng = np.random.default_rng(1)
    x = rng.standard_t(3, 400)
    y = rng.standard_t(3, 300) + 0.5
    assert hodges_lehmann(x, y) == pytest.approx(0.5, abs=0.12)
    lo, hi = shift_interval(x, y)
    assert lo < 0.5 < hi


def test_interval_coverage_is_close_to_nominal():
    """Distribution-free: ~95% of intervals cover the true ratio, on skewed data."""
    rng = np.random.default_rng(2)
    covered = 0
    reps = 400
    for _ in range(reps):
        base = 10 * rng.lognormal(0, 0.1, 15)
        cand = 11 * rng.lognormal(0, 0.1, 25)
        test = shift_test(base, cand)
        covered += test.ratio_low <= 1.1 <= test.ratio_high
    assert 0.92 <= covered / reps <= 0.985


def test_p_values_agree_with_scipy_and_handle_constant_samples():
    base, cand = [1.0, 1.1, 1.2, 1.3, 1.4], [1.25, 1.35, 1.45, 1.55, 1.65]
    test = shift_test(base, cand)
    assert test.p_greater == pytest.approx(
        sps.mannwhitneyu(cand, base, alternative="greater").pvalue)
    assert test.p_less == pytest.approx(sps.mannwhitneyu(cand, base, alternative="less").pvalue)
    flat = shift_test([2.0] * 6, [2.0] * 9)
    assert flat.p_greater == flat.p_less == 1.0 and flat.ratio == 1.0
    zero = shift_test([0.0] * 6, [1.0] * 6)  # a fake clock: no log scale, no interval
    assert zero.ratio is None and zero.p_greater < 0.01
