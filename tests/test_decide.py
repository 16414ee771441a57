"""`best`: confidence-aware verdicts, ties, why-not, Pareto set, boundaries, twins, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from gate_helpers import lognormal, write_run
from scipy import stats as sps

from bench.cli import main
from bench.decide import DecideError, answer, best, parse_constraint
from bench.results import Record
from bench.stats import median_ci_ranks, quantile_ci, quantile_ci_ranks, samples_to_bound


# ---- statistics -----------------------------------------------------------------------------
def test_quantile_ranks_match_the_median_ranks() -> None:
    for n in (6, 7, 10, 11, 50, 99, 100, 1001):
        lo, hi = quantile_ci_ranks(n, 0.5)
        assert (int(lo[0]), int(hi[0])) == median_ci_ranks(n)


def test_p99_interval_covers_the_true_p99() -> None:
    rng = np.random.default_rng(1)
    true_p99 = float(sps.expon.ppf(0.99))
    hits = sum(lo <= true_p99 <= hi for lo, hi in
               (quantile_ci(rng.exponential(size=1000), 0.99) for _ in range(800)))
    assert 0.93 <= hits / 800 <= 0.995


def test_p99_of_few_samples_has_no_upper_bound() -> None:
    low, high = quantile_ci(np.arange(50.0), 0.99)
    assert high == np.inf and low < 49


def test_samples_to_bound_is_the_first_count_that_settles() -> None:
    share = 0.56  # 56% of samples at or below the limit; the median's bound needs more
    total = samples_to_bound(40, 0.5, share)
    assert total is not None and total > 40
    hi = sps.binom.ppf(0.975, np.array([total - 1, total]), 0.5)
    assert hi[1] + 1 <= share * total
    assert hi[0] + 1 > share * (total - 1)
    assert samples_to_bound(40, 0.5, 0.5) is None  # the limit sits on the median itself


# ---- helpers --------------------------------------------------------------------------------
def rec(name: str, samples_ms: list[float] | None, *, run_id: str = "run", status: str = "ok",
        **params: Any) -> Record:
    metrics = params.pop("metrics", {})
    base = {"model": "mlp", "batch_size": 1, "precision": "fp32", "device": "cpu",
            "prune": {"method": "none", "ratio": 0.0}}
    timing = {"samples_ns": [s * 1e6 for s in samples_ms]} if samples_ms else None
    return Record(run_id=run_id, case_id=f"id-{name}", name=name, suite="s",
                  params={**base, **params}, settings={"confidence": 0.95}, status=status,
                  timing=timing, metrics=metrics)


def frame(tmp_path: Path, records: list[Record]) -> pd.DataFrame:
    from bench.results import load

    return load(write_run(tmp_path / "run", records))


# ---- verdicts -------------------------------------------------------------------------------
def test_uncertain_meets_and_fails_with_the_samples_that_would_settle(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    clear = list(3.0 * np.exp(rng.normal(0, 0.02, 200)))          # far under 5 ms
    marginal = list(4.8 * np.exp(rng.normal(0, 0.15, 15)))        # median < 5, interval > 5
    over = list(6.0 * np.exp(rng.normal(0, 0.02, 200)))           # 20% over
    df = frame(tmp_path, [rec("clear", clear, width=1), rec("marginal", marginal, width=2),
                          rec("over", over, width=3)])
    result = answer(df, "median_ms", ["median_ms<=5ms"])
    assert np.median(marginal) < 5 < result.uncertain.iloc[0]["median_ms_high"]
    assert list(result.ranking["name"]) == ["clear"]
    assert list(result.uncertain["name"]) == ["marginal"]
    assert result.uncertain.iloc[0]["extra_samples"] > 0
    assert "more samples would settle it" in result.uncertain.iloc[0]["failed"]
    why = result.why_not.set_index("name").loc["over", "failed"]
    assert "% over the limit median_ms<=5ms" in why
    pct = float(why.split("%")[0].split()[-1])
    assert pct == pytest.approx((np.median(over) - 5) / 5 * 100, rel=0.01)
    assert result.counts == {"cases": 3, "measured": 3, "not_measured": 0, "meets": 1,
                             "uncertain": 1, "fails": 1}


def test_more_samples_settle_an_uncertain_case(tmp_path: Path) -> None:
    """Measured again with the suggested count, a case whose median really is under the
    budget meets it with confidence."""
    draw = np.random.default_rng(5)
    few = list(4.7 * np.exp(draw.normal(0, 0.2, 12)))
    first = answer(frame(tmp_path, [rec("a", few)]), "median_ms", ["median_ms<=5"])
    assert first.uncertain["name"].tolist() == ["a"]
    total = 12 + int(first.uncertain.iloc[0]["extra_samples"])
    many = list(4.7 * np.exp(draw.normal(0, 0.2, total * 2)))
    again = answer(frame(tmp_path / "2", [rec("a", many)]), "median_ms", ["median_ms<=5"])
    assert again.ranking["name"].tolist() == ["a"]


def repeats(name: str, medians_ms: list[float], n: int = 100, **params: Any) -> list[Record]:
    """One record per repeat (worker), each with tight samples around its own median."""
    draw = np.random.default_rng(len(name))
    return [replace(rec(name, list(m * np.exp(draw.normal(0, 0.005, n))), **params), repeat=k)
            for k, m in enumerate(medians_ms)]


def test_the_spread_between_repeats_widens_the_medians_interval(tmp_path: Path) -> None:
    """Three workers at 4.0, 4.6 and 5.2 ms: their pooled samples put the median tightly
    near 4.6 ms, under a 5 ms budget; the workers disagree by ±13%, so the budget is not met
    with confidence, and the answer says more repeats, not more samples, would settle it."""
    df = frame(tmp_path, repeats("spread", [4.0, 4.6, 5.2], width=1)
               + repeats("steady", [4.6, 4.61, 4.59], width=2))
    result = answer(df, "median_ms", ["median_ms<=5ms"])
    assert result.ranking["name"].tolist() == ["steady"]
    (row,) = result.uncertain.to_dict("records")
    assert row["name"] == "spread" and row["median_ms"] < 5 < row["median_ms_high"]
    assert "more workers (raise max_repeats or max_time_s), not more samples" in row["failed"]
    logs = np.log([4.0, 4.6, 5.2])
    half = sps.t.ppf(0.975, 2) * logs.std(ddof=1) / np.sqrt(3)
    assert row["median_ms_high"] == pytest.approx(row["median_ms"] * np.exp(half), rel=0.01)
    assert any("interval is across each case's workers" in n for n in result.notes)


def test_cases_whose_workers_disagree_more_than_they_differ_are_tied(tmp_path: Path) -> None:
    """Pooled, 2.0 vs 2.06 ms with 0.5% noise is a clear difference; but each case's three
    workers scatter by ±8%, each round differently for the two, so their paired ratios
    cannot tell them apart."""
    df = frame(tmp_path, repeats("a", [1.85, 2.0, 2.16], width=1)
               + repeats("b", [2.23, 1.9, 2.06], width=2)
               + repeats("c", [3.0, 3.02, 2.98], width=3))
    ranking = best(df, "median_ms")
    assert ranking["name"].tolist() == ["a", "b", "c"]
    assert ranking["rank"].tolist() == [1, 1, 3]


def test_drift_shared_by_a_round_cancels_in_the_tie_test(tmp_path: Path) -> None:
    """The same ±8% scatter, but the machine's: both cases were slow in the same rounds. The
    ratio round by round is 1.03 each time, so b is slower, not tied — what pairing the
    workers of a round buys."""
    df = frame(tmp_path, repeats("a", [1.85, 2.0, 2.16], width=1)
               + repeats("b", [1.85 * 1.03, 2.0 * 1.031, 2.16 * 1.029], width=2))
    ranking = best(df, "median_ms")
    assert ranking["rank"].tolist() == [1, 2]


def test_point_metrics_meet_or_fail_on_their_value(tmp_path: Path) -> None:
    s = lognormal(2.0, 50)
    df = frame(tmp_path, [rec("small", s, width=1, metrics={"peak_rss_bytes": 2 ** 30}),
                          rec("big", s, width=2, metrics={"peak_rss_bytes": 3 * 2 ** 30})])
    result = answer(df, "median_ms", ["peak_rss_bytes<=2GiB"])
    assert result.ranking["name"].tolist() == ["small"]
    assert "50% over the limit" in result.why_not.iloc[0]["failed"]


def test_a_statistical_tie_is_called_a_tie(tmp_path: Path) -> None:
    df = frame(tmp_path, [rec("a", lognormal(2.0, 100, seed=1), width=1),
                          rec("b", lognormal(2.0, 100, seed=2), width=2),
                          rec("c", lognormal(3.0, 100, seed=3), width=3)])
    ranking = best(df, "median_ms")
    assert ranking["rank"].tolist() == [1, 1, 3]
    assert ranking["tied"].tolist() == [True, True, False]
    assert ranking.iloc[1]["tied_with"] == ranking.iloc[0]["name"]


def test_throughput_is_maximised_with_the_medians_interval_inverted(tmp_path: Path) -> None:
    df = frame(tmp_path, [rec("slow", lognormal(4.0, 60), width=1, batch_size=8),
                          rec("fast", lognormal(2.0, 60), width=2, batch_size=8)])
    ranking = best(df, "throughput", ["throughput>=1000/s"])
    assert ranking["name"].tolist() == ["fast", "slow"]
    row = ranking.iloc[0]
    assert row["throughput_items_s_low"] < row["throughput_items_s"] < \
        row["throughput_items_s_high"]
    assert row["throughput_items_s"] == pytest.approx(8e3 / np.median(lognormal(2.0, 60)))


# ---- parsing --------------------------------------------------------------------------------
def test_units_convert_to_the_metrics_own(tmp_path: Path) -> None:
    df = frame(tmp_path, [rec("a", [1.0] * 10, metrics={"peak_rss_bytes": 1,
                                                         "fidelity_top1_agreement": 1.0})])
    assert parse_constraint("peak_rss_bytes<=2GiB", df).limit == 2 * 2 ** 30
    assert parse_constraint("p99_ms <= 500us", df).limit == pytest.approx(0.5)
    assert parse_constraint("median_ms<2s", df).limit == 2000
    assert parse_constraint("top1>=99%", df).limit == pytest.approx(0.99)
    assert parse_constraint("fidelity_top1_agreement=>0.9", df).op == ">="


@pytest.mark.parametrize(("spec", "words"), [
    ("latency<=5", ["unknown constraint metric 'latency'", "median_ms", "p99_ms"]),
    ("energy_per_item_j<=1mJ", ["did not collect", "peak_rss_bytes"]),
    ("p99_ms<=5parsecs", ['unit "parsecs" does not parse', '"ms"']),
    ("peak_rss_bytes<=2 gib", ['unit "gib" does not parse', '"GiB"']),
    ("p99_ms is small", ["does not parse", "METRIC<=VALUE"]),
])
def test_bad_constraints_name_the_problem(tmp_path: Path, spec: str, words: list[str]) -> None:
    df = frame(tmp_path, [rec("a", [1.0] * 10, metrics={"peak_rss_bytes": 1})])
    with pytest.raises(DecideError) as err:
        answer(df, "median_ms", [spec])
    for word in words:
        assert word in str(err.value)


def test_unknown_objective(tmp_path: Path) -> None:
    df = frame(tmp_path, [rec("a", [1.0] * 10)])
    with pytest.raises(DecideError, match=r"objectives are .*throughput"):
        answer(df, "speed")


# ---- the whole picture ----------------------------------------------------------------------
def test_twin_speedup_sentence(tmp_path: Path) -> None:
    prune = {"method": "structured", "ratio": 0.25}
    df = frame(tmp_path, [
        rec("ref", lognormal(3.0, 80, seed=1), metrics={"fidelity_top1_agreement": 1.0}),
        rec("fast", lognormal(1.0, 80, seed=2), precision="bf16", prune=prune,
            metrics={"fidelity_top1_agreement": 0.995})])
    row = best(df, "median_ms").iloc[0]
    assert row["name"] == "fast" and row["twin"] == "ref"
    assert row["speedup_vs_twin"] == pytest.approx(3.0, rel=0.05)
    assert row["speedup_low"] < row["speedup_vs_twin"] < row["speedup_high"]
    assert row["vs_twin"].startswith("bf16 + structured 25% is 3")
    assert "faster" in row["vs_twin"] and "top-1 agreement 0.995" in row["vs_twin"]


def test_pareto_set_per_family(tmp_path: Path) -> None:
    def case(name: str, ms: float, agreement: float, model: str = "mlp") -> Record:
        return rec(name, lognormal(ms, 30), model=model, width=int(ms * 10),
                   metrics={"fidelity_top1_agreement": agreement})

    df = frame(tmp_path, [case("a", 1.0, 0.5), case("b", 2.0, 0.9), case("dominated", 3.0, 0.8),
                          case("c", 4.0, 1.0), case("other", 9.0, 0.1, model="cnn")])
    front = answer(df, "median_ms").pareto
    assert front[front["family"].str.startswith("mlp")]["name"].tolist() == ["a", "b", "c"]
    assert front[front["family"].str.startswith("cnn")]["name"].tolist() == ["other"]


def test_scaling_boundary_is_interpolated(tmp_path: Path) -> None:
    # latency = 0.01 ms · width at depth 4: 5 ms is crossed at width 500
    records = [rec(f"w{w}", lognormal(0.01 * w, 40, seed=w, sigma=0.001), depth=4, width=w)
               for w in (128, 256, 1024)]
    bounds = answer(frame(tmp_path, records), "median_ms", ["median_ms<=5"]).boundaries
    assert len(bounds) == 1
    row = bounds.iloc[0]
    assert row["boundary"] == pytest.approx(500, rel=0.01)
    assert row["kind"] == "interpolated" and "width ≤ 500" in row["statement"]
    assert "interpolated" in row["statement"] and "at depth 4" in row["statement"]


def test_failed_cases_are_counted_not_ranked(tmp_path: Path) -> None:
    df = frame(tmp_path, [rec("a", lognormal(1.0, 30)), rec("broken", None, status="failed")])
    result = answer(df, "median_ms")
    assert result.ranking["name"].tolist() == ["a"]
    assert result.counts["not_measured"] == 1


# ---- command line ---------------------------------------------------------------------------
def test_cli_answers_and_exits_by_outcome(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", [rec("a", lognormal(2.0, 60), width=1),
                                       rec("b", lognormal(8.0, 60), width=2)])
    assert main(["best", str(run), "-c", "median_ms<=5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["ranking"]] == ["a"]
    assert "over the limit" in data["why_not"][0]["failed"]
    assert main(["best", str(run), "-c", "median_ms<=1", "--markdown"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("### Recommendation") and "No configuration meets" in out
    assert main(["best", str(run), "-c", "median_ms<=5"]) == 0
    assert "Best: a" in capsys.readouterr().out


def test_cli_chooses_among_the_cases_a_filter_keeps(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`--filter` keeps rows as `archbench run --filter` keeps cases: KEY=VALUE on a parameter
    (numbers as numbers), a name substring or glob; keeping nothing is exit 2."""
    run = write_run(tmp_path / "run", [rec("fast-mlp", lognormal(2.0, 60), width=256),
                                       rec("mid-mlp", lognormal(3.0, 60), width=512),
                                       rec("slow-cnn", lognormal(4.0, 60), model="cnn",
                                           width=256)])
    picks = {}
    for pattern in ("model=cnn", "width=512", "*-cnn", "mid", "prune=none"):
        assert main(["best", str(run), "--filter", pattern, "--json"]) == 0, pattern
        picks[pattern] = json.loads(capsys.readouterr().out)["ranking"][0]["name"]
    assert picks == {"model=cnn": "slow-cnn", "width=512": "mid-mlp", "*-cnn": "slow-cnn",
                     "mid": "mid-mlp", "prune=none": "fast-mlp"}
    assert main(["best", str(run), "-k", "model=cnn", "-k", "width=512", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["cases"] == 2
    assert main(["best", str(run), "--filter", "model=transformer"]) == 2
    assert "kept no case" in capsys.readouterr().err


def test_cli_bad_input_exits_2_naming_it(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", [rec("a", lognormal(2.0, 60))])
    assert main(["best", str(run), "-c", "peak_rss_bytes<=2GiB"]) == 2
    err = capsys.readouterr().err
    assert "peak_rss_bytes" in err and "did not collect" in err and "median_ms" in err
    assert main(["best", str(run), "--objective", "fastest"]) == 2
    assert "objectives are" in capsys.readouterr().err
    assert main(["best", str(tmp_path / "nope")]) == 2


@pytest.mark.slow
def test_cli_answers_match_a_hand_computation(tmp_path: Path) -> None:
    """The three cross-check questions of benchmarks/best_crosscheck on a made-up run: the
    command line and plain pandas give the same configurations in the same order."""
    from benchmarks.best_crosscheck import crosscheck

    rng = np.random.default_rng(11)
    records = []
    for i in range(16):
        n = int(rng.integers(20, 400))
        median = float(rng.uniform(1, 10))
        metrics = {"fidelity_top1_agreement": float(rng.choice([0.5, 0.9, 0.95, 1.0])),
                   "fidelity_rel_l2": float(rng.uniform(0, 1)),
                   "peak_rss_bytes": int(rng.integers(300, 500)) * 2 ** 20}
        records.append(rec(f"c{i:02d}", list(median * np.exp(rng.normal(0, 0.2, n))), width=i,
                           batch_size=8, metrics=metrics))
    checks = crosscheck(str(write_run(tmp_path / "run", records)))
    assert [len(c.cli) > 0 for c in checks] == [True, True, True]
    for check in checks:
        assert check.cli == check.by_hand, check.question


# ---- the suite's [decide] table -------------------------------------------------------------
def test_suite_decide_table_is_validated(write_suite) -> None:  # type: ignore[no-untyped-def]
    from bench.errors import SpecError
    from bench.suite.loader import load as load_suite

    good = load_suite(write_suite('[decide]\nobjective = "throughput"\n'
                                  'constraints = ["p99_ms<=5", "peak_rss_bytes<=2GiB"]\n'
                                  'top = 3\n[[sweep]]\nmodel = "mlp"\nwidth = [8]\n'))
    assert good.decide is not None and good.decide.objective == "throughput"
    assert good.to_dict()["decide"]["constraints"] == ["p99_ms<=5", "peak_rss_bytes<=2GiB"]
    for body, words in (
        ('[decide]\nconstraints = ["p99_ms<=5 parsecs"]\n', ["decide.constraints[0]",
                                                              'unit "parsecs"']),
        ('[decide]\nobjective = "fastest"\n', ["decide.objective", "throughput"]),
        ('[decide]\nconstrains = ["p99_ms<=5"]\n', ['unknown key "constrains"',
                                                     'did you mean "constraints"']),
        ('[decide]\nconfidence = 1.5\n', ["decide.confidence"]),
    ):
        with pytest.raises(SpecError) as err:
            load_suite(write_suite(body + '[[sweep]]\nmodel = "mlp"\nwidth = [8]\n'))
        for word in words:
            assert word in str(err.value), str(err.value)


@pytest.mark.slow
def test_run_ends_with_the_answer_and_the_report_opens_with_it(  # type: ignore[no-untyped-def]
        write_suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite('[decide]\nobjective = "median_ms"\nconstraints = ["median_ms<=10s"]\n'
                       '[[sweep]]\nmodel = "mlp"\nwidth = [8, 16]\n')
    run = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "question: lowest median_ms under median_ms<=10s" in out
    assert "Best: mlp-d2-w" in out
    html = (run / "report.html").read_text()
    assert html.index('id="recommendation"') < html.index('id="summary"')
    assert main(["report", str(run), "--format", "markdown"]) == 0
    assert "### Recommendation" in capsys.readouterr().out
