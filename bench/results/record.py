"""The record of one case (or one repeat of it): the schema every run folder stores.

Records keep the raw timing samples; statistics are derived when reading (`bench.results.frame`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.errors import ResultsError
from bench.plain import plain

if TYPE_CHECKING:
    from bench.stats import Summary

SCHEMA_VERSION = 1

#: How a case (or one repeat of it) ended. `ok` measured; `unsupported` could not run here
#: (the reason says why); the rest are failures of the case, each with a message.
Status = Literal["ok", "unsupported", "failed", "oom", "crashed", "timeout"]
FailureStatus = Literal["failed", "oom", "crashed", "timeout"]
STATUSES: tuple[Status, ...] = get_args(Status)
FAILURE_STATUSES: tuple[FailureStatus, ...] = get_args(FailureStatus)


@dataclass(frozen=True)
class Record:
    """One case's outcome. `timing` holds raw samples; `metrics` flat scalars with units."""

    run_id: str
    case_id: str
    name: str
    suite: str
    params: Mapping[str, Any]
    settings: Mapping[str, Any]
    status: Status
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

    def summary(self) -> Summary | None:
        """The timing statistics a test asserts on, in milliseconds (median, its confidence
        interval, IQR, percentiles...); None without samples (a case that did not run)."""
        from bench.stats import summarize  # scipy: loaded when a test asks, not at import

        samples = self.samples_ns
        if not samples:
            return None
        timing = self.timing or {}
        confidence = float(self.settings.get("confidence") or 0.95)
        items = int(self.params.get("batch_size") or 1)
        own = timing.get("repeat_ci_rel") or [timing.get("ci_rel")]
        return summarize(samples, items_per_iter=items, confidence=confidence,
                         worker_medians_ns=timing.get("repeat_medians_ns") or (),
                         worker_ci_rel=[x for x in own if isinstance(x, (int, float))])

    @property
    def median_ms(self) -> float | None:
        """The case's level in ms: over its workers when this record merges several
        (`bench.results.repeats`), else this worker's median (None without samples)."""
        stats = self.summary()
        return stats.median_ms if stats else None

    @property
    def ci_ms(self) -> tuple[float, float] | None:
        """The level's confidence interval in ms (`bench.stats.level`): across workers when
        the record merges two or more, else one worker's distribution-free interval."""
        stats = self.summary()
        return (stats.ci_low_ms, stats.ci_high_ms) if stats else None

    @property
    def most_workers(self) -> int | None:
        """The most workers the case could get, from its stored settings
        (`Settings.most_repeats`); None where the record does not say."""
        settings = self.settings
        most = settings.get("max_repeats") if settings.get("repeats") == "auto" \
            else settings.get("repeats")
        return most if isinstance(most, int) else None

    def target_met(self, summary: Summary) -> bool | None:
        """Whether the level's interval in `summary` (this record's) reached the case's
        `target_ci`; None where the record has no target."""
        target = self.settings.get("target_ci")
        return summary.ci_rel <= target if isinstance(target, (int, float)) else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return dict(plain(out))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """A record from its stored form; a ValueError names the first field that does not
        have the stored schema's type (a damaged or hand-edited file)."""
        data = migrate(data)
        try:
            _StoredRecord.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "record"
            raise ValueError(f"{where}: {first['msg']}") from None
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["warnings"] = tuple(kwargs.get("warnings") or ())
        return cls(**kwargs)


# ---- stored shape ---------------------------------------------------------------------------
# What readers (load, repeats, the gate, the report) rely on, checked when a line is read, so
# a damaged file is an error naming the line and field instead of a crash far downstream.
# Unknown keys are allowed: newer archbench versions may add some.
_Number = Annotated[float, Field(strict=True)]
_Int = Annotated[int, Field(strict=True)]
_Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _StoredTiming(_Loose):
    samples_ns: list[_Finite] | None = None
    repeat_medians_ns: list[_Finite] | None = None
    block_size: _Int | None = None
    warmup_iters: _Int | None = None
    first_call_ns: _Number | None = None
    warmup_ns: _Number | None = None
    measure_ns: _Number | None = None
    target_met: bool | None = None


class _StoredPrune(_Loose):
    method: str = "none"
    ratio: _Number | None = None
    scope: str | None = None


class _StoredParams(_Loose):
    batch_size: _Int | None = None
    prune: _StoredPrune | None = None
    model_args: dict[str, Any] | None = None
    depth: _Int | None = None
    width: _Int | None = None
    features: _Int | None = None
    image_size: _Int | None = None
    seq_len: _Int | None = None
    classes: _Int | None = None


class _StoredSettings(_Loose):
    confidence: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.95
    target_ci: _Number | None = None
    repeats: _Int | Literal["auto"] = 1


class _StoredRecord(_Loose):
    run_id: str
    case_id: str
    name: str
    suite: str
    params: _StoredParams
    settings: _StoredSettings
    status: str
    reason: str | None = None
    traceback: str | None = None
    timing: _StoredTiming | None = None
    metrics: dict[str, Any] = {}
    info: dict[str, Any] = {}
    warnings: list[str] | None = None
    sweep: str = ""
    started_at: str | None = None
    duration_s: _Number | None = None
    repeat: Annotated[int, Field(strict=True, ge=0)] = 0

    @field_validator("metrics")
    @classmethod
    def _integer_metrics(cls, metrics: dict[str, Any]) -> dict[str, Any]:
        """Metrics that load() makes integer columns must be integers (or null)."""
        for key, value in metrics.items():
            if is_integer_column(key) and not _whole(value):
                raise ValueError(f"metric {key} must be a whole number or null, got "
                                 f"{value!r:.40}")
        return metrics


def _whole(value: Any) -> bool:
    """None, or a number an Int64 column holds exactly (1e8 is; 1.5, 2**70 and True are not)."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return False
    return bool(-(2**63) <= value < 2**63)


#: Integer columns that would turn float where some rows (failed cases) have no value.
INTEGER_COLUMNS = ("depth", "width", "features", "image_size", "seq_len", "classes",
                   "heads", "kv_heads", "vocab_size", "new_tokens", "prompt_tokens",
                   "kv_cache_bytes",
                   "batch_size", "n_samples", "repeats", "block_size", "warmup_iters", "threads",
                   "params_total", "params_nonzero", "weight_bytes", "buffer_bytes",
                   "rss_before_build_bytes", "peak_rss_bytes", "peak_rss_timed_bytes",
                   "ru_maxrss_bytes", "nvml_device_used_bytes", "nvml_process_used_bytes")


def is_integer_column(column: str) -> bool:
    """Whether `load()` makes the column (a parameter or metric) integer-typed."""
    return column in INTEGER_COLUMNS or (column.startswith("cuda_max_") and
                                         column.endswith("_bytes"))


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """Bring a stored record to the current schema; the one place old layouts are handled."""
    out = dict(data)
    version = out.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultsError(f"record schema {version!r} is newer than this archbench understands "
                           f"({SCHEMA_VERSION}); upgrade archbench to read it")
    out["schema_version"] = SCHEMA_VERSION
    return out
