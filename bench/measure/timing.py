"""The timing loop: warm-up, block-size calibration and the adaptive stop.

Returns raw samples only; statistics are computed from them when results are read.

A sample is the mean time per iteration over one block of `block_size` back-to-back calls.
The block is sized so the clock's own cost is negligible (≤ 1e-4 of a block on the CPU, as
torch Timer does); an iteration that is long enough alone gets `block_size = 1`, so its
samples are per-iteration times.

Warm-up (`warmup = "steady"`): after `warmup_iters` calls, calls go in windows of at least
STEADY_WINDOW_NS until the mean time per call of the last STEADY_WINDOWS windows agree within
STEADY_TOLERANCE, or `warmup_time_s` has passed. A model that is warm after a few calls does
not pay a fixed quarter second in every worker; one still settling (allocator, caches, lazy
initialisation) keeps warming up to the limit. `warmup = "fixed"` always takes the limit.

Stopping (nvbench style): at least `min_samples` and `min_time_s`, then stop as soon as the
confidence interval of the median is within ±`target_ci` of it, or at `max_time_s`.
`min_samples` is a floor even past `max_time_s` (the case's `timeout_s` still bounds it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.measure.clock import Clock
from bench.stats import relative_ci_halfwidth
from bench.suite.spec import Settings

#: Marks are read (one synchronise) after about this much host time of timed blocks.
ROUND_NS = 20_000_000
#: Calibration grows the block at most this much per step, so one slow step cannot overshoot.
MAX_GROWTH = 100
#: Steady warm-up: windows of at least this much host time (and one call) ...
STEADY_WINDOW_NS = 10_000_000
#: ... the last this many of which agree on the time per call ...
STEADY_WINDOWS = 3
#: ... within this fraction (slowest over fastest, minus one).
STEADY_TOLERANCE = 0.05


@dataclass(frozen=True)
class TimingResult:
    samples_ns: tuple[float, ...]
    block_size: int
    first_call_ns: float
    warmup_iters: int
    warmup_ns: int
    #: Whether warm-up ended on steady timings (False: at warmup_time_s, or warmup "fixed").
    warmup_steady: bool
    calibration_iters: int
    min_block_ns: float
    measure_ns: int
    ci_rel: float
    target_met: bool
    stop_reason: str
    clock: str
    #: The measuring window the run gave this worker (repeats = "auto"); None: the settings'.
    window_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["samples_ns"] = list(self.samples_ns)
        return out


def measure(fn: Callable[[], Any], clock: Clock, settings: Settings, *,
            on_phase: Callable[[str], None] | None = None) -> TimingResult:
    """Warm up, calibrate and time `fn` until the stopping rule is met.

    `on_phase("warmup")` and `on_phase("timed")` mark where the timed window starts, so
    samplers outside the loop can attribute what they see to the right phase.
    """
    phase = on_phase or (lambda name: None)
    phase("warmup")
    warm_start = clock.now_ns()
    start = clock.mark()
    fn()
    end = clock.mark()
    clock.synchronize()
    first_call_ns = clock.elapsed_ns(start, end)

    iters, steady = warm_up(fn, clock, settings, warm_start)
    warmup_ns = clock.now_ns() - warm_start

    block, calibration_iters = calibrate_block(fn, clock)
    phase("timed")
    samples, reason, measure_ns = _sample(fn, clock, settings, block)
    ci_rel = relative_ci_halfwidth(samples, settings.confidence) if len(samples) > 1 else math.inf
    return TimingResult(
        samples_ns=tuple(samples),
        block_size=block,
        first_call_ns=first_call_ns,
        warmup_iters=iters,
        warmup_ns=warmup_ns,
        warmup_steady=steady,
        calibration_iters=calibration_iters,
        min_block_ns=clock.min_block_ns(),
        measure_ns=measure_ns,
        ci_rel=ci_rel,
        target_met=ci_rel <= settings.target_ci,
        stop_reason=reason,
        clock=clock.name,
    )


def warm_up(fn: Callable[[], Any], clock: Clock, settings: Settings,
            started_ns: int) -> tuple[int, bool]:
    """Warm up after the first call (already made at `started_ns`); returns the calls made in
    all and whether the timings were steady when it stopped."""
    iters = 1
    while iters < settings.warmup_iters:
        fn()
        iters += 1
    budget_ns = settings.warmup_time_s * 1e9
    if settings.warmup == "fixed":
        while clock.now_ns() - started_ns < budget_ns:
            fn()
            iters += 1
        clock.synchronize()
        return iters, False
    per_call: list[float] = []
    while clock.now_ns() - started_ns < budget_ns:
        window_start = clock.now_ns()
        calls = 0
        start = clock.mark()
        while True:
            fn()
            calls += 1
            if clock.now_ns() - window_start >= STEADY_WINDOW_NS:
                break
        end = clock.mark()
        clock.synchronize()
        iters += calls
        per_call.append(clock.elapsed_ns(start, end) / calls)
        last = per_call[-STEADY_WINDOWS:]
        if len(last) == STEADY_WINDOWS and min(last) > 0 and \
                max(last) / min(last) - 1 <= STEADY_TOLERANCE:
            return iters, True
    clock.synchronize()
    return iters, False


def time_block(fn: Callable[[], Any], clock: Clock, block: int) -> tuple[Any, Any]:
    start = clock.mark()
    for _ in range(block):
        fn()
    return start, clock.mark()


def calibrate_block(fn: Callable[[], Any], clock: Clock) -> tuple[int, int]:
    """Smallest block (calls per timed interval) that lasts at least `clock.min_block_ns()`.

    Returns (block size, iterations spent calibrating). Calibration blocks are not samples.
    """
    target = clock.min_block_ns()
    block, spent = 1, 0
    while True:
        start, end = time_block(fn, clock, block)
        clock.synchronize()
        spent += block
        elapsed = clock.elapsed_ns(start, end)
        if elapsed >= target:
            return block, spent
        # Aim 20% past the target so noise does not leave the block just short of it.
        wanted = math.ceil(block * 1.2 * target / max(elapsed, 1.0))
        block = min(block * MAX_GROWTH, max(block + 1, wanted))


def _sample(fn: Callable[[], Any], clock: Clock, settings: Settings,
            block: int) -> tuple[list[float], str, int]:
    samples: list[float] = []
    next_check = settings.min_samples
    begin = clock.now_ns()
    while True:
        round_start = clock.now_ns()
        pending = []
        while True:
            pending.append(time_block(fn, clock, block))
            full = len(samples) + len(pending) >= settings.max_samples
            if full or clock.now_ns() - round_start >= ROUND_NS:
                break
            if len(samples) + len(pending) == settings.min_samples:
                break  # read out now: the first stop check may end the loop here
        clock.synchronize()
        samples += [clock.elapsed_ns(s, e) / block for s, e in pending]
        elapsed = clock.now_ns() - begin
        if len(samples) >= settings.max_samples:
            return samples, "max_samples", elapsed
        if len(samples) < settings.min_samples:
            continue  # a floor: fewer samples make no statistics; timeout_s bounds the case
        if elapsed >= settings.max_time_s * 1e9:
            return samples, "max_time", elapsed
        if len(samples) >= next_check and elapsed >= settings.min_time_s * 1e9:
            if relative_ci_halfwidth(samples, settings.confidence) <= settings.target_ci:
                return samples, "target_ci", elapsed
            # Check again after ~10% more samples: sorting every block would cost O(n² log n).
            next_check = len(samples) + max(1, len(samples) // 10)
