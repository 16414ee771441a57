"""The gate's verdicts on synthetic samples: effect and evidence, correction, tolerances."""

from __future__ import annotations

import numpy as np
import pytest
from gate_helpers import ENV, lognormal, record, write_run

from bench.errors import CompareError
from bench.gate.compare import (
    FRAME_COLUMNS,
    CompareOptions,
    EnvMismatch,
    compare_records,
    compare_runs,
)


def timing_verdict(base, cand, **options):
    comparison = compare_records([record("c", base)], [record("c", cand)],
                                 CompareOptions(**options))
    (row,) = [v for v in comparison.verdicts if v.metric == "median_ms"]
    return row


def test_clear_regression():
    row = timing_verdict(lognormal(10, 100, seed=1), lognormal(12, 100, seed=2))
    assert row.verdict == "regression"
    assert row.delta_pct == pytest.approx(20, abs=1.5)
    assert row.ci_low_pct < 20 < row.ci_high_pct and row.ci_low_pct > 15
    assert row.p_adjusted < 1e-10 and row.n_baseline == row.n_candidate == 100


def test_clear_improvement():
    row = timing_verdict(lognormal(10, 100, seed=1), lognormal(8, 100, seed=2))
    assert row.verdict == "improvement"
    assert row.delta_pct == pytest.approx(-20, abs=1.5)
    assert row.ci_high_pct < -15


def test_noise_only_is_same():
    row = timing_verdict(lognormal(10, 60, seed=1), lognormal(10, 60, seed=2))
    assert row.verdict == "same"
    assert -5 < row.ci_low_pct < row.ci_high_pct < 5
    assert row.p_value > 0.01


def test_small_significant_shift_below_threshold_is_same():
    row = timing_verdict(lognormal(10, 200, sigma=0.005, seed=1),
                         lognormal(10.2, 200, sigma=0.005, seed=2))
    assert row.p_value < 1e-10 and row.delta_pct == pytest.approx(2, abs=0.3)
    assert row.verdict == "same"


def test_large_noise_is_inconclusive_not_regression():
    # 8% slower in the medians, but samples spread over ±40%: no evidence.
    row = timing_verdict(lognormal(10, 12, sigma=0.4, seed=3),
                         [s * 1.08 for s in lognormal(10, 12, sigma=0.4, seed=3)][::-1][:11])
    assert row.verdict == "inconclusive"
    assert "not significant" in row.note or "reaches past" in row.note


def test_too_few_samples_is_inconclusive_never_regression():
    row = timing_verdict([10.0, 10.1, 10.2], [20.0, 20.1, 20.2])  # twice as slow, n = 3
    assert row.verdict == "inconclusive" and row.p_value is None
    assert "too few samples (3 baseline, 3 candidate; need 5 a side)" in row.note
    assert row.delta_pct == pytest.approx(99, abs=1)
    # Lowering the floor lets the test speak, but 3 against 3 cannot reach p < 0.05 even
    # fully separated (p = 1/20); 4 against 4 can (1/70).
    assert timing_verdict([10.0, 10.1, 10.2], [20.0, 20.1, 20.2],
                          min_samples=3).verdict == "inconclusive"
    assert timing_verdict([10.0, 10.1, 10.2, 10.3], [20.0, 20.1, 20.2, 20.3],
                          min_samples=4).verdict == "regression"


def test_unequal_n_real_slowdown_is_flagged():
    row = timing_verdict(lognormal(10, 400, seed=1), lognormal(11.5, 12, seed=2))
    assert (row.n_baseline, row.n_candidate) == (400, 12)
    assert row.verdict == "regression" and row.ci_low_pct > 10


def test_unequal_n_false_positive_rate_is_controlled():
    """No shift, very unequal n, skewed noise: the uncorrected one-sided test must reject at
    about its level (a t-test with pooled variance does not), and so never pass a 0% gate
    more often than alpha."""
    flagged = 0
    runs = 300
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        base = list(10 * np.exp(rng.gamma(1.0, 0.05, 300)))
        cand = list(10 * np.exp(rng.gamma(1.0, 0.05, 8)))
        flagged += timing_verdict(base, cand, thresholds=_t("0%")).verdict == "regression"
    assert flagged / runs < 0.08  # alpha = 0.05; the binomial 99.9% bound is about 0.09
    # ... and the same sizes find a real 10% shift nearly always.
    found = sum(timing_verdict(lognormal(10, 300, sigma=0.05, seed=s),
                               lognormal(11, 8, sigma=0.05, seed=1000 + s)).verdict
                == "regression" for s in range(50))
    assert found >= 45


def _t(spec):
    from bench.gate.thresholds import parse_thresholds

    return parse_thresholds(spec)


def _borderline():
    """A case whose raw one-sided p lies between 0.05/40 and 0.05: significant alone."""
    base = [10.0 + 0.2 * k for k in range(8)]
    cand = [10.7 + 0.2 * k for k in range(8)]  # medians 6.5% apart, ranks overlapping
    return base, cand


def test_correction_across_many_cases():
    base, cand = _borderline()
    alone = compare_records([record("hot", base)], [record("hot", cand)])
    (row,) = alone.verdicts
    assert 0.05 / 40 < row.p_value < 0.05, "precondition: borderline p-value"
    assert row.verdict == "regression" and row.p_adjusted == row.p_value

    quiet = [(record(f"q{i}", lognormal(5, 30, seed=i)), record(f"q{i}", lognormal(5, 30,
                                                                                  seed=99 + i)))
             for i in range(39)]
    together = compare_records([record("hot", base), *(b for b, _ in quiet)],
                               [record("hot", cand), *(c for _, c in quiet)])
    hot = together.for_case("id-hot")[0]
    assert hot.p_value == row.p_value
    # Holm multiplies the k-th smallest of 40 p-values by 41 - k (k = 1 or 2 here).
    assert 39 * row.p_value <= hot.p_adjusted <= 40 * row.p_value
    assert hot.verdict == "inconclusive" and not together.has_regression
    assert "not significant (p_adj" in hot.note


def test_holm_and_bh_differ_when_many_cases_really_changed():
    base, cand = _borderline()
    many_b = [record(f"c{i}", base) for i in range(20)]
    many_c = [record(f"c{i}", cand) for i in range(20)]
    holm = compare_records(many_b, many_c, CompareOptions(correction="holm"))
    bh = compare_records(many_b, many_c, CompareOptions(correction="bh"))
    assert holm.correction == "holm" and holm.counts()["regression"] == 0
    assert bh.correction == "bh" and bh.counts()["regression"] == 20


def test_adjust_pvalues_matches_references():
    from scipy.stats import false_discovery_control

    from bench.gate.significance import adjust_pvalues

    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    assert adjust_pvalues(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.5])
    assert adjust_pvalues(p, "bh") == pytest.approx(list(false_discovery_control(p)))
    with pytest.raises(ValueError, match="unknown correction"):
        adjust_pvalues(p, "bonferroni")


def test_thresholds_per_metric_and_per_case_pattern():
    base = [record("cnn-a", lognormal(10, 50, seed=1)), record("mlp-a", lognormal(10, 50, seed=3))]
    cand = [record("cnn-a", lognormal(10.8, 50, seed=2)),
            record("mlp-a", lognormal(10.8, 50, seed=4))]
    default = compare_records(base, cand)
    assert {v.name: v.verdict for v in default.verdicts} == {"cnn-a": "regression",
                                                             "mlp-a": "regression"}
    loose = compare_records(base, cand, CompareOptions.from_specs("cnn-*:median_ms=10%"))
    verdicts = {v.name: (v.verdict, v.threshold) for v in loose.verdicts}
    assert verdicts == {"cnn-a": ("same", 10.0), "mlp-a": ("regression", 5.0)}
    later_wins = compare_records(base, cand, CompareOptions.from_specs(["20%", "mlp-*:5%"]))
    assert {v.name: v.threshold for v in later_wins.verdicts} == {"cnn-a": 20.0, "mlp-a": 5.0}
    off = compare_records(base, cand, CompareOptions.from_specs("timing=off"))
    assert off.verdicts == ()


@pytest.mark.parametrize(("spec", "message"), [
    ("5", 'write "5%"'),
    ("median_ms=abc", "is not a number"),
    ("medain_ms=5%", 'did you mean "median_ms"'),
    ("fidelity_rel_l2=1%", "absolute tolerance"),
    (":5%", "empty case pattern"),
])
def test_bad_threshold_specs_say_how_to_fix(spec, message):
    with pytest.raises(CompareError, match=message):
        CompareOptions.from_specs(spec)


def test_deterministic_metrics_compare_exactly():
    same = {"params_total": 1000, "flops_per_item": 2.0e6, "weight_bytes": 4000}
    changed = {"params_total": 1001, "flops_per_item": 1.5e6, "weight_bytes": 4000}
    comparison = compare_records([record("c", lognormal(10, 30), metrics=same)],
                                 [record("c", lognormal(10, 30, seed=5), metrics=changed)])
    rows = {v.metric: v for v in comparison.verdicts}
    assert rows["params_total"].verdict == "regression"  # one parameter more is a change
    assert rows["params_total"].delta_pct == pytest.approx(0.1)
    assert rows["flops_per_item"].verdict == "improvement"
    assert rows["weight_bytes"].verdict == "same"
    assert "params_nonzero" not in rows  # absent on both sides: not compared
    tolerant = compare_records([record("c", lognormal(10, 30), metrics=same)],
                               [record("c", lognormal(10, 30, seed=5), metrics=changed)],
                               CompareOptions.from_specs("params_total=1%,flops_per_item=off"))
    rows = {v.metric: v for v in tolerant.verdicts}
    assert rows["params_total"].verdict == "same" and "flops_per_item" not in rows


def test_memory_peaks_with_a_tolerance():
    def peak(value):
        return {"peak_rss_bytes": value, "cuda_max_allocated_timed_bytes": 1 << 20}

    def rows(before, after, spec=()):
        comparison = compare_records([record("c", lognormal(10, 30), metrics=peak(before))],
                                     [record("c", lognormal(10, 30, seed=5), metrics=peak(after))],
                                     CompareOptions.from_specs(spec))
        return {v.metric: v.verdict for v in comparison.verdicts}

    assert rows(100e6, 108e6)["peak_rss_bytes"] == "same"  # default 10%
    assert rows(100e6, 115e6)["peak_rss_bytes"] == "regression"
    assert rows(100e6, 80e6)["peak_rss_bytes"] == "improvement"
    assert rows(100e6, 115e6, "memory=20%")["peak_rss_bytes"] == "same"
    assert rows(100e6, 100e6)["cuda_max_allocated_timed_bytes"] == "same"


def test_rss_measured_inline_is_the_runners_and_not_gated():
    from dataclasses import replace

    metrics = {"peak_rss_bytes": 100e6, "cuda_max_allocated_timed_bytes": 1 << 20}
    grown = {"peak_rss_bytes": 150e6, "cuda_max_allocated_timed_bytes": 2 << 20}
    base = record("c", lognormal(10, 30), metrics=metrics)
    cand = replace(record("c", lognormal(10, 30, seed=5), metrics=grown),
                   info={"isolation": "inline"})
    verdicts = {v.metric: v.verdict for v in compare_records([base], [cand]).verdicts}
    assert "peak_rss_bytes" not in verdicts
    assert verdicts["cuda_max_allocated_timed_bytes"] == "regression"
    isolated = {v.metric: v.verdict for v in compare_records(
        [base], [replace(cand, info={})]).verdicts}
    assert isolated["peak_rss_bytes"] == "regression"


def test_fidelity_with_an_absolute_tolerance():
    def verdicts(before, after, spec=()):
        comparison = compare_records([record("c", lognormal(10, 30), metrics=before)],
                                     [record("c", lognormal(10, 30, seed=5), metrics=after)],
                                     CompareOptions.from_specs(spec))
        return {v.metric: v.verdict for v in comparison.verdicts if v.kind == "fidelity"}

    base = {"fidelity_rel_l2": 0.002, "fidelity_cosine": 0.99999, "fidelity_top1_agreement": 1.0}
    assert verdicts(base, {"fidelity_rel_l2": 0.0025, "fidelity_cosine": 0.99995,
                           "fidelity_top1_agreement": 0.995}) == dict.fromkeys(base, "same")
    worse = verdicts(base, {"fidelity_rel_l2": 0.02, "fidelity_cosine": 0.99,
                            "fidelity_top1_agreement": 0.9})
    assert worse == dict.fromkeys(base, "regression")  # cosine and top-1: higher is better
    assert verdicts(base, {**base, "fidelity_rel_l2": 0.02},
                    "fidelity_rel_l2=0.05")["fidelity_rel_l2"] == "same"


def test_status_changes_and_cases_on_one_side():
    base = [record("a", lognormal(10, 20)), record("b", status="failed", reason="boom"),
            record("u", status="unsupported", reason="no GPU"), record("gone", lognormal(1, 20))]
    cand = [record("a", status="oom", reason="CUDA out of memory"),
            record("b", lognormal(10, 20)), record("u", status="unsupported", reason="no GPU"),
            record("new", lognormal(1, 20))]
    comparison = compare_records(base, cand)
    rows = {v.name: v for v in comparison.verdicts}
    assert rows["a"].verdict == "regression" and rows["a"].note == "ok → oom: CUDA out of memory"
    assert rows["b"].verdict == "improvement" and rows["u"].verdict == "same"
    assert comparison.only_in_baseline == ("gone",)
    assert comparison.only_in_candidate == ("new",)
    assert comparison.has_regression


def test_frame_has_the_agreed_columns():
    comparison = compare_records([record("c", lognormal(10, 30), metrics={"params_total": 3})],
                                 [record("c", lognormal(12, 30), metrics={"params_total": 3})])
    frame = comparison.to_frame()
    assert list(frame.columns[:len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)
    assert list(frame["metric"]) == ["median_ms", "params_total"]
    assert list(frame["verdict"]) == ["regression", "same"]
    data = comparison.to_dict()
    assert data["counts"] == {"regression": 1, "improvement": 0, "same": 1, "inconclusive": 0}
    assert data["correction"] == "holm" and data["regression"] is True


def test_environment_mismatch_is_refused_unless_allowed(tmp_path):
    base = write_run(tmp_path / "base", [record("c", lognormal(10, 30))])
    other_cpu = {**ENV, "cpu_model": "Other CPU", "threads": 4, "hostname": "b"}
    cand = write_run(tmp_path / "cand", [record("c", lognormal(10, 30, seed=2))], env=other_cpu)
    with pytest.raises(EnvMismatch) as caught:
        compare_runs(base, cand)
    message = str(caught.value)
    assert "cpu_model: 'Test CPU 9000' (baseline) vs 'Other CPU' (candidate)" in message
    assert "threads: 2 (baseline) vs 4 (candidate)" in message and "--allow-env-mismatch" in message
    allowed = compare_runs(base, cand, CompareOptions(allow_env_mismatch=True))
    assert set(allowed.env_mismatch) == {"cpu_model", "threads"} and allowed.env_checked
    # The hostname is not part of the fingerprint: another identical machine compares.
    same_kind = write_run(tmp_path / "twin", [record("c", lognormal(10, 30, seed=3))],
                          env={**ENV, "hostname": "twin"})
    result = compare_runs(base, same_kind)
    assert result.env_mismatch is None and result.env_checked
    assert [v.verdict for v in result.verdicts] == ["same"]


def test_records_without_environment_are_compared_unchecked():
    comparison = compare_runs([record("c", lognormal(10, 30))],
                              [record("c", lognormal(10, 30, seed=2))])
    assert comparison.env_checked is False and comparison.env_mismatch is None


@pytest.mark.parametrize("kwargs", [{"alpha": 1.5}, {"correction": "bonferroni"},
                                    {"min_samples": 1}])
def test_bad_options(kwargs):
    with pytest.raises(CompareError):
        CompareOptions(**kwargs)
