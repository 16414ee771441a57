"""GPU telemetry and energy through NVML (nvidia-ml-py), sampled from the parent process.

Every `telemetry_interval_s` (20 ms by default) a parent thread reads, for the case's GPU:
utilisation (GPU and memory), power (the instantaneous field where the GPU has one, else the
driver's averaged reading), SM clock, temperature, clock-event (throttle) reasons, device
memory used, the worker's own GPU memory, and the total-energy counter. The timed window's
samples are summarised (mean/max); energy comes from `bench.collectors.energy`.

The device is mapped by UUID without touching CUDA in the parent (`nvml_devices`). The worker
reports the UUID torch actually used; a mismatch voids the GPU figures rather than
attributing another GPU's numbers to the case.

No nvidia-ml-py, no driver, no GPU, a field NotSupported: the affected fields stay empty and
`info["collectors"]["nvml"]` says why; nothing raises.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from bench.collectors import timeline
from bench.collectors.base import CaseFacts, CollectorResult, Series, Target
from bench.collectors.energy import EnergyUnavailable, best
from bench.collectors.nvml_devices import (
    Mapped,
    MappingError,
    describe_error,
    load_nvml,
    map_device,
    normalize_uuid,
)
from bench.collectors.sampler import PeriodicSampler, StopSampling
from bench.suite.spec import Case

#: Clock-event (throttle) reason bits, as defined by NVML (nvmlClocksEventReason*).
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
#: The per-process memory query is slower than the others; read it every this many ticks.
PROCESS_EVERY = 5


# ---- fields ---------------------------------------------------------------------------------
Reader = Callable[[Any, Any], dict[str, float]]


def _utilization(nvml: Any, handle: Any) -> dict[str, float]:
    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
    return {"gpu_util_pct": float(rates.gpu), "mem_util_pct": float(rates.memory)}


def _power_instant(nvml: Any, handle: Any) -> dict[str, float]:
    (value,) = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])
    if value.nvmlReturn != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(value.nvmlReturn)
    return {"power_w": float(value.value.uiVal) / 1e3}


def _power_average(nvml: Any, handle: Any) -> dict[str, float]:
    return {"power_w": float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1e3}


def _sm_clock(nvml: Any, handle: Any) -> dict[str, float]:
    return {"sm_clock_mhz": float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))}


def _temperature(nvml: Any, handle: Any) -> dict[str, float]:
    return {"temperature_c": float(nvml.nvmlDeviceGetTemperature(handle,
                                                                  nvml.NVML_TEMPERATURE_GPU))}


def _clock_events(nvml: Any, handle: Any) -> dict[str, float]:
    read = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
        nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    return {"clock_events": float(read(handle))}


def _device_memory(nvml: Any, handle: Any) -> dict[str, float]:
    return {"device_used_bytes": float(nvml.nvmlDeviceGetMemoryInfo(handle).used)}


def _energy(nvml: Any, handle: Any) -> dict[str, float]:
    return {"energy_mj": float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))}


#: field name -> readers tried in order (the first that works is kept).
FIELDS: dict[str, tuple[Reader, ...]] = {
    "utilization": (_utilization,),
    "power": (_power_instant, _power_average),
    "sm_clock": (_sm_clock,),
    "temperature": (_temperature,),
    "clock_events": (_clock_events,),
    "device_memory": (_device_memory,),
    "energy": (_energy,),
}


class NvmlCollector:
    name = "nvml"

    def __init__(self, device: str, interval_s: float, *, nvml: Any = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.device = device
        self.interval_s = interval_s
        self._nvml = nvml
        self._environ = environ if environ is not None else os.environ
        self._initialised = False
        self._mapped: Mapped | None = None
        self._readers: dict[str, Reader] = {}
        #: field -> why it is empty (NotSupported, an error while sampling...)
        self.missing: dict[str, str] = {}
        self._sampler: PeriodicSampler | None = None
        self._target: Target | None = None
        self._tick = 0
        self._process_seen = False
        self.failure: str | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, target: Target) -> None:
        self._target = target
        try:
            nvml = self._nvml = self._nvml or load_nvml()
            try:
                nvml.nvmlInit()
            except Exception as exc:
                raise MappingError(f"NVML unavailable ({describe_error(nvml, exc)}): no "
                                   "driver or no NVIDIA GPU") from None
            self._initialised = True
            self._mapped = map_device(nvml, self.device, self._environ)
        except MappingError as exc:
            self.failure = str(exc)
            self._shutdown()
            return
        self._choose_readers()
        if not self._readers:
            self.failure = "no NVML field could be read: " + "; ".join(
                f"{k}: {v}" for k, v in self.missing.items())
            self._shutdown()
            return
        self._sampler = PeriodicSampler(self._read, self.interval_s, name="nvml-sampler",
                                        cpu=target.sampler_cpu)
        self._sampler.start()

    def on_phase(self, phase: str, t_unix: float) -> None:
        pass

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._initialised and self._nvml is not None:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:
                self.missing.setdefault("shutdown", describe_error(self._nvml, exc))

    # -- sampling ---------------------------------------------------------------------------
    def _choose_readers(self) -> None:
        """Try each field once; keep the first reader that works, note why others fail."""
        nvml, handle = self._nvml, self._mapped.handle if self._mapped else None
        for field, readers in FIELDS.items():
            reasons = []
            for reader in readers:
                try:
                    reader(nvml, handle)
                except Exception as exc:
                    reasons.append(describe_error(nvml, exc))
                    continue
                self._readers[field] = reader
                if reader is _power_average:
                    self.missing["power_instant"] = (
                        f"{reasons[-1]}; power_w is the driver's averaged reading")
                break
            else:
                self.missing[field] = "; ".join(reasons)

    def _read(self) -> dict[str, float]:
        nvml, handle = self._nvml, self._mapped.handle if self._mapped else None
        values: dict[str, float] = {}
        for field, reader in list(self._readers.items()):
            try:
                values.update(reader(nvml, handle))
            except Exception as exc:  # a field that fails mid-run stops; the others go on
                del self._readers[field]
                self.missing[field] = f"failed while sampling: {describe_error(nvml, exc)}"
        if self._tick % PROCESS_EVERY == 0 and "process_memory" not in self.missing:
            used = self._process_memory()
            if used is not None:
                values["process_used_bytes"] = used
        self._tick += 1
        if not self._readers and not values:
            raise StopSampling
        return values

    def _process_memory(self) -> float | None:
        nvml = self._nvml
        try:
            processes = nvml.nvmlDeviceGetComputeRunningProcesses(self._mapped.handle
                                                                  if self._mapped else None)
        except Exception as exc:
            self.missing["process_memory"] = describe_error(nvml, exc)
            return None
        pid = self._target.pid if self._target else None
        for process in processes:
            if process.pid == pid and process.usedGpuMemory is not None:
                self._process_seen = True
                return float(process.usedGpuMemory)
        return None

    # -- result -----------------------------------------------------------------------------
    def results(self, facts: CaseFacts) -> list[CollectorResult]:
        if self.failure is not None:
            reason = self.failure
            return [CollectorResult("nvml", ok=False, reason=reason),
                    CollectorResult("energy", ok=False, reason=f"no NVML: {reason}")]
        mapped = self._mapped
        if (mapped is not None and facts.worker_cuda_uuid and
                normalize_uuid(facts.worker_cuda_uuid) != normalize_uuid(mapped.uuid)):
            reason = (f"device mapping mismatch: NVML sampled {mapped.uuid} but the worker ran "
                      f"on {facts.worker_cuda_uuid}; figures dropped (set "
                      "CUDA_DEVICE_ORDER=PCI_BUS_ID)")
            return [CollectorResult("nvml", ok=False, reason=reason),
                    CollectorResult("energy", ok=False, reason=reason)]
        samples = self._sampler.samples if self._sampler else []
        if self._sampler and self._sampler.error:
            self.missing["sampler"] = self._sampler.error
        if not self._process_seen and "process_memory" not in self.missing:
            self.missing["process_memory"] = (
                "the worker's pid never appeared in NVML's process list (another PID "
                "namespace, e.g. a container, or no permission)")
        series = _series(samples)
        metrics = self._summaries(series, facts)
        notes = [f"{k}: {v}" for k, v in self.missing.items()]
        if mapped is not None and mapped.note:
            notes.append(mapped.note)
        if not samples:
            notes.insert(0, "no NVML sample was taken (the worker ended at once)")
        nvml_result = CollectorResult(
            "nvml", ok=bool(samples), reason="; ".join(notes) or None, metrics=metrics,
            series=tuple(s for s in series.values() if s.name in TIMELINE))
        return [nvml_result, _energy_result(series, facts)]

    def _summaries(self, series: dict[str, Series], facts: CaseFacts) -> dict[str, Any]:
        span = facts.window.span("timed")

        def timed(name: str) -> list[float]:
            return timeline.in_window(series[name].points, span) if name in series else []

        def whole(name: str) -> list[float]:
            return [v for _, v in series[name].points] if name in series else []

        out: dict[str, Any] = {
            "gpu_util_mean_pct": timeline.mean(timed("gpu_util_pct")),
            "gpu_util_max_pct": timeline.peak(timed("gpu_util_pct")),
            "mem_util_mean_pct": timeline.mean(timed("mem_util_pct")),
            "power_mean_w": timeline.mean(timed("power_w")),
            "power_max_w": timeline.peak(timed("power_w")),
            "sm_clock_mean_mhz": timeline.mean(timed("sm_clock_mhz")),
            "temperature_max_c": timeline.peak(timed("temperature_c")),
            "nvml_device_used_bytes": timeline.peak(whole("device_used_bytes")),
            "nvml_process_used_bytes": timeline.peak(whole("process_used_bytes")),
        }
        events = timed("clock_events")
        if events:
            bits = 0
            for value in events:
                bits |= int(value)
            out["throttle_reasons"] = throttle_names(bits)
        for key in ("nvml_device_used_bytes", "nvml_process_used_bytes"):
            if out[key] is not None:
                out[key] = int(out[key])
        sampled_inside = span is not None and any(
            span[0] <= t <= span[1] for s in series.values() for t, _ in s.points)
        if span is not None and series and not sampled_inside:
            self.missing["timed_window"] = (
                f"no sample inside the timed window ({(span[1] - span[0]) * 1e3:.0f} ms, "
                f"interval {self.interval_s * 1e3:.0f} ms); timed summaries are empty")
        return {k: v for k, v in out.items() if v is not None}


#: Series kept in the record's timeline (the others are summarised only).
TIMELINE = ("gpu_util_pct", "power_w", "sm_clock_mhz", "temperature_c")
_COMBINE = {"temperature_c": "max", "device_used_bytes": "max", "process_used_bytes": "max"}


def _series(samples: list[tuple[float, dict[str, float]]]) -> dict[str, Series]:
    points: dict[str, list[tuple[float, float]]] = {}
    for t, values in samples:
        for name, value in values.items():
            points.setdefault(name, []).append((t, value))
    return {name: Series(name, tuple(p), combine=_COMBINE.get(name, "mean"))
            for name, p in points.items()}


def throttle_names(bits: int) -> str:
    """'none', or the set reasons joined by commas (unknown bits as hex)."""
    if not bits:
        return "none"
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if bits & bit]
    rest = bits & ~sum(CLOCK_EVENT_REASONS)
    if rest:
        names.append(hex(rest))
    return ",".join(names)


def _energy_result(series: dict[str, Series], facts: CaseFacts) -> CollectorResult:
    span = facts.window.span("timed")
    if span is None:
        return CollectorResult("energy", ok=False, reason="the case never reached its timed "
                                                          "window")
    counter = series["energy_mj"].points if "energy_mj" in series else ()
    power = series["power_w"].points if "power_w" in series else ()
    try:
        figure, counter_reason = best(counter, power, span)
    except EnergyUnavailable as exc:
        return CollectorResult("energy", ok=False, reason=str(exc))
    metrics: dict[str, Any] = {"energy_j": figure.energy_j, "energy_window_s": figure.window_s,
                               "energy_method": figure.method}
    if facts.median_s is not None:
        metrics["energy_per_item_j"] = figure.per_item_j(facts.median_s, facts.batch_size)
    warning = figure.warning(span[1] - span[0])
    reason = f"counter not used: {counter_reason}" if counter_reason else None
    return CollectorResult("energy", ok=True, reason=reason, metrics=metrics,
                           warnings=[warning] if warning else [])


def make(case: Case) -> NvmlCollector | CollectorResult:
    if case.device_kind != "cuda":
        return CollectorResult("nvml", ok=False, reason="not a CUDA case")
    return NvmlCollector(case.device, case.settings.telemetry_interval_s)
