"""What the parent hands to a worker process: small functions that import the worker's
torch-side modules only when they run, inside the worker. Torch-free at import, so the parent
can name them (as a process target, or a function to call in a worker) without loading torch.
"""

from __future__ import annotations

import os
from typing import Any

from bench.measure.protocol import Send, WorkerJob
from bench.suite.spec import Case


def worker_entry(job: WorkerJob, conn: Any) -> None:
    """Target of a case's worker process."""
    os.environ.update(dict(job.environ))  # before CUDA is initialised, which reads them
    from bench.measure.worker import worker_main

    worker_main(job, conn)


def run_inline(job: WorkerJob, send: Send) -> None:
    """Run a case in this process (inline isolation), importing torch only now."""
    from bench.measure.worker import run_case

    run_case(job, send)


def torch_info() -> dict[str, Any]:
    """Torch, CUDA and cuDNN build facts and the default thread count."""
    from bench.measure.torch_env import torch_info as read

    return read()


def measure_peaks(devices: list[str], threads: int | None, quick: bool) -> dict[str, Any]:
    """This machine's matmul and copy peaks (`archbench calibrate`)."""
    from bench.measure.peaks import measure_peaks as measure

    return measure(devices, threads, quick)


def measure_module(module: Any, example_input: Any, case: Case, send: Send) -> None:
    """Measure a module the caller holds, in this process (the pytest fixture)."""
    from bench.measure.in_process import measure_module as measure

    measure(module, example_input, case, send)
