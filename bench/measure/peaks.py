"""Measure this machine's peaks for the roofline: matmul FLOP/s per dtype, copy bandwidth.

Runs inside a worker process (it imports torch and may initialise CUDA), timed with the same
loop as every case (`bench.measure.timing.measure`). For each device:

- **matmul**: square `n × n` products, `n` doubling from a small size until one product takes
  `target_call_s` (or `max_n` is reached); the peak is the best median FLOP/s (2·n³ per product)
  over those sizes. Dtypes: float32, bfloat16 and float16 on the CPU; float32 (TF32 off), tf32,
  float16 and bfloat16 on CUDA. A dtype the CPU only emulates is measured as it is — slow —
  which is the peak a case of that precision can reach here.
- **copy**: `dst.copy_(src)` of a buffer far larger than the caches; bandwidth counts the
  bytes read plus written (2 × size).

The medians, not the best samples, are kept: a peak a case could sustain, not a lucky burst.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import torch

from bench.collectors.roofline import device_key
from bench.env import auto_threads
from bench.measure.timing import measure
from bench.measure.worker import clock_for, device_name, torch_threads
from bench.suite.spec import Settings


@dataclass(frozen=True)
class Plan:
    """Sizes and time limits of a calibration (`quick` shrinks them for tests)."""

    start_n: int
    max_n: int
    target_call_s: float
    copy_bytes: int
    settings: Settings


def plan_for(device: torch.device, quick: bool = False) -> Plan:
    short = Settings(warmup_iters=2, warmup_time_s=0.05, min_samples=5, min_time_s=0.1,
                     max_time_s=1.0, target_ci=0.02)
    if quick:
        return Plan(64, 128, 0.001, 4 << 20, short.updated(min_time_s=0.0, max_time_s=0.02,
                                                           warmup_time_s=0.0))
    if device.type == "cuda":
        return Plan(1024, 16384, 0.005, 1 << 30, short)
    return Plan(256, 4096, 0.02, 256 << 20, short)


CPU_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CUDA_DTYPES = {"float32": torch.float32, "tf32": torch.float32, "float16": torch.float16,
               "bfloat16": torch.bfloat16}


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls on or off for a block, restored after."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def median_s(fn: Callable[[], Any], device: torch.device, settings: Settings) -> float:
    result = measure(fn, clock_for(device), settings)
    return statistics.median(result.samples_ns) / 1e9


def matmul_peak(device: torch.device, dtype: torch.dtype, plan: Plan) -> tuple[float, int]:
    """(best FLOP/s, the n it was reached at)."""
    best, best_n, n = 0.0, plan.start_n, plan.start_n
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        seconds = median_s(partial(torch.mm, a, b), device, plan.settings)
        rate = 2 * n**3 / seconds
        if rate > best:
            best, best_n = rate, n
        del a, b
        if seconds >= plan.target_call_s or n * 2 > plan.max_n:
            return best, best_n
        n *= 2


def copy_bandwidth(device: torch.device, plan: Plan) -> float:
    src = torch.ones(plan.copy_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = median_s(lambda: dst.copy_(src), device, plan.settings)
    return 2 * plan.copy_bytes / seconds


def measure_device(device_text: str, quick: bool = False) -> dict[str, Any]:
    device = torch.device(device_text)
    plan = plan_for(device, quick)
    dtypes = CUDA_DTYPES if device.type == "cuda" else CPU_DTYPES
    peaks: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for name, dtype in dtypes.items():
        with tf32(name == "tf32") if device.type == "cuda" else _nothing():
            peaks[name], sizes[name] = matmul_peak(device, dtype, plan)
    out: dict[str, Any] = {
        "name": device_name(device),
        "matmul_flops_s": peaks,
        "matmul_n": sizes,
        "copy_bytes_s": copy_bandwidth(device, plan),
        "copy_size_bytes": plan.copy_bytes,
    }
    if device.type == "cuda":
        out["uuid"] = str(torch.cuda.get_device_properties(device).uuid)
        torch.cuda.empty_cache()
    return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def measure_peaks(devices: Sequence[str], threads: int | None = None,
                  quick: bool = False) -> dict[str, Any]:
    """Peaks of every device; the payload `bench.collectors.peaks_cache.save` stores."""
    began = time.perf_counter()
    with torch_threads(threads or auto_threads()), torch.inference_mode():
        measured = {device_key(d): measure_device(d, quick) for d in devices}
        used_threads = torch.get_num_threads()
    return {"created_at": datetime.now(UTC).isoformat(), "threads": used_threads,
            "torch_version": str(torch.__version__), "quick": quick,
            "duration_s": time.perf_counter() - began, "devices": measured}
