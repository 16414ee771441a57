"""Records, the run-folder store, and loading results into pandas.

A run folder holds `run.json` (what ran, where, when) and `results.jsonl` (one record per
case, appended and fsynced as each case ends, so a crash or Ctrl-C loses nothing finished).
Records keep the raw timing samples; statistics are derived when loading.

Column naming contract for `load()` (reports and the gate rely on it): parameters keep their
axis names (`model`, `depth`, `width`, ..., `prune_method`, `prune_ratio`); statistics carry
units (`median_ms`, `throughput_items_s`); metrics keep the unit-suffixed names they are
recorded with (`params_total`, `peak_rss_bytes`, `energy_per_item_j`, ...).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchWarning, ResultsError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"

#: Statuses a record can end in. `ok` measured; `unsupported` could not run here (reason);
#: the rest are failures of the case, each with a message.
STATUSES = ("ok", "unsupported", "failed", "oom", "crashed", "timeout")
FAILURE_STATUSES = ("failed", "oom", "crashed", "timeout")


@dataclass(frozen=True)
class Record:
    """One case's outcome. `timing` holds raw samples; `metrics` flat scalars with units."""

    run_id: str
    case_id: str
    name: str
    suite: str
    params: Mapping[str, Any]
    settings: Mapping[str, Any]
    status: str
    reason: str | None = None
    traceback: str | None = None
    timing: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    #: Structured details that are not scalars: what a transform applied, time series...
    info: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    sweep: str = ""
    started_at: str | None = None
    duration_s: float | None = None
    #: Which of the case's `repeats` worker processes this is (0-based).
    repeat: int = 0
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; statuses are {STATUSES}")

    @property
    def samples_ns(self) -> list[float]:
        return list((self.timing or {}).get("samples_ns") or [])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return dict(_finite(out))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        data = migrate(data)
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["warnings"] = tuple(kwargs.get("warnings") or ())
        return cls(**kwargs)


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """Bring a stored record to the current schema; the one place old layouts are handled."""
    out = dict(data)
    version = out.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultsError(f"record schema {version!r} is newer than this archbench understands "
                           f"({SCHEMA_VERSION}); upgrade archbench to read it")
    out["schema_version"] = SCHEMA_VERSION
    return out


def _finite(value: Any) -> Any:
    """Plain JSON values: numpy scalars become Python ones, NaN and infinity become null
    (standard JSON, readable by every tool)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# ---- store ----------------------------------------------------------------------------------
class ResultsStore:
    """Appends records to a run folder's results.jsonl, durably, one line per case."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / RESULTS_FILE
        self._drop_torn_tail()
        self.path.touch()

    def append(self, record: Record) -> None:
        line = json.dumps(record.to_dict(), separators=(",", ":"), allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def _drop_torn_tail(self) -> None:
        """A record cut off mid-write (kill -9, power loss) is incomplete: drop it before
        appending, so it cannot glue onto the next record. Its case is simply redone."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            warnings.warn(f"{self.path}: dropped a truncated last record "
                          f"({len(data) - keep} bytes); its case will run again",
                          BenchWarning, stacklevel=2)
            with open(self.path, "rb+") as fh:
                fh.truncate(keep)

    def records(self) -> list[Record]:
        return list(read_records(self.path))

    def write_run(self, meta: Mapping[str, Any]) -> None:
        write_json_atomic(self.run_dir / RUN_FILE, meta)

    def read_run(self) -> dict[str, Any]:
        return read_run(self.run_dir)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(dict(data)), indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_run(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ResultsError(f"{run_dir}: not a run folder (no {RUN_FILE}); point at a folder "
                           "made by `archbench run`, e.g. reports/runs/<run-id>") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: damaged run file: {exc}") from None


def read_records(path: str | Path) -> Iterator[Record]:
    """Records of a results.jsonl. A torn last line (the writer was killed mid-write) is
    skipped with a warning; damage anywhere else is an error naming the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no results file; is this a run folder?") from None
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            yield Record.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:
            is_last = number == len(lines)
            if is_last and torn_tail:
                warnings.warn(f"{path}:{number}: skipped a truncated last record (the run was "
                              "cut off while writing it)", BenchWarning, stacklevel=2)
                continue
            raise ResultsError(f"{path}:{number}: damaged record ({exc}); remove or fix that "
                               "line to read the rest") from None


def results_path(path: str | Path) -> Path:
    """Accept a run folder or a results.jsonl path."""
    path = Path(path)
    return path / RESULTS_FILE if path.is_dir() else path


def load_records(paths: str | Path | Iterable[str | Path]) -> list[Record]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Record] = []
    for p in paths:
        out += read_records(results_path(p))
    return out


# ---- DataFrame ------------------------------------------------------------------------------
def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Results as a DataFrame: one row per case, parameters and metrics as columns.

    `samples_ms` keeps the raw per-iteration samples (a list per row) for distributions and
    significance tests; a case measured in several worker processes (`repeats`) is one row
    with its samples pooled and each repeat's median in `repeat_medians_ms`.
    """
    import pandas as pd

    from bench.repeats import merge_repeats

    rows = [flatten(record) for record in merge_repeats(load_records(paths))]
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if column in INTEGER_COLUMNS or (column.startswith("cuda_max_") and
                                         column.endswith("_bytes")):
            frame[column] = frame[column].astype("Int64")  # stays integer beside missing values
    return frame


#: Integer columns that would turn float where some rows (failed cases) have no value.
INTEGER_COLUMNS = ("depth", "width", "features", "image_size", "seq_len", "classes",
                   "batch_size", "n_samples", "repeats", "block_size", "warmup_iters", "threads",
                   "params_total", "params_nonzero", "weight_bytes", "buffer_bytes",
                   "rss_before_build_bytes", "peak_rss_bytes", "peak_rss_timed_bytes",
                   "ru_maxrss_bytes", "nvml_device_used_bytes", "nvml_process_used_bytes")


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
    from bench.stats import summarize  # numpy/scipy: loaded when results are read

    timing = record.timing or {}
    samples = record.samples_ns
    if samples:
        summary = summarize(samples, items_per_iter=int(params.get("batch_size") or 1),
                            confidence=float(record.settings.get("confidence", 0.95)))
        row.update(summary.to_dict())
        row["n_samples"] = row.pop("n")
        medians = [m / 1e6 for m in timing.get("repeat_medians_ns") or []]
        row["repeats"] = len(medians) or 1
        row["repeat_medians_ms"] = medians or None
        row["repeat_cv"] = (statistics.stdev(medians) / statistics.mean(medians)
                            if len(medians) > 1 else None)
        row["samples_ms"] = [s / 1e6 for s in samples]
        row.update({
            "block_size": timing.get("block_size"),
            "first_call_ms": _ms(timing.get("first_call_ns")),
            "warmup_iters": timing.get("warmup_iters"),
            "warmup_ms": _ms(timing.get("warmup_ns")),
            "measure_s": (timing.get("measure_ns") or 0) / 1e9,
            "target_ci": record.settings.get("target_ci"),
            "target_met": timing.get("target_met"),
            "stop_reason": timing.get("stop_reason"),
            "clock": timing.get("clock"),
        })
    row.update(record.metrics)
    for key in INFO_COLUMNS:  # structured collector output, one dict per row (or None)
        row[key] = record.info.get(key)
    return row


#: `info` entries that become DataFrame columns holding dicts: the telemetry timeline
#: (`{"t_s": [...], "phase": [...], "rss_bytes": [...], "power_w": [...], ...}`), the
#: operator profile (`{"top_ops": [...], "trace": "traces/<case_id>.json"}`) and each
#: collector's status (`{name: {"ok": bool, "reason": str | None}}`).
INFO_COLUMNS = ("telemetry", "profile", "collectors")


def _ms(ns: Any) -> float | None:
    return None if ns is None else float(ns) / 1e6
