"""The record of one case (or one repeat of it): the schema every run folder stores.

Records keep the raw timing samples; statistics are derived when reading (`bench.results.frame`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from bench.errors import ResultsError
from bench.plain import plain

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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return dict(plain(out))

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
