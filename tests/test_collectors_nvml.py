"""The NVML collector against a fake pynvml: mapping, sampling, energy and every failure."""

from __future__ import annotations

import itertools
import os
import re
import sys
import threading
import time

import pytest
from fake_pynvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_FI_DEV_POWER_INSTANT,
    FakeGpu,
    FakeNvml,
)

from bench.collectors.base import CaseFacts, CollectorResult, Target, Window
from bench.collectors.nvml import NvmlCollector, throttle_names
from bench.collectors.nvml_devices import MappingError, map_device
from bench.collectors.registry import parent_collectors
from bench.suite.spec import Case

UUIDS = ["GPU-aaaa1111-0000-0000-0000-000000000000", "GPU-bbbb2222-0000-0000-0000-000000000000",
         "GPU-bbbc3333-0000-0000-0000-000000000000"]
PID = os.getpid()


def gpus(**changes) -> list[FakeGpu]:
    return [FakeGpu(uuid=u, processes=[(PID, 3 << 30)], **changes) for u in UUIDS]


# ---- mapping --------------------------------------------------------------------------------
@pytest.mark.parametrize(("visible", "device", "expected"), [
    (None, "cuda", 0),
    (None, "cuda:2", 2),
    ("2,0", "cuda:0", 2),
    ("2,0", "cuda:1", 0),
    ("GPU-bbbb2222", "cuda", 1),                      # a unique UUID prefix
    ("bbbc", "cuda:0", 2),                            # the prefix without "GPU-"
    (f"{UUIDS[0]},1", "cuda:1", 1),                   # full UUIDs and indices mixed
])
def test_device_maps_to_the_visible_uuid(visible, device, expected):
    nvml = FakeNvml(gpus())
    nvml.nvmlInit()
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert map_device(nvml, device, environ).uuid == UUIDS[expected]


@pytest.mark.parametrize(("visible", "device", "message"), [
    ("0,bogus,1", "cuda:1", "only 1 device(s) visible"),  # CUDA stops at an invalid entry
    ("GPU-bbb", "cuda:0", "only 0 device(s)"),            # ambiguous prefix: invalid
    ("7", "cuda:0", "only 0 device(s)"),                  # no such index
    ("", "cuda:0", "CUDA_VISIBLE_DEVICES=''"),
    ("1,1", "cuda:1", "only 1 device(s)"),                # a duplicate ends the list
])
def test_unmappable_devices_say_why(visible, device, message):
    nvml = FakeNvml(gpus())
    nvml.nvmlInit()
    with pytest.raises(MappingError, match=re.escape(message)):
        map_device(nvml, device, {"CUDA_VISIBLE_DEVICES": visible})


def test_mig_uuid_is_resolved_by_nvml():
    mig = FakeGpu(uuid="MIG-1234abcd-0000")
    nvml = FakeNvml([*gpus(), mig])
    nvml.nvmlInit()
    mapped = map_device(nvml, "cuda:0", {"CUDA_VISIBLE_DEVICES": "MIG-1234abcd-0000"})
    assert mapped.handle is mig


def test_mixed_models_by_index_carry_an_order_note():
    devices = gpus()
    devices[1].name = "NVIDIA Other"
    nvml = FakeNvml(devices)
    nvml.nvmlInit()
    assert "CUDA_DEVICE_ORDER" in (map_device(nvml, "cuda:1", {}).note or "")
    assert map_device(nvml, "cuda:1", {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}).note is None
    assert map_device(nvml, "cuda:0", {"CUDA_VISIBLE_DEVICES": UUIDS[1]}).note is None


def test_listing_failure_is_a_mapping_error():
    nvml = FakeNvml(gpus(), fail={"nvmlDeviceGetCount": NVML_ERROR_GPU_IS_LOST})
    nvml.nvmlInit()
    with pytest.raises(MappingError, match="GPU is lost"):
        map_device(nvml, "cuda", {})


# ---- sampling -------------------------------------------------------------------------------
def run_case(collector: NvmlCollector, *, before_s: float = 0.08, timed_s: float = 0.25,
             after_s: float = 0.05, worker_uuid: str | None = None, median_s: float = 0.01,
             batch_size: int = 4, phases: list | None = None) -> dict[str, CollectorResult]:
    """Drive a collector through build -> timed -> teardown in real time (the phase
    changes, (name, unix time), are appended to `phases` when given)."""
    begin = time.time()
    collector.start(Target(pid=PID, started_unix=begin))
    phases = phases if phases is not None else []
    phases.append(("build", begin))
    for name, pause in (("timed", before_s), ("teardown", timed_s)):
        time.sleep(pause)
        phases.append((name, time.time()))
        collector.on_phase(*phases[-1])
    time.sleep(after_s)
    collector.stop()
    facts = CaseFacts(batch_size=batch_size, median_s=median_s,
                      window=Window(tuple(phases), time.time()), worker_cuda_uuid=worker_uuid)
    return {r.name: r for r in collector.results(facts)}


def collector(nvml: FakeNvml, device: str = "cuda:0", interval_s: float = 0.01,
              environ: dict | None = None) -> NvmlCollector:
    return NvmlCollector(device, interval_s, nvml=nvml, environ=environ or {})


def test_sampling_summarises_the_timed_window():
    nvml = FakeNvml(gpus(clock_events=0x4))
    phases: list = []
    results = run_case(collector(nvml, "cuda:1"), worker_uuid=UUIDS[1][4:].upper(),
                       phases=phases)
    gpu = results["nvml"]
    assert gpu.ok, gpu.reason
    m = gpu.metrics
    assert m["gpu_util_mean_pct"] == m["gpu_util_max_pct"] == 97
    assert m["mem_util_mean_pct"] == 40
    assert m["power_mean_w"] == pytest.approx(300) and m["power_max_w"] == pytest.approx(300)
    assert m["sm_clock_mean_mhz"] == 1980 and m["temperature_max_c"] == 61
    assert m["throttle_reasons"] == "sw_power_cap"
    assert m["nvml_device_used_bytes"] == 10 << 30
    assert m["nvml_process_used_bytes"] == 3 << 30
    names = {s.name for s in gpu.series}
    assert names == {"gpu_util_pct", "power_w", "sm_clock_mhz", "temperature_c"}
    assert len(next(s for s in gpu.series if s.name == "power_w").points) >= 10

    energy = results["energy"]
    assert energy.ok and energy.reason is None, energy.reason
    e = energy.metrics
    assert e["energy_method"] == "counter"
    assert e["energy_j"] / e["energy_window_s"] == pytest.approx(300, rel=0.02)
    timed = phases[2][1] - phases[1][1]  # 0.25 s asked; longer when the machine is busy
    assert timed <= e["energy_window_s"] <= timed + 0.08  # the counter samples around it
    assert e["energy_per_item_j"] == pytest.approx(300 * 0.01 / 4, rel=0.02)
    assert nvml.initialised == 0, "NVML is shut down after the case"


def test_instant_power_missing_falls_back_to_the_average_reading():
    nvml = FakeNvml(gpus(), fail={f"field:{NVML_FI_DEV_POWER_INSTANT}": NVML_ERROR_NOT_SUPPORTED})
    gpu = run_case(collector(nvml))["nvml"]
    assert gpu.ok and gpu.metrics["power_mean_w"] == pytest.approx(300)
    assert "power_instant" in gpu.reason and "averaged" in gpu.reason
    assert nvml.calls["nvmlDeviceGetPowerUsage"] > 5


def test_energy_falls_back_to_integrating_power_without_the_counter():
    """Without the energy counter, the trapezoids of the power samples that enclose the
    timed window. The expected figure comes from the power the fake GPU reported, so the
    test does not depend on how regularly a loaded machine lets the sampler run."""
    reported: list[tuple[float, float]] = []

    def saw_tooth(t: float) -> float:  # 100 to 500 W, ten times a second
        reported.append((t, 100 + 400 * ((t * 10) % 1)))
        return reported[-1][1]

    ramp = FakeGpu(uuid=UUIDS[0], power_w=saw_tooth)
    nvml = FakeNvml([ramp], fail={"nvmlDeviceGetTotalEnergyConsumption": NVML_ERROR_NOT_SUPPORTED})
    phases: list = []
    results = run_case(collector(nvml), phases=phases)
    energy = results["energy"]
    assert energy.ok and energy.metrics["energy_method"] == "power-integral"
    assert "not supported" in energy.reason.lower()
    start, end = phases[1][1], phases[2][1]  # the timed phase
    first = max(i for i, (t, _) in enumerate(reported) if t <= start)
    last = min(i for i, (t, _) in enumerate(reported) if t >= end)

    def trapezoids(a: int, b: int) -> tuple[float, float]:
        window = reported[a:b + 1]
        return (sum((q[0] - p[0]) * (p[1] + q[1]) / 2 for p, q in itertools.pairwise(window)),
                window[-1][0] - window[0][0])

    # The sampler stamps a sample just after reading it: a phase change in between puts the
    # enclosing sample one earlier for it than for the power function's own clock.
    expected = [trapezoids(a, b) for a in (first - 1, first) for b in (last - 1, last)]
    got = (energy.metrics["energy_j"], energy.metrics["energy_window_s"])
    assert any(got == pytest.approx(e, rel=1e-3) for e in expected), (got, expected[-1])
    assert 100 < got[0] / got[1] < 500
    assert "energy" in results["nvml"].reason


def test_a_window_shorter_than_the_counter_update_is_extended_never_zero():
    nvml = FakeNvml(gpus(energy_update_s=0.1))
    results = run_case(collector(nvml), before_s=0.15, timed_s=0.03, after_s=0.15)
    energy = results["energy"]
    assert energy.ok
    e = energy.metrics
    assert e["energy_j"] > 0 and e["energy_window_s"] >= 0.09
    assert e["energy_j"] / e["energy_window_s"] == pytest.approx(300, rel=0.1)
    assert energy.warnings and "timed window" in energy.warnings[0]


def test_no_counter_and_no_power_leaves_energy_empty_with_the_reason():
    nvml = FakeNvml(gpus(), fail={"nvmlDeviceGetTotalEnergyConsumption": NVML_ERROR_NOT_SUPPORTED,
                                  "nvmlDeviceGetPowerUsage": NVML_ERROR_NOT_SUPPORTED,
                                  f"field:{NVML_FI_DEV_POWER_INSTANT}": NVML_ERROR_NOT_SUPPORTED})
    results = run_case(collector(nvml))
    assert results["nvml"].ok and "power_mean_w" not in results["nvml"].metrics
    energy = results["energy"]
    assert not energy.ok and not energy.metrics
    assert "counter" in energy.reason and "power" in energy.reason


@pytest.mark.parametrize("code", [NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND])
def test_nvml_that_cannot_start_records_the_reason(code):
    nvml = FakeNvml(gpus(), fail={"nvmlInit": code})
    results = run_case(collector(nvml), timed_s=0.02)
    assert not results["nvml"].ok and "NVML unavailable" in results["nvml"].reason
    assert not results["energy"].ok and not results["energy"].metrics
    assert nvml.shutdowns == 0, "never shut down what did not start"


def test_missing_nvidia_ml_py_records_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    results = run_case(NvmlCollector("cuda", 0.01, environ={}), timed_s=0.02)
    assert "not installed" in results["nvml"].reason


def test_a_field_failing_mid_run_stops_alone():
    nvml = FakeNvml(gpus(), fail_after={
        "nvmlDeviceGetUtilizationRates": (4, NVML_ERROR_GPU_IS_LOST)})
    gpu = run_case(collector(nvml))["nvml"]
    assert gpu.ok
    assert "utilization: failed while sampling: NVML: GPU is lost" in gpu.reason
    assert "gpu_util_mean_pct" not in gpu.metrics  # its samples ended before the timed window
    assert gpu.metrics["power_mean_w"] == pytest.approx(300)


def test_every_field_unsupported_is_a_failure_and_nvml_is_shut_down():
    names = ["nvmlDeviceGetUtilizationRates", "nvmlDeviceGetFieldValues",
             "nvmlDeviceGetPowerUsage", "nvmlDeviceGetClockInfo", "nvmlDeviceGetTemperature",
             "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetMemoryInfo",
             "nvmlDeviceGetTotalEnergyConsumption"]
    nvml = FakeNvml(gpus(), fail=dict.fromkeys(names, NVML_ERROR_NOT_SUPPORTED))
    results = run_case(collector(nvml), timed_s=0.02)
    assert not results["nvml"].ok
    assert results["nvml"].reason.startswith("no NVML field could be read")
    assert "Not Supported" in results["nvml"].reason
    assert nvml.initialised == 0


def test_a_worker_on_another_gpu_voids_the_figures():
    nvml = FakeNvml(gpus())
    results = run_case(collector(nvml, "cuda:0"), worker_uuid=UUIDS[1], timed_s=0.05)
    assert not results["nvml"].ok and "mismatch" in results["nvml"].reason
    assert not results["nvml"].metrics and not results["energy"].metrics


def test_a_worker_missing_from_the_process_list_is_explained():
    devices = gpus()
    devices[0].processes = [(PID + 100000, 1 << 30)]
    gpu = run_case(collector(FakeNvml(devices)), timed_s=0.08)["nvml"]
    assert gpu.ok and "nvml_process_used_bytes" not in gpu.metrics
    assert "PID namespace" in gpu.reason


def test_a_timed_window_between_samples_leaves_summaries_empty_with_a_reason():
    nvml = FakeNvml(gpus())
    results = run_case(collector(nvml, interval_s=0.3), before_s=0.05, timed_s=0.01,
                       after_s=0.35)
    gpu = results["nvml"]
    assert gpu.ok and "gpu_util_mean_pct" not in gpu.metrics
    assert "no sample inside the timed window" in gpu.reason


def test_sampler_threads_end_with_stop():
    before = {t.name for t in threading.enumerate()}
    run_case(collector(FakeNvml(gpus())), timed_s=0.05)
    assert not [t for t in threading.enumerate()
                if t.name.startswith("archbench-") and t.name not in before]


def test_throttle_reason_names():
    assert throttle_names(0) == "none"
    assert throttle_names(0x4 | 0x40) == "sw_power_cap,hw_thermal_slowdown"
    assert throttle_names(0x1 | 0x10000) == "gpu_idle,0x10000"


def test_cpu_cases_get_no_nvml_sampler():
    (nvml_item,) = [c for c in parent_collectors(Case(model="mlp", batch_size=1))
                    if getattr(c, "name", None) == "nvml"]
    assert isinstance(nvml_item, CollectorResult) and nvml_item.reason == "not a CUDA case"
