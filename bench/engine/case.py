"""One case on one machine: a worker on a backend, watched by the parent's samplers, turned
into a Record. The runner calls it for each case; on a Ray cluster, each node's task does."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.collectors import peaks_cache
from bench.engine.outcome import Backend
from bench.engine.record import make_record
from bench.engine.sampling import CaseSampling
from bench.measure import entry
from bench.measure.protocol import Message, WorkerJob
from bench.results.record import Record
from bench.suite.spec import Case


def run_case(case: Case, backend: Backend, run_id: str, *, search_path: Sequence[str] = (),
             log_dir: Path | None = None,
             on_message: Callable[[Message], None] | None = None,
             run_dir: Path | None = None,
             calibrations: peaks_cache.Index | None = None, repeat: int = 0,
             environ: Mapping[str, str] | None = None) -> Record:
    """Run one case on a backend and turn whatever happened into a Record.

    Parent-side collectors (`bench.engine.sampling`) sample the worker while it runs;
    `calibrations` supplies the peaks for the roofline figures; `environ` is set in the
    worker before it starts (a Ray task's `CUDA_VISIBLE_DEVICES`, which a forkserver started
    for an earlier task would not pass on).
    """
    started = datetime.now(UTC)
    stem = case.case_id if repeat == 0 else f"{case.case_id}-r{repeat}"
    log_path = str(log_dir / f"{stem}.log") if log_dir else None
    job = WorkerJob(case=case, search_path=tuple(search_path), log_path=log_path,
                    run_dir=str(run_dir) if run_dir else None, repeat=repeat,
                    environ=tuple(sorted((environ or {}).items())))
    peaks = calibrations.for_threads(case.settings.threads) if calibrations else (
        None, "no calibration lookup: the case ran outside a run folder")
    session = CaseSampling(case, inline=backend.name == "inline", calibration=peaks)
    clock_start = time.perf_counter()
    with session:
        outcome = backend.run(job, case.settings.timeout_s, session.listen(on_message),
                              on_start=session.start)
    collected = session.finish(outcome)
    record = make_record(case, outcome, run_id, started_at=started.isoformat(),
                         duration_s=time.perf_counter() - clock_start, collected=collected,
                         repeat=repeat)
    if log_path and not _has_content(log_path):
        Path(log_path).unlink(missing_ok=True)
    return record


def probe_torch(backend: Backend) -> dict[str, Any]:
    """Torch build info, read in a worker so this process never imports torch or CUDA."""
    try:
        return dict(backend.call(entry.torch_info))
    except Exception as exc:  # the run can go on; the record says why the info is missing
        return {"torch_probe_error": f"{type(exc).__name__}: {exc}"}


def _has_content(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False
