"""Measure a module the caller already holds, in this process, with the worker's engine.

The pytest fixture `archbench(module, example_input)` needs this: a module defined inside a
test cannot be rebuilt in a worker from a suite entry. Everything after the build is the
worker's own code (capability check, thread pinning, model statistics, warm-up, calibrated
timing, adaptive stop), so the record is the same shape as a suite case's. What in-process
measuring cannot give: isolation (a crash ends the caller) and a timeout.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import torch

from bench import capability
from bench.errors import UnsupportedCase
from bench.isolation import Outcome
from bench.models.build import Inputs, call, move_inputs
from bench.results import Record
from bench.runner import make_record
from bench.spec import Case
from bench.timing import measure
from bench.worker import (
    CaseOutput,
    Message,
    PhaseBus,
    clock_for,
    device_name,
    is_oom,
    record_model_stats,
    torch_threads,
)


def measure_module(module: torch.nn.Module, example_input: Any, case: Case, run_id: str, *,
                   name: str | None = None) -> Record:
    """Time `module(example_input)` (a tuple input is unpacked) as `case` says; a Record.

    Failures become records (`failed`, `oom`, `unsupported`) like a worker's, never raise.
    """
    started = datetime.now(UTC)
    clock_start = time.perf_counter()
    phases: list[tuple[str, float]] = []

    def send(message: Message) -> None:
        if message[0] == "phase":
            phases.append((message[1], message[2]))

    try:
        payload = _execute(module, _as_inputs(example_input), case, send)
        outcome = Outcome(status="ok", payload=payload, phases=phases)
    except UnsupportedCase as exc:
        outcome = Outcome(status="unsupported", message=str(exc), phases=phases)
    except Exception as exc:
        outcome = Outcome(status="oom" if is_oom(exc) else "failed",
                          message=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(), phases=phases)
    record = make_record(case, outcome, run_id, started_at=started.isoformat(),
                         duration_s=time.perf_counter() - clock_start)
    return record if name is None else replace(record, name=name)


def _as_inputs(example_input: Any) -> Inputs:
    if isinstance(example_input, torch.Tensor):
        return example_input
    if isinstance(example_input, (tuple, list)) and all(isinstance(t, torch.Tensor)
                                                        for t in example_input):
        return tuple(example_input)
    raise TypeError(f"example_input must be a tensor or a tuple of tensors, got "
                    f"{type(example_input).__name__}")


def _execute(module: torch.nn.Module, inputs: Inputs, case: Case, send: Any) -> dict[str, Any]:
    settings = case.settings
    phase = PhaseBus(send)
    out = CaseOutput()
    with torch_threads(settings.threads):
        capability.check(case)
        phase("build")
        device = torch.device(case.device)
        module = module.to(device).eval()
        inputs = move_inputs(inputs, device)
        record_model_stats(module, inputs, case.batch_size, out)

        def step() -> Any:
            return call(module, inputs)

        with torch.inference_mode():
            timing = measure(step, clock_for(device), settings, on_phase=phase)
        phase("teardown")
        out.metrics["threads"] = torch.get_num_threads()
        out.info.update(device_name=device_name(device), torch_version=torch.__version__,
                        isolation="inline")
        return out.payload(timing)
