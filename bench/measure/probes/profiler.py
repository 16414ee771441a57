"""Operator profile of a case: torch.profiler over a few calls, after timing.

Runs outside the timed window (the worker announces a "profile" phase first, so parent-side
samplers do not count it as timed). Keeps the top operators by self time — on the CPU and,
for CUDA cases, on the device — per iteration, and writes a Chrome trace (open it in
https://ui.perfetto.dev or chrome://tracing) to `traces/<case_id>.json` in the run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

#: Operators kept per ranking (CPU self time, device self time); the union is stored.
TOP_N = 15


def profile_calls(step: Callable[[], Any], device: torch.device, iters: int,
                  trace_path: Path | None) -> dict[str, Any]:
    """Profile `iters` calls of `step`; returns info["profile"] (trace path left absolute)."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # One unrecorded warm-up step first: the profiler's own start-up lands there.
    plan = schedule(wait=0, warmup=1, active=iters, repeat=1)
    with profile(activities=activities, schedule=plan) as prof:
        for _ in range(iters + 1):
            step()
            if cuda:
                torch.cuda.synchronize(device)
            prof.step()
    rows = []
    for event in prof.key_averages():
        if event.key.startswith("ProfilerStep"):
            continue
        device_us = float(getattr(event, "self_device_time_total", 0.0) or 0.0)
        rows.append({
            "name": event.key,
            "self_cpu_ms": float(event.self_cpu_time_total) / 1e3 / iters,
            "self_device_ms": device_us / 1e3 / iters if cuda else None,
            "calls": _per_iter(int(event.count), iters),
        })
    by_cpu = sorted(rows, key=lambda r: -r["self_cpu_ms"])[:TOP_N]
    by_device = sorted(rows, key=lambda r: -(r["self_device_ms"] or 0.0))[:TOP_N] if cuda else []
    chosen = {r["name"]: r for r in [*by_device, *by_cpu]}
    primary = "self_device_ms" if cuda else "self_cpu_ms"
    top = sorted(chosen.values(), key=lambda r: (-(r[primary] or 0.0), -r["self_cpu_ms"]))
    out: dict[str, Any] = {"iters": iters, "top_ops": top, "trace": None}
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))
        out["trace"] = str(trace_path)
    return out


def _per_iter(count: int, iters: int) -> int | float:
    return count // iters if count % iters == 0 else count / iters
