"""A case's record from what its worker reported and what the parent's samplers found."""

from __future__ import annotations

from bench.engine.outcome import Outcome
from bench.measure.protocol import Findings
from bench.results.record import Record
from bench.suite.spec import Case


def make_record(case: Case, outcome: Outcome, run_id: str, *, started_at: str,
                duration_s: float, collected: Findings | None = None,
                repeat: int = 0) -> Record:
    worker = outcome.done.findings if outcome.done is not None else Findings()
    collected = collected or Findings()
    info = dict(worker.info)
    info["phases"] = [[name, t] for name, t in outcome.phases]
    parent_info = dict(collected.info)
    # Worker probes and parent samplers each report their own collectors' status.
    status = {**info.get("collectors", {}), **parent_info.pop("collectors", {})}
    info.update(parent_info)
    if status:
        info["collectors"] = status
    if outcome.pid is not None:
        info["worker_pid"], info["worker_exitcode"] = outcome.pid, outcome.exitcode
    return Record(
        run_id=run_id,
        case_id=case.case_id,
        name=case.name,
        suite=case.suite,
        sweep=case.sweep,
        params=case.params(),
        settings=case.settings.to_dict(),
        status=outcome.status,
        reason=outcome.message,
        traceback=outcome.traceback,
        timing=outcome.done.timing if outcome.done is not None else None,
        metrics={**worker.metrics, **collected.metrics},
        info=info,
        warnings=(*worker.warnings, *collected.warnings),
        started_at=started_at,
        duration_s=duration_s,
        repeat=repeat,
    )
