"""Results as a pandas DataFrame: one row per case, parameters and metrics as columns.

Column naming contract (reports and the gate rely on it): parameters keep their axis names
(`model`, `depth`, `width`, ..., `prune_method`, `prune_ratio`); statistics carry units
(`median_ms`, `throughput_items_s`); metrics keep the unit-suffixed names they are recorded
with (`params_total`, `peak_rss_bytes`, `energy_per_item_j`, ...).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ResultsError
from bench.results.record import Record, is_integer_column
from bench.results.repeats import merge_repeats
from bench.results.store import load_records

if TYPE_CHECKING:
    import pandas as pd

    from bench.stats import Summary


# ---- DataFrame ------------------------------------------------------------------------------
def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Results as a DataFrame: one row per case, parameters and metrics as columns.

    `samples_ms` keeps the raw per-iteration samples (a list per row) for distributions and
    significance tests; a case measured in several worker processes (`repeats`) is one row
    with its samples pooled, each worker's median in `repeat_medians_ms` (and its round in
    `repeat_ids`), and `median_ms` with its interval the case's level across the workers
    (`bench.stats.level`; `ci_between_workers` False where one worker measured it).
    """
    import pandas as pd

    rows = [flatten(record) for record in merge_repeats(load_records(paths))]
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if is_integer_column(column):
            frame[column] = frame[column].astype("Int64")  # stays integer beside missing values
    return frame


def select_rows(frame: pd.DataFrame, patterns: Sequence[str]) -> pd.DataFrame:
    """The rows any pattern keeps, by the `--filter` rule of `archbench run` (a name
    substring, a glob over the name, or `KEY=VALUE` on a parameter column; `prune=` is the
    method); every row when there is no pattern."""
    if not patterns:
        return frame
    from bench.suite.overrides import name_or_param_matches

    keep = [any(name_or_param_matches(str(row.get("name", "")),
                                      {**row, "prune": row.get("prune_method")}, pattern)
                for pattern in patterns)
            for row in frame.to_dict("records")]
    if not any(keep):
        raise ResultsError(f"--filter {' '.join(patterns)} kept no case of the run(s): give a "
                           "part of a case name, a glob, or KEY=VALUE on a parameter "
                           "(e.g. model=mlp)")
    return frame[keep].reset_index(drop=True)


def flatten(record: Record) -> dict[str, Any]:
    """One DataFrame row from a record."""
    params = dict(record.params)
    prune = params.pop("prune", {}) or {}
    model_args = params.pop("model_args", {}) or {}
    row: dict[str, Any] = {
        "run_id": record.run_id,
        "case_id": record.case_id,
        "name": record.name,
        "suite": record.suite,
        "sweep": record.sweep,
        "status": record.status,
        "reason": record.reason,
        **params,
        "prune_method": prune.get("method", "none"),
        "prune_ratio": prune.get("ratio", 0.0),
        "prune_scope": prune.get("scope"),
        "model_args": json.dumps(model_args, sort_keys=True) if model_args else None,
        "warnings": "; ".join(record.warnings) or None,
        "started_at": record.started_at,
        "duration_s": record.duration_s,
    }
    timing = record.timing or {}
    summary = record.summary()  # numpy/scipy: loaded when results are read
    if summary is not None:
        row.update(summary.to_dict())
        row["n_samples"] = row.pop("n")
        row["repeats"] = row.pop("workers")
        row["ci_between_workers"] = row.pop("between_workers")
        medians = [m / 1e6 for m in timing.get("repeat_medians_ns") or []]
        row["repeat_medians_ms"] = medians or None
        row["repeat_ids"] = list(timing.get("repeat_ids") or []) or None
        row["repeat_cv"] = (statistics.stdev(medians) / statistics.mean(medians)
                            if len(medians) > 1 else None)
        row["samples_ms"] = [s / 1e6 for s in record.samples_ns]
        met = record.target_met(summary)
        row.update({
            "block_size": timing.get("block_size"),
            "first_call_ms": _ms(timing.get("first_call_ns")),
            "warmup_iters": timing.get("warmup_iters"),
            "warmup_ms": _ms(timing.get("warmup_ns")),
            "measure_s": (timing.get("measure_ns") or 0) / 1e9,
            "target_ci": record.settings.get("target_ci"),
            "target_met": met if met is not None else timing.get("target_met"),
            "stop_reason": _stop_reason(record, summary, met),
            "clock": timing.get("clock"),
        })
    row.update(record.metrics)
    for key in INFO_COLUMNS:  # structured collector output, one dict per row (or None)
        row[key] = record.info.get(key)
    return row


#: `info` entries that become DataFrame columns holding dicts: the telemetry timeline
#: (`{"t_s": [...], "phase": [...], "rss_bytes": [...], "power_w": [...], ...}`), the
#: operator profile (`{"top_ops": [...], "trace": "traces/<case_id>.json"}`), each
#: collector's status (`{name: {"ok": bool, "reason": str | None}}`) and where the worker ran
#: (`{"pinned": bool, "cpus": [...], "sampler_cpu": int}`, or why it was not pinned).
INFO_COLUMNS = ("telemetry", "profile", "collectors", "cpu_affinity")


def _stop_reason(record: Record, summary: Summary, target_met: bool | None) -> str | None:
    """Why the case stopped measuring: its one worker's reason, or for a case of several
    workers, whether its level reached the target or it ran out of workers or time."""
    if not summary.between_workers:
        return (record.timing or {}).get("stop_reason")
    if target_met:
        return "target_ci"
    most = record.most_workers
    return "repeats" if most is not None and summary.workers >= most else "max_time"


def _ms(ns: Any) -> float | None:
    return None if ns is None else float(ns) / 1e6
