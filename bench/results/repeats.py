"""Pool the repeats of a case into one record. Pure: no I/O, no torch.

With `repeats = R`, a case is measured by R worker processes spread through the run, and each
writes its own record as it ends (so an interrupted run keeps every finished repeat). Readers
want one row per case: `merge_repeats` pools the samples, keeps each repeat's median (the
unit the regression gate tests when it has at least three a side), and takes the worst
status, so a repeat that crashed is not hidden by the others.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bench.results.record import Record

if TYPE_CHECKING:
    from bench.stats import Drift

_STATUS_ORDER = ("crashed", "oom", "timeout", "failed", "unsupported", "ok")


def merge_repeats(records: Iterable[Record]) -> list[Record]:
    """One record per (run, case), in the order cases first appear."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        groups.setdefault((record.run_id, record.case_id), []).append(record)
    return [merge(group) for group in groups.values()]


def run_drift(records: Iterable[Record]) -> Drift | None:
    """How the machine's speed moved between the rounds of the run these records come from
    (`bench.stats.round_drift`); None when too few cases had several workers."""
    from bench.stats import round_drift

    cases = []
    for record in merge_repeats(records):
        timing = record.timing or {}
        rounds, medians = timing.get("repeat_ids") or [], timing.get("repeat_medians_ns") or []
        if record.status == "ok" and len(rounds) == len(medians) >= 2:
            cases.append((rounds, medians))
    return round_drift(cases)


def merge(group: list[Record]) -> Record:
    """The repeats of one case as one record (a single record is returned with its repeat
    median added, so every reader sees the same shape)."""
    group = sorted(group, key=lambda r: r.repeat)
    ok = [r for r in group if r.status == "ok" and r.samples_ns]
    worst = min(group, key=lambda r: _STATUS_ORDER.index(r.status))
    base = ok[0] if ok else worst
    timing: dict[str, Any] | None = None
    if ok:
        timing = dict(ok[0].timing or {})
        timing["samples_ns"] = [s for r in ok for s in r.samples_ns]
        # A record that is already a merge keeps its repeats' medians (merging is
        # idempotent: pooling twice must not collapse five repeats into one).
        timing["repeat_medians_ns"] = [m for r in ok for m in _repeat_medians(r)]
        timing["repeat_ids"] = [k for r in ok for k in _repeat_ids(r)]
        timing["repeat_ci_rel"] = [x for r in ok for x in _repeat_ci_rel(r)]
        timing["target_met"] = all((r.timing or {}).get("target_met") for r in ok)
        timing["measure_ns"] = sum((r.timing or {}).get("measure_ns") or 0 for r in ok)
    metrics = dict(base.metrics)
    metrics.update(_timed_metric_levels(ok))
    for key in _peak_metrics(ok):
        values = [r.metrics[key] for r in ok if isinstance(r.metrics.get(key), (int, float))]
        if values:
            metrics[key] = max(values)
    info = dict(base.info)
    counted = [r for r in group if r.status == "ok" and _per_call(r)]
    if len(counted) > 1:
        metrics.update(_pooled_counts(counted, base))
        info["counting"] = {**(base.info.get("counting") or {}),
                            "per_call": [x for r in counted for x in _per_call(r)]}
    if len(group) > 1:
        info["repeats"] = [{"repeat": r.repeat, "status": r.status,
                            "worker_pid": r.info.get("worker_pid")} for r in group]
    return replace(
        base,
        status=worst.status,
        reason=worst.reason if worst.status != "ok" else base.reason,
        traceback=worst.traceback if worst.status != "ok" else base.traceback,
        timing=timing if ok else worst.timing,
        metrics=metrics,
        info=info,
        warnings=tuple(dict.fromkeys(w for r in group for w in r.warnings)),
        duration_s=sum(r.duration_s or 0.0 for r in group),
    )


def _repeat_medians(record: Record) -> list[float]:
    merged = (record.timing or {}).get("repeat_medians_ns")
    return list(merged) if merged else [statistics.median(record.samples_ns)]


def _repeat_ci_rel(record: Record) -> list[float | None]:
    """Each worker's own relative interval of its median, as it measured it."""
    timing = record.timing or {}
    merged = timing.get("repeat_ci_rel")
    if merged is not None and len(merged) == len(_repeat_medians(record)):
        return list(merged)
    own = timing.get("ci_rel")
    return [float(own) if isinstance(own, (int, float)) else None] * len(
        _repeat_medians(record))


def _repeat_ids(record: Record) -> list[int]:
    merged = (record.timing or {}).get("repeat_medians_ns")
    ids = (record.timing or {}).get("repeat_ids")
    if merged and ids and len(ids) == len(merged):
        return [int(k) for k in ids]
    return [record.repeat] if not merged else [record.repeat + i for i in range(len(merged))]


def _per_call(record: Record) -> list[float]:
    return list((record.info.get("counting") or {}).get("per_call") or [])


def _pooled_counts(records: list[Record], base: Record) -> dict[str, float]:
    """Instruction counts of several repeats: the median and spread of all their samples
    (per call), as one repeat's are computed (bench.measure.counting)."""
    values = [x for r in records for x in _per_call(r)]
    median = statistics.median(values)
    batch = base.metrics["instructions_per_call"] / base.metrics["instructions_per_item"] \
        if base.metrics.get("instructions_per_item") else 1.0
    return {"instructions_per_call": median, "instructions_per_item": median / batch,
            "instructions_spread_pct": (max(values) - min(values)) / median * 100 if median
            else 0.0}


def _timed_metric_levels(records: list[Record]) -> dict[str, float]:
    """Timings a worker reports as metrics with their interval (`prefill_ms`,
    `prefill_ci_low_ms`, `prefill_ci_high_ms`), as the case's level across its workers
    (`bench.stats.level`), like the main timing: one worker's interval sees nothing of what
    varies between runs. A rate beside them (`prefill_throughput_items_s`) follows."""
    from bench.stats import level

    if len(records) < 2:
        return {}
    out: dict[str, float] = {}
    first = records[0].metrics
    confidence = float(records[0].settings.get("confidence") or 0.95)
    stems = [k.removesuffix("_ci_low_ms") for k in first if k.endswith("_ci_low_ms")]
    for stem in stems:
        values = [r.metrics.get(f"{stem}_ms") for r in records]
        timed = [float(v) for v in values if isinstance(v, (int, float)) and v > 0]
        if len(timed) < len(values):
            continue
        case = level(timed, confidence)
        out.update({f"{stem}_ms": case.value, f"{stem}_ci_low_ms": case.low,
                    f"{stem}_ci_high_ms": case.high})
        rate = first.get(f"{stem}_throughput_items_s")
        if isinstance(rate, (int, float)):
            out[f"{stem}_throughput_items_s"] = float(rate) * timed[0] / case.value
    return out


def _peak_metrics(records: list[Record]) -> set[str]:
    """Memory peaks: the case's peak is the highest any repeat reached."""
    names = {k for r in records for k in r.metrics}
    return {k for k in names if k.endswith("_bytes") and
            any(word in k for word in ("peak", "max", "used"))}
