"""Made-up result frames with every column a report can draw, for tests and the scale benchmark.

The numbers follow a simple cost model (latency grows with FLOPs, structured pruning and low
precision help on CUDA, masked pruning never does) so every section has something to show.
They are not measurements and are never written where a run's results go.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from bench.stats import summarize

PRUNES = (("none", 0.0), ("unstructured", 0.5), ("structured", 0.5))


def _possible(precision: str, device: str) -> bool:
    return not ((precision == "int8-dynamic" and device == "cuda") or
                (precision == "fp16" and device == "cpu"))


def synthetic_frame(*, models: tuple[str, ...] = ("mlp",), depths: tuple[int, ...] = (2, 4),
                    widths: tuple[int, ...] = (64, 256, 1024), batches: tuple[int, ...] = (32,),
                    devices: tuple[str, ...] = ("cpu", "cuda"),
                    precisions: tuple[str, ...] = ("fp32", "bf16"),
                    prunes: tuple[tuple[str, float], ...] = PRUNES,
                    n_cases: int | None = None, fail_rate: float = 0.04, seed: int = 0,
                    samples: int = 40, run_id: str = "synthetic",
                    telemetry_points: int = 20) -> pd.DataFrame:
    """Rows shaped like `bench.load()` output for the product of the axes (the first
    `n_cases` of it), deterministic for a seed. Every architecture comes with its fp32,
    unpruned reference first, so speed-ups have their twins.

    A `fail_rate` share of cases failed or timed out, and impossible precision/device pairs
    are `unsupported`, so the failure section has rows too.
    """
    rng = np.random.default_rng(seed)
    grid = list(itertools.product(models, devices, batches, depths, widths, precisions, prunes))
    grid = grid[:n_cases] if n_cases is not None else grid
    rows = [_row(index, combo, rng, run_id, samples, telemetry_points, fail_rate)
            for index, combo in enumerate(grid)]
    return pd.DataFrame(rows)


def _row(index: int, combo: tuple[Any, ...], rng: np.random.Generator, run_id: str,
         samples: int, telemetry_points: int, fail_rate: float) -> dict[str, Any]:
    model, device, batch, depth, width, precision, (method, ratio) = combo
    name = (f"{model}-d{depth}-w{width}-b{batch}-{precision}-{device}"
            + (f"-{method}{ratio * 100:g}" if method != "none" else ""))
    row: dict[str, Any] = {
        "run_id": run_id, "case_id": f"{index:016x}", "name": name, "suite": "synthetic",
        "sweep": f"{model} sweep", "model": model, "depth": depth, "width": width,
        "activation": "relu", "batch_size": batch, "device": device, "precision": precision,
        "compile": "eager", "mode": "inference", "prune_method": method,
        "prune_ratio": ratio, "prune_scope": "layer" if method == "unstructured" else None,
        "status": "ok", "reason": None, "warnings": None,
    }
    if not _possible(precision, device):
        row.update(status="unsupported", reason=f'"{precision}" does not run on {device}')
        return row
    if rng.random() < fail_rate:
        row.update(status=str(rng.choice(["failed", "timeout"])),
                   reason="RuntimeError: synthetic failure\n  at layer 3")
        return row
    params = depth * width * width + width * 10
    kept = (1 - ratio) if method == "structured" else 1.0
    flops = 2.0 * params * kept ** 2
    speed = (5e10 if device == "cpu" else 2e12) * {"fp32": 1.0, "bf16": 1.6, "fp16": 2.0,
                                                   "int8-dynamic": 1.8}[precision]
    median_ms = (flops * batch / speed) * 1e3 + (0.02 if device == "cpu" else 0.01)
    raw = median_ms * np.exp(rng.normal(0, 0.03 + 0.15 * (rng.random() < 0.1), samples))
    summary = summarize(list(raw * 1e6), items_per_iter=batch).to_dict()
    summary["n_samples"] = summary.pop("n")
    row.update(summary)
    row.update({
        "samples_ms": [float(v) for v in raw], "block_size": 1, "first_call_ms": median_ms * 5,
        "target_met": bool(summary["ci_rel"] <= 0.01), "stop_reason": "ci", "threads": 2,
        "params_total": int(params * kept), "params_nonzero": int(params * kept * (
            1 - ratio if method == "unstructured" else 1)),
        "weight_bytes": int(params * kept * (2 if precision in ("bf16", "fp16") else 4)),
        "flops_per_item": flops, "flops_method": "counted" if precision == "fp32"
        else "dense-equivalent", "duration_s": 1.0 + median_ms / 100,
        "peak_rss_timed_bytes": int(3e8 + params * 8), "peak_rss_bytes": int(3.2e8 + params * 8),
    })
    if method != "none":
        row.update(prune_sparsity=ratio, prune_params_ratio=kept ** 2 if method == "structured"
                   else 1.0, prune_flops_ratio=kept ** 2)
    if method != "none" or precision != "fp32":
        error = 1e-3 * (1 + 20 * ratio) * (3 if precision == "int8-dynamic" else 1)
        row.update(fidelity_rel_l2=error, fidelity_cosine=1 - error ** 2 / 2,
                   fidelity_max_abs=error * 4, fidelity_top1_agreement=1 - error * 5)
    if device == "cuda":
        power = 80 + 200 * rng.random()
        row.update({
            "cuda_max_allocated_timed_bytes": int(params * 6 + 2e7),
            "cuda_max_reserved_timed_bytes": int(params * 8 + 4e7),
            "gpu_util_mean_pct": 40 + 50 * rng.random(), "power_mean_w": power,
            "power_max_w": power * 1.2, "sm_clock_mean_mhz": 1700 + 100 * rng.random(),
            "temperature_max_c": 60 + 10 * rng.random(),
            "energy_per_item_j": power * median_ms / 1e3 / batch, "energy_method": "counter",
            "telemetry": _telemetry(rng, telemetry_points, power),
        })
    return row


def _telemetry(rng: np.random.Generator, points: int, power: float) -> dict[str, list[float]]:
    t = np.linspace(0, 2.0, points)
    return {"t_s": t.round(3).tolist(),
            "gpu_util_pct": (70 + 20 * rng.random(points)).round(1).tolist(),
            "power_w": (power + 10 * rng.standard_normal(points)).round(1).tolist(),
            "sm_clock_mhz": (1750 + 30 * rng.standard_normal(points)).round(0).tolist(),
            "temperature_c": (55 + 5 * t).round(1).tolist(),
            "rss_bytes": (3e8 + 1e6 * t).round(0).tolist()}
