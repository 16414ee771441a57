"""Honest precision: a case's level and interval come from its workers, the run adds workers
where they disagree, and every place that shows an interval says what it includes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from gate_helpers import lognormal, record

from bench.engine.outcome import OnMessage, OnStart, Outcome, outcome_from
from bench.engine.rounds import Rounds, next_worker, worker_window
from bench.engine.runner import RunOptions, run
from bench.gate.paired import round_pairs, speedup
from bench.measure.clock import FakeClock
from bench.measure.protocol import Done, Findings, Message, Phase, WorkerJob
from bench.measure.timing import STEADY_WINDOWS, measure
from bench.results import load
from bench.results.repeats import merge
from bench.stats import ONE_WORKER, WorkerRun, level, plan_workers, summarize
from bench.suite import loader
from bench.suite.spec import Settings

AUTO = """
[settings]
warmup_iters = 1
warmup_time_s = 0.0
min_samples = 5
min_time_s = 0.0
max_time_s = 10.0
timeout_s = 60
repeats = "auto"
min_repeats = 3
max_repeats = 8
target_ci = 0.02
"""


class ScriptedWorkers:
    """A backend whose worker k of a case reports samples tight around a scripted median:
    `medians[name](k)` in ms (each worker's own samples vary by 0.1%)."""

    name = "fake"

    def __init__(self, medians: dict[str, Callable[[int], float]]) -> None:
        self.medians = medians
        self.jobs: list[WorkerJob] = []

    def run(self, job: WorkerJob, timeout_s: float, on_message: OnMessage,
            on_start: OnStart | None = None) -> Outcome:
        self.jobs.append(job)
        if on_start is not None:
            on_start(4242)
        level_ms = self.medians[job.case.name.split("-")[1]](job.repeat)
        samples = [s * 1e6 for s in lognormal(level_ms, 50, sigma=0.001, seed=job.repeat)]
        timing = {"samples_ns": samples, "block_size": 1, "ci_rel": 0.0005,
                  "measure_ns": 100_000_000, "window_s": job.case.window_s}
        messages: list[Message] = [Phase("build", 1.0), Phase("timed", 2.0),
                                   Done(timing=timing, findings=Findings())]
        for message in messages:
            on_message(message)
        outcome = outcome_from(messages)
        outcome.pid, outcome.exitcode = 4242, 0
        return outcome

    def call(self, fn: Callable[[], Any], timeout_s: float = 120.0) -> Any:
        return {"torch_version": "fake"}

    def close(self) -> None:
        pass


def scripted_run(write_suite, tmp_path, medians, settings: str = AUTO):
    path = write_suite('[[sweep]]\nmodel = "mlp"\ndepth = [2, 4]\n', fast=False)
    path.write_text(path.read_text().replace('name = "t"\n', 'name = "t"\n' + settings))
    suite = loader.load(path)
    backend = ScriptedWorkers(medians)
    run([suite], suite.cases, RunOptions(out=tmp_path / "run"), backend=backend)
    return load(tmp_path / "run").set_index("depth"), backend


# ---- the level and its interval -------------------------------------------------------------
def test_the_interval_is_the_t_interval_over_the_workers():
    from scipy import stats as sps

    medians = [1.00, 1.04, 0.97, 1.02, 0.99]
    got = level(medians)
    logs = np.log(medians)
    low, high = sps.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=sps.sem(logs))
    assert got.between_workers and got.workers == 5
    assert (math.log(got.low), math.log(got.high)) == pytest.approx((low, high), rel=1e-9)
    assert got.value == pytest.approx(math.exp(logs.mean()))


def test_one_worker_keeps_its_own_interval_and_says_so():
    got = level([2.0], own_interval=(1.98, 2.03))
    assert not got.between_workers and (got.low, got.high) == (1.98, 2.03)
    summary = summarize(lognormal(2.0, 300, sigma=0.01))
    assert summary.workers == 1 and not summary.between_workers
    assert summary.worker_ci_rel == pytest.approx(summary.ci_rel)


def test_the_interval_widens_when_workers_disagree():
    """Each worker is steady (±0.1%) but the workers sit up to 3% apart: the pooled samples'
    interval claims under 1%, the level's must not."""
    levels = (1.0, 1.02, 0.99, 1.01)
    pooled = [s * 1e6 for k, m in enumerate(levels)
              for s in lognormal(m, 500, sigma=0.001, seed=k)]
    medians = [m * 1e6 for m in levels]
    across = summarize(pooled, worker_medians_ns=medians)
    alone = summarize(pooled)
    assert alone.ci_rel < 0.01 < across.ci_rel
    agree = summarize(pooled, worker_medians_ns=[1.0e6, 1.001e6, 0.999e6, 1.0005e6])
    assert agree.ci_rel < across.ci_rel / 10


def test_the_interval_is_calibrated_on_simulated_workers():
    """95% intervals over 5 workers cover the true level about 95% of the time when the
    between-worker spread is what it is."""
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(3000):
        got = level(np.exp(rng.normal(0.0, 0.05, 5)))
        hits += got.low <= 1.0 <= got.high
    assert 0.935 <= hits / 3000 <= 0.965


# ---- how the time is split (Kalibera & Jones) -----------------------------------------------
def runs(medians, own_rel=0.005, measure_s=0.5, overhead_s=0.3):
    return [WorkerRun(m, own_rel, measure_s, overhead_s) for m in medians]


def test_workers_that_disagree_get_short_windows_and_more_workers():
    disagree = plan_workers(runs([1.0, 1.08, 0.93]), 0.02, 0.95, min_window_s=0.1,
                            max_window_s=5.0, max_workers=10)
    agree = plan_workers(runs([1.0, 1.001, 0.999], own_rel=0.02), 0.02, 0.95,
                         min_window_s=0.1, max_window_s=5.0, max_workers=10)
    assert disagree.window_s < agree.window_s
    assert disagree.between_sd > 0.03 and agree.between_sd == 0.0
    assert agree.window_s == 5.0, "workers that agree: longer windows, not more of them"
    assert disagree.workers_needed is None or disagree.workers_needed > 3


def test_the_window_is_the_cost_optimum():
    """t* = sqrt(c·v / T²): quadrupling the worker's fixed cost doubles the window."""
    base = dict(min_window_s=0.001, max_window_s=100.0, max_workers=10)
    cheap = plan_workers(runs([1.0, 1.05, 0.96], overhead_s=0.1), 0.02, 0.95, **base)
    dear = plan_workers(runs([1.0, 1.05, 0.96], overhead_s=0.4), 0.02, 0.95, **base)
    assert dear.window_s == pytest.approx(2 * cheap.window_s, rel=1e-9)


# ---- the stop rule on the level's interval --------------------------------------------------
def test_the_stop_rule_ends_on_the_levels_interval(write_suite, tmp_path):
    """Workers of d2 agree: it stops at min_repeats. Workers of d4 disagree by ±10%: it gets
    more workers, up to max_repeats, and its interval says how unsure it is."""
    frame, backend = scripted_run(write_suite, tmp_path, {
        "d2": lambda k: 1.0 + 0.001 * (k % 2),
        "d4": lambda k: 2.0 * (1.1 if k % 2 else 0.9)})
    assert frame.loc[2, "repeats"] == 3 and frame.loc[2, "target_met"]
    assert frame.loc[2, "stop_reason"] == "target_ci" and frame.loc[2, "ci_rel"] <= 0.02
    assert frame.loc[4, "repeats"] == 8 and not frame.loc[4, "target_met"]
    assert frame.loc[4, "stop_reason"] == "repeats"
    assert frame.loc[4, "ci_rel"] > 0.05, "the spread between workers is in the interval"
    assert frame.loc[4, "worker_ci_rel"] < 0.01, "what one worker claimed stays in the row"
    assert bool(frame.loc[4, "ci_between_workers"])
    assert all(j.case.window_s is not None for j in backend.jobs)


def test_every_worker_measures_its_own_round(write_suite, tmp_path):
    frame, backend = scripted_run(write_suite, tmp_path, {
        "d2": lambda k: 1.0, "d4": lambda k: 2.0 * (1.1 if k % 2 else 0.9)})
    assert list(frame.loc[4, "repeat_ids"]) == list(range(8))
    rounds = [j.repeat for j in backend.jobs]
    assert rounds[:2] == [0, 0] and rounds == sorted(rounds), "round by round"


def test_a_fixed_number_of_repeats_is_kept(write_suite, tmp_path):
    frame, backend = scripted_run(write_suite, tmp_path, {
        "d2": lambda k: 1.0, "d4": lambda k: 2.0 * (1.1 if k % 2 else 0.9)},
        settings=AUTO.replace('repeats = "auto"', "repeats = 4"))
    assert list(frame["repeats"]) == [4, 4]
    assert all(j.case.window_s is None for j in backend.jobs), "fixed: the settings' own"


def test_the_budget_and_the_cap_bound_the_workers():
    settings = Settings(max_time_s=1.0, min_time_s=0.1, min_repeats=3, max_repeats=10,
                        target_ci=0.001)
    apart = runs([1.0, 1.1, 0.9], measure_s=0.32)
    assert worker_window(settings, apart[:2]) == pytest.approx(0.1), \
        "first workers: max_time_s / (2 max_repeats), at least min_time_s"
    assert worker_window(settings, apart) is None, "1.86 s spent of 1 s: no room for another"
    roomy = replace(settings, max_time_s=100.0)
    window = worker_window(roomy, apart)
    assert window is not None and 0.1 <= window <= 100.0 / 3


# ---- the rounds -----------------------------------------------------------------------------
def test_comparison_groups_run_side_by_side(write_suite):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8, 16, 32]\n'
                       'precision = ["fp32", "bf16"]\nsettings = { repeats = 3 }\n')
    suite = loader.load(path)
    rounds, measured = Rounds(suite.cases, "r"), {}
    seen = []
    while (this := rounds.next(measured)).visits:
        for case, k in this.visits:
            measured.setdefault(case.case_id, []).append(
                replace(record(case.name, [1.0] * 5), repeat=k))
        seen.append([c.width for c, _ in this.visits])
    for widths in seen[1:]:
        assert all(widths[i] == widths[i + 1] for i in range(0, len(widths), 2)), \
            "the fp32 and bf16 cases of one width run one after the other"


def test_next_worker_stops_a_case_whose_worker_failed(write_suite):
    suite = loader.load(write_suite('[[sweep]]\nmodel = "mlp"\n'
                                    'settings = { repeats = "auto" }\n'))
    case = suite.cases[0]
    failed = replace(record(case.name, None, status="crashed"), repeat=0)
    assert next_worker(case, [failed]) is None
    assert next_worker(case, [])[1] == 0


# ---- comparisons inside a run ---------------------------------------------------------------
def rows(medians_a, medians_b, ids_b=None, run_b="r"):
    a = {"run_id": "r", "repeat_ids": list(range(len(medians_a))),
         "repeat_medians_ms": medians_a}
    b = {"run_id": run_b, "repeat_ids": ids_b or list(range(len(medians_b))),
         "repeat_medians_ms": medians_b}
    for row, medians in ((a, medians_a), (b, medians_b)):
        got = level(medians)
        row.update(median_ms=got.value, ci_low_ms=got.low, ci_high_ms=got.high,
                   repeats=len(medians), ci_between_workers=True)
    return a, b


def test_speedups_pair_workers_of_the_same_round():
    """The machine drifts 20% between rounds; both cases drift alike. Paired by round the
    ratio is exact and narrow; the levels alone could not tell 2x from the drift."""
    drift = [1.0, 1.2, 0.85, 1.1, 0.95]
    reference, case = rows([2.0 * d for d in drift], [1.0 * d * (1 + 0.002 * (-1) ** k)
                                                     for k, d in enumerate(drift)])
    got = speedup(reference, case)
    assert got.pairs == 5 and got.evidence == "5 paired rounds"
    assert got.value == pytest.approx(2.0, rel=0.01) and got.high / got.low < 1.02
    unpaired = speedup(*rows([2.0 * d for d in drift], [1.0 * d for d in drift],
                             run_b="other"))
    assert unpaired.pairs == 0 and unpaired.high / unpaired.low > 1.2


def test_rounds_are_matched_by_id():
    a, b = rows([1.0, 2.0, 3.0, 4.0], [10.0, 30.0], ids_b=[0, 2])
    ref, other = round_pairs(a, b)
    assert list(ref) == [1.0, 3.0] and list(other) == [10.0, 30.0]


# ---- a single worker is labelled wherever its interval is shown -----------------------------
def one_worker_run(tmp_path):
    from gate_helpers import write_run

    one = replace(record("alone", lognormal(2.0, 200, sigma=0.01)),
                  settings={"confidence": 0.95, "repeats": 1, "target_ci": 0.02})
    many = [replace(record("many", lognormal(m, 200, sigma=0.01, seed=k)), repeat=k,
                    settings={"confidence": 0.95, "repeats": "auto", "target_ci": 0.02,
                              "max_repeats": 10})
            for k, m in enumerate((1.0, 1.03, 0.98))]
    return write_run(tmp_path / "run", [one, *many])


def test_load_says_which_intervals_are_across_workers(tmp_path):
    frame = load(one_worker_run(tmp_path)).set_index("name")
    assert not frame.loc["alone", "ci_between_workers"] and frame.loc["alone", "repeats"] == 1
    assert frame.loc["many", "ci_between_workers"] and frame.loc["many", "repeats"] == 3
    assert frame.loc["many", "median_ms"] == pytest.approx(
        math.exp(np.mean(np.log(frame.loc["many", "repeat_medians_ms"]))))


def test_the_cli_line_the_report_and_the_export_label_one_worker(tmp_path):
    from bench.cli.run_cmd import describe
    from bench.report import html_report, load_report_input
    from bench.report.figures import hover
    from bench.report.markdown import render_markdown
    from bench.report.sections.table import table_frame
    from bench.report.style import interval
    from bench.results.pytest_benchmark import export
    from bench.results.store import load_records, read_run

    folder = one_worker_run(tmp_path)
    records = load_records(folder)
    alone = merge([r for r in records if r.name == "alone"])
    many = merge([r for r in records if r.name == "many"])
    assert ONE_WORKER in describe(alone) and "3 workers" in describe(many)
    frame = load(folder).set_index("name", drop=False)
    assert ONE_WORKER in interval(frame.loc["alone"].to_dict())
    assert "(3 workers)" in interval(frame.loc["many"].to_dict())
    table = table_frame(frame.reset_index(drop=True)).set_index("name")
    assert table.loc["alone", "_interval_over"] == ONE_WORKER
    report = load_report_input([folder])
    assert ONE_WORKER in render_markdown(report)
    assert ONE_WORKER in html_report(report) and "(3 workers)" in html_report(report)
    assert ONE_WORKER in hover(frame.loc["alone"].to_dict())
    exported = {b["name"]: b["extra_info"] for b in export(records, read_run(folder))[
        "benchmarks"]}
    assert exported["alone"]["interval_over"] == ONE_WORKER
    assert exported["many"]["workers"] == 3
    json.dumps(exported)


def test_best_says_which_cases_one_worker_measured(tmp_path):
    from bench.decide import decide
    from bench.suite.question import Question

    answer = decide(load(one_worker_run(tmp_path)), Question("median_ms", ()))
    assert any(ONE_WORKER in note for note in answer.notes)


def test_the_gate_says_when_it_tested_one_worker():
    from bench.gate.compare import compare_records
    from bench.gate.render import drift_lines

    comparison = compare_records([record("a", lognormal(1.0, 100))],
                                 [record("a", lognormal(1.0, 100, seed=3))])
    assert any(ONE_WORKER in line for line in drift_lines(comparison))


# ---- warm-up until steady -------------------------------------------------------------------
def workload(clock: FakeClock, times_ns: Callable[[int], float]) -> Callable[[], None]:
    calls = {"n": 0}

    def fn() -> None:
        clock.advance(times_ns(calls["n"]))
        calls["n"] += 1

    return fn


def test_warm_up_ends_when_the_timings_are_steady():
    """Calls start 3x slower and settle to 1 ms (caches, allocator): warm-up goes on while
    they settle and ends once they have, far before its 5 s limit."""
    clock = FakeClock()
    settling = workload(clock, lambda n: 1e6 * (1 + 2 * math.exp(-n / 15)))
    settings = Settings(warmup_iters=1, warmup_time_s=5.0, min_samples=5, min_time_s=0.0,
                        max_time_s=0.05, repeats=1)
    result = measure(settling, clock, settings)
    assert result.warmup_steady and result.warmup_ns < 0.5e9
    first_sample_ms = result.samples_ns[0] / 1e6
    assert first_sample_ms < 1.05, "timing starts within 5% of the settled time"
    assert result.warmup_iters > STEADY_WINDOWS * 10, "it did not stop while still settling"


def test_warm_up_that_never_settles_stops_at_its_limit():
    clock = FakeClock()
    saw = workload(clock, lambda n: 1e6 * (1 + (n // 10) % 2))  # 1 ms / 2 ms by tens
    settings = Settings(warmup_iters=1, warmup_time_s=0.3, min_samples=5, min_time_s=0.0,
                        max_time_s=0.05, repeats=1)
    result = measure(saw, clock, settings)
    assert not result.warmup_steady and result.warmup_ns >= 0.3e9
    fixed = measure(workload(clock, lambda n: 1e6), clock,
                    replace(settings, warmup="fixed"))
    assert not fixed.warmup_steady and fixed.warmup_ns >= 0.3e9


# ---- threads and placement ------------------------------------------------------------------
@pytest.mark.parametrize(("allowed", "logical", "physical", "threads"), [
    (range(2), 2, 2, 1),        # this kind of VM: one thread, the samplers get the other CPU
    (range(4), 4, 4, 3),
    (range(32), 32, 16, 15),    # SMT: physical cores of the measuring CPUs, less the parent's
    (range(1), 1, 1, 1),        # one CPU: the worker has it, the samplers share it
])
def test_unset_threads_are_one_per_core_but_the_parents(monkeypatch, allowed, logical,
                                                        physical, threads):
    import psutil

    from bench import env

    counts = {True: logical, False: physical}
    monkeypatch.setattr(env.os, "sched_getaffinity", lambda pid: set(allowed))
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: counts[logical])
    _, spare = env.measuring_cpus()
    assert spare == (None if len(allowed) == 1 else max(allowed))
    assert env.auto_threads() == threads


def test_a_worker_runs_pinned_away_from_the_samplers(write_suite, tmp_path):
    from bench import env

    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8]\n')
    (record,) = run([loader.load(path)], loader.load(path).cases,
                    RunOptions(out=tmp_path / "run")).records
    placement = record.info["cpu_affinity"]
    cpus, spare = env.measuring_cpus()
    if spare is None:
        assert not placement["pinned"] and "one CPU" in placement["why"]
    else:
        assert placement == {"pinned": True, "cpus": list(cpus), "sampler_cpu": spare}
    assert record.metrics["threads"] == env.auto_threads()
    assert load(tmp_path / "run")["cpu_affinity"][0] == placement


def test_timings_reported_as_metrics_get_the_level_across_workers():
    """A generate case's prefill latency (a metric with its interval) is treated like the main
    timing: its level and interval come from all the workers, not the first one's."""
    workers = [replace(record("gen", lognormal(1.0, 20, seed=k)), repeat=k,
                       metrics={"prefill_ms": m, "prefill_ci_low_ms": m * 0.995,
                                "prefill_ci_high_ms": m * 1.005,
                                "prefill_throughput_items_s": 640 / m})
               for k, m in enumerate((10.0, 11.0, 9.5))]
    merged = merge(workers).metrics
    expected = level([10.0, 11.0, 9.5])
    assert merged["prefill_ms"] == pytest.approx(expected.value)
    assert (merged["prefill_ci_low_ms"], merged["prefill_ci_high_ms"]) == pytest.approx(
        (expected.low, expected.high))
    assert merged["prefill_throughput_items_s"] == pytest.approx(640 / expected.value)
    assert merge([workers[0]]).metrics["prefill_ci_low_ms"] == pytest.approx(9.95)


# ---- the machine's drift between rounds -----------------------------------------------------
def drifting_run(round_factors, cases=5, run_id="r", name="c"):
    """Records of `cases` cases, each with one worker per round; round k slows every case by
    round_factors[k] (each case's own scatter 0.1%)."""
    rng = np.random.default_rng(len(round_factors))
    out = []
    for c in range(cases):
        for k, factor in enumerate(round_factors):
            level_ms = (1.0 + c) * factor * float(np.exp(rng.normal(0, 0.001)))
            out.append(replace(record(f"{name}{c}", lognormal(level_ms, 30, sigma=0.001,
                                                              seed=k), run_id=run_id),
                               repeat=k))
    return out


def test_the_machines_drift_between_rounds_is_measured():
    from bench.results.repeats import run_drift

    steady = run_drift(drifting_run([1.0, 1.001, 0.999, 1.0]))
    wild = run_drift(drifting_run([1.0, 1.15, 0.9, 1.1]))
    assert steady is not None and steady.sd < 0.01 and steady.rounds == 4
    assert wild is not None and wild.sd > 0.05
    assert wild.span == pytest.approx(1.15 / 0.9, rel=0.02)
    assert run_drift(drifting_run([1.0], cases=5)) is None, "one round: no drift to see"


def test_compare_warns_when_a_run_was_taken_on_an_unsteady_machine(tmp_path):
    from gate_helpers import write_run

    from bench.gate.compare import compare_runs
    from bench.gate.render import env_lines

    base = write_run(tmp_path / "base", drifting_run([1.0, 1.15, 0.9, 1.1], run_id="base"))
    cand = write_run(tmp_path / "cand", drifting_run([1.0, 1.0, 1.0, 1.0], run_id="cand"))
    comparison = compare_runs(base, cand)
    assert [label for label, _ in comparison.unsteady] == ["base"]
    assert any("archbench ab" in line for line in env_lines(comparison))
    assert comparison.to_dict()["unsteady"][0]["run"] == "base"
