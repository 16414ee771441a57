"""What can be asked of a run: objectives, metrics, their units and directions. Pure.

A metric is a column of `bench.load()` (or one derived here from its columns), known by the
unit its name ends in (`_ms`, `_bytes`, `_j`, ...). Timing quantiles (`median_ms`, `p99_ms`,
any `pNN_ms`) and throughput come with distribution-free confidence intervals from the raw
samples; every other metric is one measured value per case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.errors import did_you_mean, one_of
from bench.suite.question import ALIASES, OBJECTIVES, QuestionError, unit_scale, units_of

#: Errors of a question, raised by the suite's grammar or by `best` against a run.
DecideError = QuestionError

#: Metrics where more is better (everything else: less is better).
HIGHER_IS_BETTER = frozenset({
    "throughput_items_s", "fidelity_cosine", "fidelity_top1_agreement", "achieved_flops_s",
    "fidelity_next_token_top1", "prefill_throughput_items_s",
})

#: Columns of `load()` that are not metrics a question can be about.
NOT_METRICS = frozenset({
    "depth", "width", "heads", "kv_heads", "vocab_size", "new_tokens", "prompt_tokens",
    "features", "image_size", "seq_len", "classes", "batch_size",
    "prune_ratio", "repeats", "block_size", "warmup_iters", "threads", "target_ci",
    "duration_s", "measure_s", "n_samples", "repeat_cv", "noise", "ci_rel",
})

_QUANTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)_ms$")


@dataclass(frozen=True)
class Metric:
    """One metric a question is about.

    `quantile` is set for timing quantiles read from the raw samples; `per_item_rate` for
    throughput (batch / median latency), whose interval is the median's, inverted.
    """

    name: str
    higher_is_better: bool
    unit: str
    quantile: float | None = None
    per_item_rate: bool = False

    @property
    def has_interval(self) -> bool:
        return self.quantile is not None or self.per_item_rate

    def scale(self, unit: str) -> float:
        """The factor turning a value in `unit` into this metric's own unit."""
        return unit_scale(self.name, unit)


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with the derived memory columns a question can use.

    - `peak_memory_bytes`: the case's peak on its device — on CUDA the allocator's reserved
      peak over all phases (`cuda_max_reserved_*_bytes`), elsewhere the process's peak RSS.
    - `memory_above_runtime_bytes`: peak RSS less the worker's RSS just before the model was
      built (`rss_before_build_bytes`: Python, torch and the harness, loaded and idle), i.e.
      what the model, its input and its transforms added above the runtime's own footprint.
    """
    out = frame.copy()
    rss = _numeric(out, "peak_rss_bytes")
    reserved = [c for c in out.columns
                if c.startswith("cuda_max_reserved_") and c.endswith("_bytes")]
    device_peak = (out[reserved].apply(pd.to_numeric, errors="coerce").max(axis=1)
                   if reserved else pd.Series(np.nan, index=out.index))
    on_cuda = out.get("device", pd.Series("cpu", index=out.index)).astype(str) \
        .str.startswith("cuda")
    out["peak_memory_bytes"] = device_peak.where(on_cuda, rss)
    out["memory_above_runtime_bytes"] = rss - _numeric(out, "rss_before_build_bytes")
    return out


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def available(frame: pd.DataFrame) -> list[str]:
    """Metrics the frame has values for, in column order."""
    out = []
    for column in frame.columns:
        if column in NOT_METRICS or column in ("samples_ms",):
            continue
        values = frame[column]
        if values.dtype == object or pd.api.types.is_bool_dtype(values.dtype):
            continue
        if pd.api.types.is_numeric_dtype(values.dtype) and values.notna().any():
            out.append(column)
    return out


def resolve(name: str, frame: pd.DataFrame, *, what: str = "metric",
            metrics: list[str] | None = None) -> Metric:
    """The metric `name` (a column, an alias or a `pNN_ms` quantile) on this frame.

    Unknown names and metrics the run did not collect are errors listing what is there.
    """
    column = ALIASES.get(name, name)
    match = _QUANTILE.match(column)
    has_samples = "samples_ms" in frame.columns and frame["samples_ms"].notna().any()
    metrics = available(frame) if metrics is None else metrics
    if match and has_samples:
        quantile = 0.5 if column == "median_ms" else float(match.group(1)) / 100
        if not 0 < quantile < 1:
            raise DecideError(f"{what} {name!r}: a percentile lies between p0 and p100")
    elif column in ("median_ms", "throughput_items_s") and has_samples:
        quantile = 0.5  # throughput is batch / median: the median's interval, inverted
    else:
        quantile = None
    if quantile is None and column not in metrics:
        listing = ", ".join(sorted(set(metrics) | {k for k in ALIASES if ALIASES[k] in metrics}))
        hint = did_you_mean(column, [*metrics, *ALIASES])
        if column in frame.columns or _looks_like_metric(column):
            raise DecideError(f"{what} {name!r}: this run did not collect it (no case has a "
                              f"value){hint}; the run has: {listing}")
        raise DecideError(f"unknown {what} {name!r}{hint}; the run has: {listing}")
    return Metric(name=column, higher_is_better=column in HIGHER_IS_BETTER,
                  unit=units_of(column)[1], quantile=quantile,
                  per_item_rate=column == "throughput_items_s" and has_samples)


def _looks_like_metric(column: str) -> bool:
    """A name shaped like a metric archbench records (a unit suffix, a fidelity measure)."""
    return column.startswith("fidelity_") or bool(_QUANTILE.match(column)) or column.endswith(
        ("_ms", "_s", "_bytes", "_j", "_w", "_pct", "_mhz", "_c"))


def objective(name: str, frame: pd.DataFrame) -> Metric:
    """An objective: one of OBJECTIVES, read from its column."""
    if name not in OBJECTIVES and ALIASES.get(name, name) not in OBJECTIVES.values():
        raise DecideError(f"unknown objective {name!r}{did_you_mean(name, OBJECTIVES)}; "
                          f"objectives are {one_of(OBJECTIVES)}")
    return resolve(OBJECTIVES.get(name, name), frame, what="objective")
