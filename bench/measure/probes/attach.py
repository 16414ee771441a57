"""The probes' side of a worker: a few calls from `bench.measure.worker.execute`.

    probes = WorkerProbes.attach(job, phase, out)      # subscribe probes to the PhaseBus
    probes.after_build(prepared, batch_size)            # bytes-moved estimate (roofline)
    probes.after_timing(prepared, device, phase)        # profiler, when asked for
    probes.finish()                                     # after "teardown": results into out

Every step records a failure as its collector's reason instead of failing the case: a
missing measurement must never cost the timing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from bench.collectors.base import CollectorResult, WorkerProbe
from bench.measure.probes.profiler import profile_calls
from bench.measure.probes.registry import worker_probes
from bench.measure.probes.traffic import bytes_moved
from bench.measure.protocol import Findings, WorkerJob
from bench.measure.stages import Prepared

TRACES_DIR = "traces"


class Bus(Protocol):
    def subscribe(self, listener: Callable[[str], None]) -> None: ...

    def __call__(self, name: str) -> None: ...


class WorkerProbes:
    def __init__(self, job: WorkerJob, out: Findings,
                 items: list[WorkerProbe | CollectorResult]) -> None:
        self.job = job
        self.out = out
        self.items = items
        self.statuses: dict[str, dict[str, Any]] = {}

    @classmethod
    def attach(cls, job: WorkerJob, phase: Bus, out: Findings) -> WorkerProbes:
        probes = cls(job, out, worker_probes(job.case))
        for item in probes.items:
            if not isinstance(item, CollectorResult):
                phase.subscribe(item.on_phase)
        return probes

    def after_build(self, prepared: Prepared, batch_size: int) -> None:
        """The bytes-moved estimate of one forward pass of the prepared model."""
        if self.job.case.mode == "train":  # a forward replay would move BatchNorm statistics
            self.statuses["traffic"] = {"ok": False, "reason": "not estimated for training "
                                                               "steps (no roofline for them)"}
            return
        if prepared.module is None or prepared.inputs is None:
            self.statuses["traffic"] = {"ok": False, "reason": "no eager module to replay"}
            return
        try:
            fallback = int(self.out.metrics.get("weight_bytes", 0)) + \
                int(self.out.metrics.get("buffer_bytes", 0))
            with prepared.autocast():
                parts = bytes_moved(prepared.module, prepared.inputs,
                                    fallback_weight_bytes=fallback)
        except Exception as exc:
            self.statuses["traffic"] = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
            return
        self.out.metrics["bytes_moved_per_item"] = parts["total"] / batch_size
        self.statuses["traffic"] = {"ok": True, "reason": None}

    def after_timing(self, prepared: Prepared, device: torch.device, phase: Bus) -> None:
        """The operator profile, in a phase of its own after the timed window."""
        settings = self.job.case.settings
        if not settings.profile:
            return
        phase("profile")
        run_dir = self.job.run_dir
        trace = Path(run_dir) / TRACES_DIR / f"{self.job.case.case_id}.json" if run_dir else None
        try:
            with prepared.grad_mode():
                result = profile_calls(prepared.step, device, settings.profile_iters, trace)
        except Exception as exc:
            self.statuses["profile"] = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
            return
        if trace is not None and run_dir:
            result["trace"] = str(trace.relative_to(run_dir))
        self.out.info["profile"] = result
        self.statuses["profile"] = {
            "ok": True, "reason": None if trace else "no run folder: no Chrome trace written"}

    def finish(self) -> None:
        statuses: dict[str, Any] = {}
        for item in self.items:
            result = item if isinstance(item, CollectorResult) else item.result()
            self.out.metrics.update(result.metrics)
            self.out.info.update(result.info)
            self.out.warnings.extend(result.warnings)
            statuses[result.name] = result.status()
        statuses.update(self.statuses)
        self.out.info.setdefault("collectors", {}).update(statuses)
