"""Repeats: a case measured by several workers, pooled on reading, tested across repeats."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from gate_helpers import lognormal, record

from bench.engine.rounds import Rounds
from bench.engine.runner import RunOptions, RunSession, run
from bench.gate.compare import compare_records
from bench.gate.significance import repeat_shift_test
from bench.results.repeats import merge_repeats
from bench.suite import loader as suite_file


def repeated(name: str, levels_ms, *, n: int = 200, sigma: float = 0.01, seed: int = 0,
             run_id: str = "run", status: str = "ok"):
    """One record per repeat; each repeat's samples sit tightly around its own level, as when
    a machine's speed drifts between workers but holds still within one."""
    return [replace(record(name, lognormal(level, n, sigma=sigma, seed=seed + i),
                           run_id=run_id, status=status), repeat=i)
            for i, level in enumerate(levels_ms)]


# ---- pooling --------------------------------------------------------------------------------
def test_merge_pools_samples_and_keeps_each_repeats_median():
    parts = repeated("a", [1.0, 2.0, 3.0], n=11)
    parts[1] = replace(parts[1], metrics={"peak_rss_bytes": 900, "params_total": 7})
    parts[0] = replace(parts[0], metrics={"peak_rss_bytes": 500, "params_total": 7})
    (merged,) = merge_repeats(parts)
    assert len(merged.samples_ns) == 33
    medians = np.asarray(merged.timing["repeat_medians_ns"]) / 1e6
    assert medians == pytest.approx([1.0, 2.0, 3.0], rel=0.02)
    assert merged.metrics["peak_rss_bytes"] == 900, "a case's peak is its highest repeat's"
    assert merged.metrics["params_total"] == 7
    assert [r["repeat"] for r in merged.info["repeats"]] == [0, 1, 2]


def test_a_failed_repeat_fails_the_case():
    parts = repeated("a", [1.0, 1.0, 1.0])
    parts[2] = replace(parts[2], status="crashed", reason="worker died from SIGSEGV",
                       timing=None)
    (merged,) = merge_repeats(parts)
    assert merged.status == "crashed" and "SIGSEGV" in merged.reason
    assert len(merged.timing["repeat_medians_ns"]) == 2, "the ok repeats' samples stay"


def test_cases_and_runs_are_not_mixed():
    out = merge_repeats([*repeated("a", [1, 1]), *repeated("b", [2, 2]),
                         *repeated("a", [3, 3], run_id="other")])
    assert [(r.run_id, r.name, len(r.timing["repeat_medians_ns"])) for r in out] == [
        ("run", "a", 2), ("run", "b", 2), ("other", "a", 2)]


# ---- the test across repeats ----------------------------------------------------------------
def test_repeat_test_finds_a_clear_shift_and_its_interval():
    base = [1.00, 1.02, 0.99, 1.01, 0.98]
    slower = [x * 1.20 for x in [1.01, 0.99, 1.00, 1.02, 0.98]]
    test = repeat_shift_test(base, slower)
    assert test.p_greater < 1e-4 and test.p_less > 0.99
    assert test.ratio == pytest.approx(1.20, rel=0.02)
    assert test.ratio_low < 1.20 < test.ratio_high


def test_repeat_test_is_welchs_t_on_the_logs():
    """The same p-values and interval as scipy.stats' Welch test (it computes Student's t
    through scipy.special directly, to keep scipy.stats out of the CLI's start-up)."""
    from scipy import stats as sps

    rng = np.random.default_rng(5)
    for n_b, n_c in ((2, 2), (3, 5), (5, 5), (9, 4)):
        base, cand = np.exp(rng.normal(0, 0.05, n_b)), np.exp(rng.normal(0.03, 0.08, n_c))
        t = repeat_shift_test(base, cand, confidence=0.9)
        lb, lc = np.log(base), np.log(cand)
        ref = sps.ttest_ind(lc, lb, equal_var=False, alternative="greater")
        assert t.p_greater == pytest.approx(ref.pvalue, rel=1e-12)
        assert t.p_less == pytest.approx(1 - ref.pvalue, rel=1e-9)
        low, high = sps.ttest_ind(lc, lb, equal_var=False).confidence_interval(0.9)
        assert (math.log(t.ratio_low), math.log(t.ratio_high)) == pytest.approx((low, high),
                                                                                rel=1e-9)


def test_repeat_test_interval_covers_the_true_ratio():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(2000):
        base = np.exp(rng.normal(0, 0.1, 5))
        cand = 1.1 * np.exp(rng.normal(0, 0.1, 5))
        t = repeat_shift_test(base, cand)
        hits += t.ratio_low <= 1.1 <= t.ratio_high
    assert 0.93 <= hits / 2000 <= 0.97


def test_identical_repeats_are_handled():
    t = repeat_shift_test([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    assert t.p_greater == 1.0 and t.p_less == 1.0 and t.ratio == 1.0


# ---- the gate on drift ----------------------------------------------------------------------
def test_drift_between_workers_is_not_a_regression_with_repeats():
    """Each worker sees its own machine speed; the code did not change. Tested on the
    samples (one worker a side), the drift looks like a change; tested across repeats,
    it is not a regression."""
    baseline = repeated("a", [1.00, 1.30, 0.90, 1.10, 1.20], seed=1)
    candidate = repeated("a", [1.35, 1.05, 1.25, 0.95, 1.30], seed=11)
    (verdict,) = [v for v in compare_records(baseline, candidate).verdicts
                  if v.metric == "median_ms"]
    assert verdict.test == "repeats" and verdict.n_baseline == 5
    assert verdict.verdict != "regression"

    # one worker a side: the baseline's caught the machine fast, the candidate's slow
    one_worker = compare_records([replace(baseline[2], repeat=0)],
                                 [replace(candidate[0], repeat=0)])
    (naive,) = [v for v in one_worker.verdicts if v.metric == "median_ms"]
    assert naive.test == "samples" and naive.verdict == "regression", \
        "the same drift, seen by one worker a side, is (wrongly) significant"


def test_a_real_slowdown_is_still_caught_across_repeats():
    baseline = repeated("a", [1.00, 1.03, 0.98, 1.01, 0.99], seed=1)
    candidate = repeated("a", [1.16, 1.14, 1.18, 1.15, 1.17], seed=21)
    (verdict,) = [v for v in compare_records(baseline, candidate).verdicts
                  if v.metric == "median_ms"]
    assert verdict.test == "repeats" and verdict.verdict == "regression"
    assert verdict.delta_pct == pytest.approx(16, abs=2)


# ---- the runner -----------------------------------------------------------------------------
def planned(cases, run_id="run"):
    """Every (case, repeat) the rounds of a run visit, each worker taken as done ok."""
    rounds, measured, order = Rounds(cases, run_id), {}, []
    while (this := rounds.next(measured)).visits:
        for case, repeat in this.visits:
            order.append((case, repeat))
            measured.setdefault(case.case_id, []).append(
                replace(record(case.name, lognormal(1.0, 20, seed=repeat)), repeat=repeat))
    return order


def test_repeats_run_in_rounds_and_resume_by_repeat(write_suite, tmp_path):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8, 16]\n'
                       'settings = { repeats = 3 }\n')
    suite = suite_file.load(path)
    out = tmp_path / "run"
    order = [(c.width, r) for c, r in planned(suite.cases)]
    assert order[:2] == [(8, 0), (16, 0)], "the first round follows the suite"
    assert sorted(order[2:4]) == [(8, 1), (16, 1)] and sorted(order[4:]) == [(8, 2), (16, 2)]
    assert planned(suite.cases) == planned(suite.cases), "seeded by the run"
    session = RunSession([suite], suite.cases, RunOptions(out=out))
    session.run_case(suite.cases[0], 0)
    session.close("interrupted")

    result = run([suite], suite.cases, RunOptions(out=out, resume=True))
    assert result.skipped == 1 and len(result.records) == 5
    import bench

    frame = bench.load(out)
    assert list(frame.repeats) == [3, 3]
    assert all(len(m) == 3 for m in frame.repeat_medians_ms)


def test_later_rounds_change_neighbours(write_suite):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8, 16, 24, 32, 40, 48]\n'
                       'settings = { repeats = 3 }\n')
    suite = suite_file.load(path)
    order = [c.width for c, _ in planned(suite.cases)]
    rounds = [order[0:6], order[6:12], order[12:18]]
    assert rounds[0] == [8, 16, 24, 32, 40, 48]
    assert all(sorted(r) == rounds[0] for r in rounds[1:])
    assert rounds[1:] != [rounds[0], rounds[0]], "no later round was shuffled"
