"""Export a run as pytest-benchmark JSON, so tools built for it (`pytest-benchmark compare`,
dashboards, CI actions reading `benchmarks[].stats`) can read archbench results.

Pure: records and the run's metadata in, a JSON-ready dict out. Mapping:

- `benchmarks[]`: one per measured case. `stats` in seconds, computed the way
  pytest-benchmark computes them (its quartile method, Tukey fences, outlier string), with
  the raw per-iteration samples in `data` and `iterations` = archbench's block size (each
  sample is the mean of that many calls, as pytest-benchmark's are).
- `extra_info`: archbench's own metrics and identity (case_id, status, parameters FLOPs,
  memory, fidelity...), so nothing measured is lost.
- `machine_info`: pytest-benchmark's keys, plus the GPUs with driver, torch/CUDA/cuDNN
  versions and the full archbench environment.
- `commit_info`: the git state recorded with the run.
"""

from __future__ import annotations

import math
import platform
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench._version import __version__
from bench.results.record import Record
from bench.results.repeats import merge_repeats

FORMAT_NOTE = "pytest-benchmark JSON written by archbench"


def export(records: Sequence[Record], meta: Mapping[str, Any]) -> dict[str, Any]:
    env = dict(meta.get("env") or {})
    records = merge_repeats(records)
    return {
        "machine_info": machine_info(env),
        "commit_info": commit_info(env, project=Path(str(meta.get("cwd") or "")).name or None),
        # One entry per case: a case's repeats are one benchmark (pooled samples), as
        # pytest-benchmark has one entry per test.
        "benchmarks": [benchmark(r) for r in records if r.status == "ok" and r.samples_ns],
        "datetime": meta.get("started_at"),
        "version": f"archbench {__version__}",
        "archbench": {"run_id": meta.get("run_id"), "note": FORMAT_NOTE,
                      "not_measured": [{"name": r.name, "status": r.status, "reason": r.reason}
                                       for r in records if r.status != "ok"]},
    }


def benchmark(record: Record) -> dict[str, Any]:
    """One case as pytest-benchmark writes a test: its fields computed from the pooled
    samples as pytest-benchmark computes them, and in `extra_info` the case's level and
    interval as every archbench reader states them (`bench.stats.level`)."""
    from bench.stats import interval_basis

    timing = dict(record.timing or {})
    data = [s / 1e9 for s in record.samples_ns]
    settings = dict(record.settings)
    params = dict(record.params)
    summary = record.summary()
    level = {} if summary is None else {
        "level_s": summary.median_ms / 1e3, "level_ci_low_s": summary.ci_low_ms / 1e3,
        "level_ci_high_s": summary.ci_high_ms / 1e3, "workers": summary.workers,
        "interval_over": interval_basis(summary.workers, summary.between_workers)}
    return {
        "group": record.suite or None,
        "name": record.name,
        "fullname": f"{record.suite}::{record.name}" if record.suite else record.name,
        "params": params,
        "param": record.case_id,
        "extra_info": {"case_id": record.case_id, "run_id": record.run_id,
                       "sweep": record.sweep, "status": record.status,
                       "stop_reason": timing.get("stop_reason"),
                       "target_met": timing.get("target_met"),
                       "first_call_s": _s(timing.get("first_call_ns")),
                       "clock": timing.get("clock"), **level, **_scalars(record.metrics)},
        "options": {"disable_gc": False, "timer": timing.get("clock") or "perf_counter",
                    "min_rounds": settings.get("min_samples"),
                    "max_time": settings.get("max_time_s"),
                    "min_time": settings.get("min_time_s"), "warmup": True},
        "stats": {**stats(data), "data": data, "iterations": int(timing.get("block_size") or 1)},
    }


def stats(data: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's Stats fields, computed as it computes them."""
    ordered = sorted(data)
    n = len(ordered)
    mean = statistics.mean(ordered)
    stddev = statistics.stdev(ordered) if n > 1 else 0.0
    q1, q3 = _quartiles(ordered)
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_outliers = sum(v < low or v > high for v in ordered)
    stddev_outliers = sum(v < mean - stddev or v > mean + stddev for v in ordered)
    total = math.fsum(ordered)
    return {
        "min": ordered[0], "max": ordered[-1], "mean": mean, "stddev": stddev, "rounds": n,
        "median": statistics.median(ordered), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": ordered[0] if n == 1 else ordered[bisect_left(ordered, low)],
        "hd15iqr": ordered[0] if n == 1 else ordered[bisect_right(ordered, high) - 1],
        "ops": n / total if total else 0, "total": total,
    }


def _quartiles(d: Sequence[float]) -> tuple[float, float]:
    """Wikipedia's method 3 for odd n, method 2 for even n (what pytest-benchmark uses)."""
    n = len(d)
    if n == 1:
        return d[0], d[0]
    if n % 2 == 0:
        return statistics.median(d[: n // 2]), statistics.median(d[n // 2:])
    k, r = n // 4, n % 4
    if r == 1:
        return 0.25 * d[k - 1] + 0.75 * d[k], 0.75 * d[3 * k] + 0.25 * d[3 * k + 1]
    return 0.75 * d[k] + 0.25 * d[k + 1], 0.25 * d[3 * k + 1] + 0.75 * d[3 * k + 2]


def machine_info(env: Mapping[str, Any]) -> dict[str, Any]:
    gpus = list(env.get("gpus") or [])
    return {
        "node": env.get("hostname"),
        "processor": env.get("cpu_model"),
        "machine": platform.machine(),
        "python_implementation": env.get("python_implementation"),
        "python_version": env.get("python"),
        "python_implementation_version": env.get("python"),
        "release": None,
        "system": str(env.get("platform") or "").split("-")[0] or None,
        "cpu": {"brand_raw": env.get("cpu_model"), "count": env.get("cpu_count_logical"),
                "flags": env.get("cpu_flags"), "hz_advertised_mhz": env.get("cpu_freq_max_mhz")},
        "gpus": [{"name": g.get("name"), "uuid": g.get("uuid"), "driver": g.get("driver")}
                 for g in gpus],
        "driver_version": gpus[0].get("driver") if gpus else None,
        "torch_version": env.get("torch_version"),
        "cuda_version": env.get("cuda_version"),
        "cudnn_version": env.get("cudnn_version"),
        "threads": env.get("threads"),
        "archbench_env": dict(env),
    }


def commit_info(env: Mapping[str, Any], project: str | None = None) -> dict[str, Any]:
    return {"id": env.get("git_commit") or "unversioned", "time": None, "author_time": None,
            "dirty": bool(env.get("git_dirty")), "project": project,
            "branch": env.get("git_branch") or "(unknown)"}


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def _s(ns: Any) -> float | None:
    return None if ns is None else float(ns) / 1e9
