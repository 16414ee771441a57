"""Measure a module the caller already holds, in this process, through a case's stages.

The pytest fixture `archbench(module, example_input)` needs this: a module defined inside a
test cannot be rebuilt in a worker from a suite entry. The module goes through exactly the
stages of a suite case (`bench.measure.worker.execute` with the build step replaced):
capability check, transforms, statistics, fidelity, warm-up, calibrated timing and the
adaptive stop. It is deep-copied first, so transforms never touch the caller's module. What
in-process measuring cannot give: isolation (a crash ends the caller) and a timeout.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from bench.measure.models.build import BuiltModel, Inputs
from bench.measure.protocol import Send, WorkerJob
from bench.measure.worker import run_case
from bench.suite.spec import Case


def measure_module(module: torch.nn.Module, example_input: Any, case: Case, send: Send) -> None:
    """Time `module(example_input)` (a tuple input is unpacked) as `case` says, sending the
    worker's messages; a failure is a `Failed` message, never an exception."""
    inputs = as_inputs(example_input)
    built = BuiltModel(copy.deepcopy(module), lambda batch: inputs)
    run_case(WorkerJob(case=case), send, prebuilt=(built, inputs))


def as_inputs(example_input: Any) -> Inputs:
    if isinstance(example_input, torch.Tensor):
        return example_input
    if isinstance(example_input, (tuple, list)) and all(isinstance(t, torch.Tensor)
                                                        for t in example_input):
        return tuple(example_input)
    raise TypeError(f"example_input must be a tensor or a tuple of tensors, got "
                    f"{type(example_input).__name__}")
