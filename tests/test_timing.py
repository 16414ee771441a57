"""The timing loop on a fake clock: warm-up, calibration and the adaptive stop, exactly."""

from __future__ import annotations

import itertools
import random

import pytest

from bench.measure.clock import FakeClock, PerfCounterClock
from bench.measure.timing import ROUND_NS, calibrate_block, measure
from bench.suite.spec import Settings

MS = 1_000_000


def workload(clock: FakeClock, durations):
    """A fake workload: each call advances the clock by the next duration."""
    source = iter(durations)

    def fn():
        clock.advance(next(source))

    return fn


def constant(ns):
    return itertools.repeat(ns)


def test_calibration_makes_timer_overhead_at_most_1e4_of_a_block():
    clock = FakeClock(mark_cost_ns=50)  # min block = 50 / 1e-4 = 0.5 ms
    block, spent = calibrate_block(workload(clock, constant(1000)), clock)
    assert block * 1000 >= 500_000
    assert block * 1000 <= 1.2 * 500_000 * 1.25, "calibration should not overshoot much"
    assert spent >= block


def test_long_iterations_are_timed_one_by_one():
    clock = FakeClock(mark_cost_ns=50)
    block, _ = calibrate_block(workload(clock, constant(2 * MS)), clock)
    assert block == 1


def test_calibration_growth_is_bounded_by_a_noisy_fast_first_block():
    """A first block that reads absurdly fast must not blow the block size up unboundedly."""
    clock = FakeClock(mark_cost_ns=1)
    durations = itertools.chain([0.0], constant(10_000))
    block, _ = calibrate_block(workload(clock, durations), clock)
    assert block <= 100 * 12  # at most 100x per step, then sized from a real reading


def test_stops_at_target_once_min_samples_and_min_time_are_met():
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    settings = Settings(warmup_iters=3, warmup_time_s=0.0, min_samples=10, min_time_s=0.5,
                        max_time_s=10.0, target_ci=0.01)
    result = measure(workload(clock, constant(1 * MS)), clock, settings)
    assert result.stop_reason == "target_ci" and result.target_met
    assert result.ci_rel == 0.0
    assert len(result.samples_ns) >= 10
    assert result.measure_ns >= 0.5e9
    # it stops at the first check after min_time: within one read-out round of it
    assert result.measure_ns < 0.5e9 + ROUND_NS + 2 * MS
    assert all(s == 1 * MS for s in result.samples_ns)


def test_stops_at_min_samples_when_iterations_are_slow():
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    settings = Settings(warmup_iters=1, warmup_time_s=0.0, min_samples=10, min_time_s=0.0,
                        max_time_s=60.0)
    result = measure(workload(clock, constant(500 * MS)), clock, settings)
    assert len(result.samples_ns) == 10 and result.stop_reason == "target_ci"


def test_min_samples_is_a_floor_even_past_max_time():
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    settings = Settings(warmup_iters=1, warmup_time_s=0.0, min_samples=10, min_time_s=0.0,
                        max_time_s=0.1)
    result = measure(workload(clock, constant(50 * MS)), clock, settings)
    assert len(result.samples_ns) == 10 and result.measure_ns >= 0.5e9


def test_unresolvable_noise_runs_to_max_time_and_says_so():
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    rng = random.Random(1)
    bimodal = (1 * MS if rng.random() < 0.5 else 2 * MS for _ in itertools.count())
    settings = Settings(warmup_iters=1, warmup_time_s=0.0, min_samples=10, min_time_s=0.1,
                        max_time_s=2.0, target_ci=0.001)
    result = measure(workload(clock, bimodal), clock, settings)
    assert result.stop_reason == "max_time"
    assert not result.target_met and result.ci_rel > 0.001
    assert 2.0e9 <= result.measure_ns < 2.0e9 + ROUND_NS + 4 * MS


def test_noise_that_shrinks_with_samples_meets_the_target_before_max_time():
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    rng = random.Random(2)
    noisy = (rng.gauss(1 * MS, 0.05 * MS) for _ in itertools.count())
    settings = Settings(warmup_iters=1, warmup_time_s=0.0, min_samples=10, min_time_s=0.0,
                        max_time_s=100.0, target_ci=0.01)
    result = measure(workload(clock, noisy), clock, settings)
    assert result.stop_reason == "target_ci" and result.ci_rel <= 0.01
    # ±1% of a 5%-sd distribution needs on the order of a hundred samples, not thousands
    assert 30 <= len(result.samples_ns) <= 2000


def test_warmup_by_count_and_by_time_and_first_call_recorded_apart():
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    durations = itertools.chain([50 * MS], constant(1 * MS))  # a slow first call (compile)
    settings = Settings(warmup_iters=5, warmup_time_s=0.02, min_samples=10, min_time_s=0.0)
    result = measure(workload(clock, durations), clock, settings)
    assert result.first_call_ns == 50 * MS
    assert result.warmup_iters >= 5 and result.warmup_ns >= 0.02e9
    assert max(result.samples_ns) == 1 * MS, "the first call must not be a sample"

    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    by_count = Settings(warmup_iters=40, warmup_time_s=0.0, min_samples=10, min_time_s=0.0)
    assert measure(workload(clock, constant(1 * MS)), clock, by_count).warmup_iters == 40


def test_max_samples_caps_the_loop():
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    settings = Settings(warmup_iters=0, warmup_time_s=0.0, min_samples=5, min_time_s=100.0,
                        max_time_s=1000.0, max_samples=50)
    result = measure(workload(clock, constant(1 * MS)), clock, settings)
    assert len(result.samples_ns) == 50 and result.stop_reason == "max_samples"


def test_marks_are_read_in_rounds_not_per_block():
    """One synchronise per read-out round (CUDA-event style), not one per block."""
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    settings = Settings(warmup_iters=0, warmup_time_s=0.0, min_samples=10, min_time_s=1.0,
                        max_time_s=1.0)
    result = measure(workload(clock, constant(100_000)), clock, settings)  # 0.1 ms blocks
    blocks = len(result.samples_ns)
    assert blocks >= 9000
    assert clock.synchronize_calls < blocks / 50


def test_phases_are_announced_in_order():
    clock = FakeClock(mark_cost_ns=0, min_block_ns=1)
    seen = []
    measure(workload(clock, constant(MS)), clock,
            Settings(warmup_iters=1, warmup_time_s=0.0, min_time_s=0.0), on_phase=seen.append)
    assert seen == ["warmup", "timed"]


def test_real_clock_measures_a_sleep():
    """Sanity on the real clock: a 2 ms sleep measures as about 2 ms (never less)."""
    import time

    clock = PerfCounterClock()
    settings = Settings(warmup_iters=1, warmup_time_s=0.0, min_samples=5, min_time_s=0.0,
                        max_time_s=0.2)
    result = measure(lambda: time.sleep(0.002), clock, settings)
    assert result.block_size == 1
    assert min(result.samples_ns) >= 2e6
    assert sorted(result.samples_ns)[len(result.samples_ns) // 2] < 2e7


@pytest.mark.parametrize("mark_cost", [20, 100])
def test_perf_counter_min_block_follows_its_overhead(mark_cost):
    clock = FakeClock(mark_cost_ns=mark_cost)
    assert clock.min_block_ns() == mark_cost * 1e4
    real = PerfCounterClock()
    assert real.min_block_ns() == pytest.approx(real.overhead_ns() * 1e4, rel=5)
