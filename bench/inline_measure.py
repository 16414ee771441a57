"""Measure a module the caller already holds, in this process, with the worker's engine.

The pytest fixture `archbench(module, example_input)` needs this: a module defined inside a
test cannot be rebuilt in a worker from a suite entry. The module goes through exactly the
stages of a suite case (`bench.worker.execute` with the build step replaced): capability
check, transforms (precision, pruning, compile, train mode), statistics, fidelity, warm-up,
calibrated timing and the adaptive stop. It is deep-copied first, so transforms never touch
the caller's module. What in-process measuring cannot give: isolation (a crash ends the
caller) and a timeout.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import torch

from bench.isolation import outcome_from
from bench.jobs import Message, WorkerJob
from bench.models.build import BuiltModel, Inputs
from bench.results import Record
from bench.runner import make_record
from bench.spec import Case
from bench.worker import run_case


def measure_module(module: torch.nn.Module, example_input: Any, case: Case, run_id: str, *,
                   name: str | None = None) -> Record:
    """Time `module(example_input)` (a tuple input is unpacked) as `case` says; a Record.

    Failures become records (`failed`, `oom`, `unsupported`) like a worker's, never raise.
    """
    started = datetime.now(UTC)
    clock_start = time.perf_counter()
    inputs = as_inputs(example_input)
    built = BuiltModel(copy.deepcopy(module), lambda batch: inputs)
    messages: list[Message] = []
    run_case(WorkerJob(case=case), messages.append, prebuilt=(built, inputs))
    outcome = outcome_from(messages)
    if outcome.payload is not None:
        outcome.payload["info"]["isolation"] = "inline"
    record = make_record(case, outcome, run_id, started_at=started.isoformat(),
                         duration_s=time.perf_counter() - clock_start)
    return record if name is None else replace(record, name=name)


def as_inputs(example_input: Any) -> Inputs:
    if isinstance(example_input, torch.Tensor):
        return example_input
    if isinstance(example_input, (tuple, list)) and all(isinstance(t, torch.Tensor)
                                                        for t in example_input):
        return tuple(example_input)
    raise TypeError(f"example_input must be a tensor or a tuple of tensors, got "
                    f"{type(example_input).__name__}")
