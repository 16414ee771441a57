"""Synthetic records and run folders for the gate's tests (no measuring)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.results import Record, ResultsStore

ENV: dict[str, Any] = {"cpu_model": "Test CPU 9000", "gpus": [], "torch_version": "2.13.0+cpu",
                       "cuda_version": None, "threads": 2, "hostname": "a"}


def lognormal(median_ms: float, n: int, *, sigma: float = 0.02, seed: int = 0) -> list[float]:
    """Skewed positive timings around `median_ms`, like real ones."""
    rng = np.random.default_rng(seed)
    return list(median_ms * np.exp(rng.normal(0.0, sigma, n)))


def record(name: str, samples_ms: Sequence[float] | None = None, *, status: str = "ok",
           metrics: Mapping[str, Any] | None = None, reason: str | None = None,
           case_id: str | None = None, run_id: str = "run") -> Record:
    timing = {"samples_ns": [s * 1e6 for s in samples_ms]} if samples_ms is not None else None
    return Record(run_id=run_id, case_id=case_id or f"id-{name}", name=name, suite="s",
                  params={"model": "mlp", "batch_size": 1}, settings={"confidence": 0.95},
                  status=status, reason=reason, timing=timing, metrics=dict(metrics or {}))


def write_run(folder: Path, records: Sequence[Record], env: Mapping[str, Any] | None = None,
              **meta: Any) -> Path:
    store = ResultsStore(folder)
    for r in records:
        store.append(r)
    store.write_run({"schema_version": 1, "run_id": folder.name, "status": "complete",
                     "suites": [{"name": "s"}], "env": dict(env or ENV), **meta})
    return folder
