# ruff: noqa: N802  (the names mirror the pynvml API)
"""A fake `pynvml` for tests: the names archbench's NVML collector uses, with devices whose
readings and failures a test chooses.

Power is constant per device (or a function of time); the energy counter integrates it and
refreshes only every `energy_update_s`, like the driver's. Any function can be made to fail
with an NVML error code through `fail` ({"nvmlDeviceGetPowerUsage": NOT_SUPPORTED, ...}),
or to start failing after a number of calls through `fail_after`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_FI_DEV_POWER_INSTANT = 186
NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0

_NAMES = {NVML_ERROR_UNINITIALIZED: "Uninitialized", NVML_ERROR_NOT_SUPPORTED: "Not Supported",
          NVML_ERROR_NOT_FOUND: "Not Found", NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
          NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
          NVML_ERROR_GPU_IS_LOST: "GPU is lost"}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _NAMES.get(self.value, f"NVML error {self.value}")


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA Fake 80GB"
    power_w: float | Callable[[float], float] = 300.0
    gpu_util: int = 97
    mem_util: int = 40
    sm_clock_mhz: int = 1980
    temperature_c: int = 61
    clock_events: int = 0
    used_bytes: int = 10 << 30
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    energy_update_s: float = 0.0
    started: float = field(default_factory=time.time)

    def power_at(self, t: float) -> float:
        return self.power_w(t) if callable(self.power_w) else self.power_w

    def energy_mj(self, now: float) -> int:
        """Integral of power since `started`, refreshed every `energy_update_s`."""
        if self.energy_update_s:
            now = self.started + math.floor((now - self.started) / self.energy_update_s) * \
                self.energy_update_s
        if callable(self.power_w):  # midpoint rule, fine enough for tests
            steps = 200
            dt = (now - self.started) / steps
            joules = sum(self.power_at(self.started + (i + 0.5) * dt) for i in range(steps)) * dt
        else:
            joules = self.power_w * (now - self.started)
        return int(joules * 1e3) + 123_456_789  # counts since the driver loaded


class FakeNvml:
    """Stands in for the `pynvml` module (pass it as `nvml=`)."""

    NVMLError = NVMLError
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_FI_DEV_POWER_INSTANT = NVML_FI_DEV_POWER_INSTANT
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU

    def __init__(self, gpus: list[FakeGpu], *, fail: dict[str, int] | None = None,
                 fail_after: dict[str, tuple[int, int]] | None = None) -> None:
        self.gpus = gpus
        self.fail = dict(fail or {})
        self.fail_after = dict(fail_after or {})
        self.calls: dict[str, int] = {}
        self.initialised = 0
        self.shutdowns = 0

    def _check(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.fail:
            raise NVMLError(self.fail[name])
        if name in self.fail_after:
            after, code = self.fail_after[name]
            if self.calls[name] > after:
                raise NVMLError(code)
        if name != "nvmlInit" and self.initialised <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any) -> FakeGpu:
        if handle not in self.gpus:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return handle  # type: ignore[no-any-return]

    # -- lifecycle and enumeration ----------------------------------------------------------
    def nvmlInit(self) -> None:
        self._check("nvmlInit")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.initialised -= 1
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check("nvmlDeviceGetHandleByIndex")
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeGpu:
        self._check("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.gpus:
            if gpu.uuid == text:
                return gpu
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._check("nvmlDeviceGetUUID")
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> bytes:
        self._check("nvmlDeviceGetName")
        return self._gpu(handle).name.encode()  # old pynvml versions return bytes

    # -- readings ---------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> SimpleNamespace:
        self._check("nvmlDeviceGetUtilizationRates")
        gpu = self._gpu(handle)
        return SimpleNamespace(gpu=gpu.gpu_util, memory=gpu.mem_util)

    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: list[int]) -> list[Any]:
        self._check("nvmlDeviceGetFieldValues")
        gpu = self._gpu(handle)
        out = []
        for field_id in field_ids:
            ret = self.fail.get(f"field:{field_id}", NVML_SUCCESS)
            milliwatts = int(gpu.power_at(time.time()) * 1e3)
            out.append(SimpleNamespace(fieldId=field_id, nvmlReturn=ret,
                                       value=SimpleNamespace(uiVal=milliwatts)))
        return out

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        self._check("nvmlDeviceGetPowerUsage")
        return int(self._gpu(handle).power_at(time.time()) * 1e3)

    def nvmlDeviceGetClockInfo(self, handle: Any, kind: int) -> int:
        self._check("nvmlDeviceGetClockInfo")
        assert kind == NVML_CLOCK_SM
        return self._gpu(handle).sm_clock_mhz

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        self._check("nvmlDeviceGetTemperature")
        return self._gpu(handle).temperature_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        self._check("nvmlDeviceGetCurrentClocksEventReasons")
        return self._gpu(handle).clock_events

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> SimpleNamespace:
        self._check("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(used=self._gpu(handle).used_bytes, total=80 << 30)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[SimpleNamespace]:
        self._check("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used)
                for pid, used in self._gpu(handle).processes]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._check("nvmlDeviceGetTotalEnergyConsumption")
        return self._gpu(handle).energy_mj(time.time())
