"""The flat results table as CSV or Parquet: one row per case of every run, every column.

Raw samples stay a list column in Parquet (typed, compact) and become a JSON array in CSV;
structured columns (telemetry, profile, collectors) become JSON text in both, so any tool can
read the file without knowing archbench.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError

FORMATS = ("csv", "parquet")


def _json(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value, sort_keys=True, default=str)


def flat_table(frame: pd.DataFrame, *, keep_lists: bool) -> pd.DataFrame:
    """The frame with nested values made portable: lists kept (Parquet) or JSON text (CSV);
    dicts always JSON text; mixed-type object columns as text."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype != object:
            continue
        nested = values.map(lambda v: isinstance(v, (dict, list, tuple, np.ndarray)))
        if not nested.any():
            kinds = {type(v) for v in values.dropna()}
            if len(kinds) > 1:  # e.g. a metric that is a number in one record, text in another
                out[column] = values.map(lambda v: None if v is None or v != v else str(v))
            continue
        is_number_list = values.dropna().map(
            lambda v: isinstance(v, (list, tuple, np.ndarray)) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)).all()
        if keep_lists and is_number_list:
            out[column] = values.map(lambda v: [float(x) for x in v]
                                     if isinstance(v, (list, tuple, np.ndarray)) else None)
        else:
            out[column] = values.map(_json)
    return out


def write_table(frame: pd.DataFrame, path: str | Path, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise BenchError(f'unknown table format "{fmt}"; use "csv" or "parquet"')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        flat_table(frame, keep_lists=False).to_csv(path, index=False)
    else:
        try:
            flat_table(frame, keep_lists=True).to_parquet(path, index=False)
        except ImportError as exc:
            raise BenchError(f"Parquet needs pyarrow ({exc}); pip install pyarrow, or use "
                             "--format csv") from None
    return path
