"""What the parent hands a worker, and the worker's entry points — without importing torch.

The parent process of a run must stay torch-free: importing torch costs seconds (every
`archbench --help` would pay it) and a parent that touched CUDA could not safely fork. The
worker module (which imports torch) is loaded only inside workers, where the forkserver has
already preloaded it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.spec import Case

#: A message on the worker's pipe: ("phase", name, unix_time), ("done", payload) or
#: ("error", status, message, traceback).
Message = tuple[Any, ...]
Send = Callable[[Message], None]


@dataclass(frozen=True)
class WorkerJob:
    case: Case
    #: Folders searched first for user factory modules (the suite's folder, the cwd).
    search_path: tuple[str, ...] = ()
    #: File receiving the worker's stdout/stderr and fatal-error tracebacks (None: inherit).
    log_path: str | None = None
    #: The run folder, for files a case writes there (profiler traces); None: write none.
    run_dir: str | None = None
    #: Which of the case's repeats this worker measures (0-based).
    repeat: int = 0


def plain(value: Any) -> Any:
    """Plain Python values only, for what crosses the pipe to the parent: unpickling a torch
    or numpy object there (even `torch.__version__`, a str subclass) would import torch."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return plain(value.item())  # numpy / torch scalars
    return str(value)


def worker_entry(job: WorkerJob, conn: Any) -> None:
    """Target of a worker process: hands over to `bench.worker` inside the child."""
    from bench.worker import worker_main

    worker_main(job, conn)


def run_inline(job: WorkerJob, send: Send) -> None:
    """Run a case in this process (inline isolation), importing torch only now."""
    from bench.worker import run_case

    run_case(job, send)
