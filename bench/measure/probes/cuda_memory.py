"""CUDA allocator peaks per phase, read inside the worker.

`torch.cuda.max_memory_allocated` (tensors) and `max_memory_reserved` (what the caching
allocator holds from the driver) are high-water marks; they are read and reset at every phase
boundary, so `cuda_max_allocated_timed_bytes` is the peak of the timed window alone, not of
the build before it. Phases are whatever the worker announces (build, warmup, timed, and any
stage added later); each gets `cuda_max_{allocated,reserved}_<phase>_bytes`.

The worker also reports the UUID of the device it ran on, which the parent checks against
the NVML device it sampled.
"""

from __future__ import annotations

from typing import Any

from bench.collectors.base import CollectorResult
from bench.suite.spec import Case

#: Phases whose peaks are not recorded: nothing of the case's runs after these.
UNRECORDED = ("teardown",)


class CudaMemoryProbe:
    name = "cuda_memory"

    def __init__(self, device: str) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._phase: str | None = None
        self.metrics: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.error: str | None = None

    def on_phase(self, phase: str) -> None:
        cuda = self._torch.cuda
        try:
            # Before the build nothing has touched CUDA; reading would initialise it early.
            if cuda.is_initialized():
                if self._phase is not None and self._phase not in UNRECORDED:
                    self.metrics[f"cuda_max_allocated_{self._phase}_bytes"] = int(
                        cuda.max_memory_allocated(self._device))
                    self.metrics[f"cuda_max_reserved_{self._phase}_bytes"] = int(
                        cuda.max_memory_reserved(self._device))
                cuda.reset_peak_memory_stats(self._device)
                if "cuda_uuid" not in self.info:
                    self.info["cuda_uuid"] = str(cuda.get_device_properties(self._device).uuid)
        except Exception as exc:  # never fail the case over a memory reading
            self.error = f"{type(exc).__name__}: {exc}"
        self._phase = phase

    def result(self) -> CollectorResult:
        if self.error:
            return CollectorResult(self.name, ok=False, reason=self.error, metrics=self.metrics,
                                   info=self.info)
        if not self.metrics:
            return CollectorResult(self.name, ok=False,
                                   reason="the case ended before CUDA was used")
        return CollectorResult(self.name, ok=True, metrics=self.metrics, info=self.info)


def make(case: Case) -> CudaMemoryProbe | CollectorResult:
    if case.device_kind != "cuda":
        return CollectorResult("cuda_memory", ok=False, reason="not a CUDA case")
    return CudaMemoryProbe(case.device)
