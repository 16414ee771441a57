"""Energy over a window from counter or power samples: exact answers on synthetic series."""

from __future__ import annotations

import math

import pytest

from bench.collectors.energy import EnergyUnavailable, best, from_counter, from_power


def counter_samples(power_w: float, *, update_s: float, sample_s: float, until_s: float,
                    start_mj: float = 5e6) -> list[tuple[float, float]]:
    """A counter refreshed every `update_s` and read every `sample_s`."""
    out = []
    for tick in range(round(until_s / sample_s) + 1):
        t = round(tick * sample_s, 9)
        updated = math.floor(t / update_s + 1e-9) * update_s  # the last refresh at or before t
        out.append((t, start_mj + power_w * updated * 1e3))
    return out


def test_counter_energy_between_updates_is_exact():
    points = counter_samples(200.0, update_s=0.05, sample_s=0.01, until_s=1.0)
    figure = from_counter(points, (0.12, 0.43))
    assert figure.method == "counter"
    # encloses the window, starting and ending on updates
    assert figure.window_s == pytest.approx(0.45 - 0.10)
    assert figure.energy_j == pytest.approx(200.0 * 0.35)
    assert figure.mean_power_w == pytest.approx(200.0)
    assert figure.update_period_s == pytest.approx(0.05)
    assert figure.extended_s == pytest.approx(0.35 - 0.31)


def test_a_window_inside_one_update_period_is_extended_and_flagged():
    points = counter_samples(150.0, update_s=0.1, sample_s=0.02, until_s=1.0)
    figure = from_counter(points, (0.52, 0.55))
    assert figure.energy_j > 0 and figure.window_s == pytest.approx(0.1)
    assert figure.mean_power_w == pytest.approx(150.0)
    assert "raise min_time_s" in figure.warning(0.03)
    long = from_counter(points, (0.1, 0.9))
    assert long.warning(0.8) is None


def test_per_item_energy_is_mean_power_times_median_per_item():
    figure = from_counter(counter_samples(250.0, update_s=0.01, sample_s=0.01, until_s=1.0),
                          (0.2, 0.8))
    assert figure.per_item_j(median_s=0.004, batch_size=8) == pytest.approx(250 * 0.004 / 8)


@pytest.mark.parametrize(("points", "message"), [
    ([(0.0, 1.0)], "fewer than two"),
    ([(0.0, 5.0), (0.1, 5.0), (0.2, 5.0)], "did not change"),
    ([(0.0, 5.0), (0.1, 9.0), (0.2, 3.0)], "backwards"),
    ([(0.0, 1.0), (0.3, 2.0), (0.35, 3.0), (0.4, 4.0)], "no energy-counter update before"),
])
def test_unusable_counters_say_why(points, message):
    with pytest.raises(EnergyUnavailable, match=message):
        from_counter(points, (0.2, 0.3))


def test_power_integral_of_a_ramp_is_exact():
    points = [(i / 100, 100.0 + 1000.0 * i / 100) for i in range(101)]  # P(t) = 100 + 1000 t
    figure = from_power(points, (0.2, 0.6))
    assert figure.method == "power-integral" and figure.window_s == pytest.approx(0.4)
    assert figure.energy_j == pytest.approx(100 * 0.4 + 500 * (0.6**2 - 0.2**2))


def test_power_integral_extends_to_enclosing_samples():
    points = [(0.0, 100.0), (0.5, 100.0), (1.0, 100.0)]
    figure = from_power(points, (0.6, 0.7))
    assert figure.window_s == pytest.approx(0.5) and figure.energy_j == pytest.approx(50.0)
    assert figure.extended_s == pytest.approx(0.4)
    with pytest.raises(EnergyUnavailable):
        from_power(points, (0.6, 1.2))


def test_best_prefers_the_counter_and_falls_back_with_the_reason():
    counter = counter_samples(100.0, update_s=0.05, sample_s=0.01, until_s=1.0)
    power = [(i / 100, 300.0) for i in range(101)]
    figure, why = best(counter, power, (0.2, 0.8))
    assert figure.method == "counter" and why is None
    frozen = [(t, 7.0) for t, _ in counter]
    figure, why = best(frozen, power, (0.2, 0.8))
    assert figure.method == "power-integral" and "did not change" in why
    assert figure.mean_power_w == pytest.approx(300.0)
    with pytest.raises(EnergyUnavailable, match=r"counter: .*; power: no power samples"):
        best([], [], (0.2, 0.8))
