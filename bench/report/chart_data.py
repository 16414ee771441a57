"""Data preparation for the report's sections: pure functions of DataFrames, no I/O, no torch.

Every chart of the report is drawn from a frame or a small dataclass computed here, so the
numbers a reader sees (a frontier, a fitted exponent, a speed-up) are unit-tested apart from
the drawing. Columns follow `bench.results.load` and the contracts of the transform and
collector stages; a column that is absent simply leaves its section out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.gate.paired import speedup
from bench.stats import LogLogFit, fit_loglog, pareto_mask

#: The parameters that identify a workload (with `run_id`, a row of one run).
PARAM_COLUMNS = ("model", "depth", "width", "activation", "features", "image_size", "seq_len",
                 "classes", "batch_size", "device", "precision", "compile", "mode",
                 "prune_method", "prune_ratio", "prune_scope", "model_args")
PRUNE_COLUMNS = ("prune_method", "prune_ratio", "prune_scope")


# ---- column access --------------------------------------------------------------------------
def present(frame: pd.DataFrame, column: str) -> bool:
    """The column exists and holds at least one value."""
    return column in frame.columns and bool(frame[column].notna().any())


def numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as float64 (NaN where missing or not a number), whatever its stored dtype."""
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    if pd.api.types.is_float_dtype(frame[column].dtype):
        return frame[column].astype("float64")
    values = pd.to_numeric(frame[column], errors="coerce")
    return pd.Series(values, index=frame.index).astype("float64")


def is_flagged(value: Any, *, negate: bool = False) -> bool:
    """A boolean cell that may be missing (NaN/None/NA): missing is False either way, so a
    case without a `target_met` is not called noisy."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False
    return not bool(value) if negate else bool(value)


def structure(value: Any) -> Mapping[str, Any] | None:
    """An info column's value (telemetry, profile): a dict in memory, JSON text when read
    back from a file; None when it is neither."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, Mapping) else None


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    if "status" not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame["status"] == "ok"]


#: Columns too heavy for per-row dicts (lists and structures); read them from the frame.
HEAVY_COLUMNS = ("samples_ms", "telemetry", "profile", "collectors")


def row_dicts(frame: pd.DataFrame) -> dict[Any, dict[str, Any]]:
    """Each row as a dict, keyed by index label, without the heavy list columns: built once
    per chart, since `to_dict` per group costs more than the chart itself at 1,000 cases."""
    light = frame.drop(columns=[c for c in HEAVY_COLUMNS if c in frame.columns])
    return dict(zip(light.index, light.to_dict("records"), strict=True))


def _scalar_key(value: Any) -> Any:
    """A value as a hashable JSON scalar: missing -> None, numbers -> float (2 == 2.0)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        return None if math.isnan(number) else number
    return str(value)


def row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One string per row identifying its values in `columns` (missing columns count as
    missing values), for grouping and matching without pandas' NaN-key pitfalls."""
    present_columns = [c for c in columns if c in frame.columns]
    records = frame[present_columns].to_dict("records") if present_columns else [
        {} for _ in range(len(frame))]
    return pd.Series([json.dumps([_scalar_key(r.get(c)) for c in present_columns])
                      for r in records], index=frame.index, dtype="object")


# ---- labels ---------------------------------------------------------------------------------
def _int_text(value: Any) -> str:
    number = _scalar_key(value)
    return f"{number:g}" if isinstance(number, float) else str(number)


def part_label(column: str, value: Any) -> str | None:
    """How one parameter reads in a label: d4, w512, b32, fp16, unstructured 50%..."""
    if _scalar_key(value) is None:
        return None
    prefixes = {"depth": "d", "width": "w", "batch_size": "b", "features": "f",
                "image_size": "i", "seq_len": "s", "classes": "c"}
    if column in prefixes:
        return f"{prefixes[column]}{_int_text(value)}"
    if column == "prune_ratio":
        return f"{float(value) * 100:g}%" if float(value) else None
    if column == "compile":
        return None if value == "eager" else f"compile {value}"
    if column == "prune_method":
        return None if value == "none" else str(value)
    if column == "model_args":
        return f"args {value}"
    if column == "prune_scope":
        return None
    return str(value)


def label(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """A short readable label of a row's values in `columns` (unescaped; escape to show)."""
    parts = [part_label(c, row.get(c)) for c in columns]
    return " ".join(p for p in parts if p) or "all"


def varying(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns among `columns` whose values differ between rows (missing is a value)."""
    return [c for c in columns
            if c in frame.columns and row_keys(frame, [c]).nunique() > 1]


# ---- Pareto frontier and log-log fit: pure statistics, shared with bench.decide -----------
__all__ = ["LogLogFit", "fit_loglog", "pareto_mask"]


def achieved_flops_s(frame: pd.DataFrame) -> pd.Series:
    """FLOP/s each case achieved: the collector's `achieved_flops_s` where recorded, else
    FLOPs per item × items per second (the same quantity from the timing alone)."""
    computed = numeric(frame, "flops_per_item") * numeric(frame, "throughput_items_s")
    recorded = numeric(frame, "achieved_flops_s")
    return recorded.where(recorded.notna(), computed)


def flops_per_call(frame: pd.DataFrame) -> pd.Series:
    return numeric(frame, "flops_per_item") * numeric(frame, "batch_size").fillna(1.0)


def with_run_key(columns: Sequence[str], frame: pd.DataFrame) -> list[str]:
    """Match and group within a run only: timings of two machines are not one sweep."""
    return [*columns, "run_id"] if "run_id" in frame.columns else list(columns)


@dataclass(frozen=True, eq=False)
class FitGroup:
    """Cases that differ only in depth and width, with their latency-vs-FLOPs fit."""

    label: str
    members: pd.DataFrame
    fit: LogLogFit


def fit_groups(frame: pd.DataFrame) -> list[FitGroup]:
    """Groups of measured cases equal in every parameter but depth and width (within a run),
    each with the log–log fit of its latency against FLOPs per call; groups with fewer than two
    distinct FLOP counts have no slope and are left out."""
    ok = ok_rows(frame)
    ok = ok[(flops_per_call(ok) > 0) & (numeric(ok, "median_ms") > 0)]
    if ok.empty:
        return []
    group_columns = [c for c in PARAM_COLUMNS if c not in ("depth", "width")]
    keys = row_keys(ok, with_run_key(group_columns, ok))
    shown = varying(ok, [*group_columns, "run_id"]) or ["model"]
    out = []
    for _, members in ok.groupby(keys, sort=False):
        fit = fit_loglog(flops_per_call(members), numeric(members, "median_ms"))
        if fit is not None:
            out.append(FitGroup(label(members.iloc[0].to_dict(), shown), members, fit))
    return out


def scaling_fits(frame: pd.DataFrame) -> pd.DataFrame:
    """Per group of cases that differ only in depth and width: the scaling exponent, i.e. the
    log–log slope of latency against FLOPs per call, with the FLOP/s the group achieved.

    An exponent near 1 means latency grows with the work (compute-bound); well below 1 means
    fixed overheads dominate, so the small models leave the hardware idle.
    """
    columns = ["group", "n", "exponent", "r2", "flops_min", "flops_max",
               "achieved_flops_s_median", "achieved_flops_s_max", "dense_equivalent"]
    rows = []
    for group in fit_groups(frame):
        members = group.members
        flops = flops_per_call(members)
        achieved = achieved_flops_s(members)
        methods = members["flops_method"] if "flops_method" in members else pd.Series(dtype=str)
        rows.append({
            "group": group.label, "n": group.fit.n, "exponent": group.fit.slope,
            "r2": group.fit.r2, "flops_min": float(flops.min()), "flops_max": float(flops.max()),
            "achieved_flops_s_median": float(achieved.median()),
            "achieved_flops_s_max": float(achieved.max()),
            "dense_equivalent": bool((methods == "dense-equivalent").any()),
        })
    return pd.DataFrame(rows, columns=columns)


# ---- speed-up against a reference case ------------------------------------------------------
def with_reference(frame: pd.DataFrame, vary: Sequence[str],
                   reference: Mapping[str, Any]) -> pd.DataFrame:
    """The ok rows that are not references, each beside the reference case it matches.

    A row's reference is the ok row of the same run with equal values in every parameter but
    the `vary` columns, whose values are `reference` (for pruning: the same case unpruned).
    Adds `ref_name`, `ref_median_ms`, `speedup` (reference / case: above 1 is faster) with
    its interval `speedup_low`/`speedup_high` and `speedup_basis`, as `best` states them
    (`bench.gate.paired.speedup`: from the two cases' workers measured in the same rounds,
    else the two levels' intervals); rows with no reference keep NaN there.
    """
    ok = ok_rows(frame).copy()
    is_ref = pd.Series(True, index=ok.index)
    for column, value in reference.items():
        if column not in ok.columns:
            return ok.iloc[0:0]
        is_ref &= ok[column].map(_scalar_key) == _scalar_key(value)
    keys = row_keys(ok, with_run_key([c for c in PARAM_COLUMNS if c not in vary], ok))
    refs = ok[is_ref].assign(_key=keys[is_ref]).drop_duplicates("_key", keep="last")
    lookup = refs.set_index("_key")
    out = ok[~is_ref].assign(_key=keys[~is_ref])
    matched = out["_key"].map(lambda k: k in lookup.index)

    def ref_value(column: str) -> pd.Series:
        if column not in lookup.columns:
            return pd.Series(np.nan, index=out.index)
        return out["_key"].map(lookup[column]).where(matched)

    out["ref_name"] = ref_value("name")
    out["ref_median_ms"] = pd.to_numeric(ref_value("median_ms"), errors="coerce").astype(float)
    ref_rows = {key: row for key, row in zip(lookup.index, lookup.to_dict("records"),
                                             strict=True)}
    found = [speedup(ref_rows[key], row) if key in ref_rows else None
             for key, row in zip(out["_key"], out.to_dict("records"), strict=True)]
    out["speedup"] = [r.value if r else np.nan for r in found]
    out["speedup_low"] = [r.low if r else np.nan for r in found]
    out["speedup_high"] = [r.high if r else np.nan for r in found]
    out["speedup_basis"] = [r.evidence if r else None for r in found]
    return out.drop(columns="_key")


# ---- distributions --------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxStats:
    """Tukey box of raw samples: quartiles, whiskers at the furthest samples within 1.5 IQR,
    and the samples beyond (at most `max_outliers` of the most extreme are kept)."""

    n: int
    q1: float
    median: float
    q3: float
    lowerfence: float
    upperfence: float
    outliers: tuple[float, ...]
    n_outliers: int


def box_stats(samples: Sequence[float] | np.ndarray, max_outliers: int = 30) -> BoxStats:
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no samples")
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    inside = values[(values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)]
    outside = values[(values < q1 - 1.5 * iqr) | (values > q3 + 1.5 * iqr)]
    extreme = outside[np.argsort(-np.abs(outside - median), kind="stable")][:max_outliers]
    return BoxStats(n=int(values.size), q1=float(q1), median=float(median), q3=float(q3),
                    lowerfence=float(inside.min()), upperfence=float(inside.max()),
                    outliers=tuple(float(v) for v in np.sort(extreme)),
                    n_outliers=int(outside.size))


# ---- several runs ---------------------------------------------------------------------------
def latest_per_case(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One row per case across runs: a case measured in several runs keeps its row from the
    last run given (the candidate), so single-run sections read one value per case."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    combined = pd.concat(frames, ignore_index=True)
    if "case_id" not in combined.columns:
        return combined
    return combined.drop_duplicates("case_id", keep="last").reset_index(drop=True)
