"""Where a case sits under this machine's roofline. Pure functions.

    achieved_flops_s       = flops_per_item · batch / median time
    arithmetic_intensity   = flops_per_item / bytes_moved_per_item   (see collectors.traffic)
    attainable             = min(peak_flops_s, arithmetic_intensity · peak_bandwidth_bytes_s)
    roofline_fraction      = achieved_flops_s / attainable

Peaks come from `archbench calibrate` (a large matmul per dtype, a large copy), measured on
this machine and cached per environment fingerprint (`bench.collectors.peaks_cache`). The
peak that applies is the matmul peak of the case's compute dtype on its device; precisions
without a calibrated matmul (int8, fp8) get no fraction, and the record says why. Without a
calibration the achieved FLOP/s and intensity are still recorded; peaks are never guessed.
The dtype is the matmul dtype observed while the case ran (`compute_dtype`) when there is
one, else the one the precision axis implies.

FLOPs are those of `bench.measure.modelstats` (`flops_method` says whether they were counted or are
the dense equivalent of a pruned or quantised model). They count one forward pass, so
training cases get no roofline figures (the reason says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.collectors.base import CollectorResult

#: Precision axis value -> the calibrated matmul dtype that bounds it.
PEAK_DTYPE = {
    "fp32": "float32", "tf32": "tf32", "fp16": "float16", "bf16": "bfloat16",
    "amp-fp16": "float16", "amp-bf16": "bfloat16",
}


CALIBRATED_DTYPES = ("float32", "tf32", "float16", "bfloat16")


def peak_dtype(precision: str, compute_dtype: str | None) -> str | None:
    """The calibrated dtype bounding a case: the matmul dtype observed while it ran when that
    is a calibrated one, else the one its precision implies; None for int8 and fp8."""
    if compute_dtype in CALIBRATED_DTYPES:
        return compute_dtype
    if compute_dtype == "int8" or (compute_dtype or "").startswith("float8"):
        return None
    return PEAK_DTYPE.get(precision)


def device_key(device: str) -> str:
    """'cuda' and 'cuda:0' are the same device."""
    return "cuda:0" if device == "cuda" else device


def evaluate(*, device: str, precision: str, batch_size: int, median_s: float | None,
             metrics: Mapping[str, Any], calibration: Mapping[str, Any] | None,
             missing_reason: str | None, mode: str = "inference") -> CollectorResult:
    """Roofline figures for one case; `calibration` is a loaded calibration file or None
    (then `missing_reason` says why)."""
    if mode != "inference":
        return CollectorResult("roofline", ok=False, reason=(
            "training steps have none: FLOPs and bytes are counted for one forward pass, "
            "a step also runs the backward pass and the optimizer"))
    flops = metrics.get("flops_per_item")
    moved = metrics.get("bytes_moved_per_item")
    if flops is None or median_s is None or median_s <= 0:
        return CollectorResult("roofline", ok=False,
                               reason="no FLOPs or no timing for this case")
    out: dict[str, Any] = {"achieved_flops_s": flops * batch_size / median_s}
    intensity = flops / moved if moved else None
    if intensity is not None:
        out["arithmetic_intensity_flop_per_byte"] = intensity
    if calibration is None:
        return CollectorResult("roofline", ok=False, metrics=out,
                               reason=missing_reason or "no calibration")
    dev = (calibration.get("devices") or {}).get(device_key(device))
    if dev is None:
        return CollectorResult("roofline", ok=False, metrics=out, reason=(
            f"the calibration has no entry for {device}; run `archbench calibrate --device "
            f"{device}`"))
    dtype = peak_dtype(precision, metrics.get("compute_dtype"))
    peaks = dev.get("matmul_flops_s") or {}
    bandwidth = dev.get("copy_bytes_s")
    if bandwidth:
        out["peak_bandwidth_bytes_s"] = bandwidth
    if dtype is None or dtype not in peaks:
        why = (f'precision "{precision}" (compute dtype {metrics.get("compute_dtype")}) has no '
               "calibrated matmul peak" if dtype is None else
               f"no {dtype} matmul peak calibrated for {device}")
        return CollectorResult("roofline", ok=False, metrics=out, reason=why)
    out["peak_flops_s"] = peaks[dtype]
    if intensity is None or not bandwidth:
        return CollectorResult("roofline", ok=False, metrics=out,
                               reason="no bytes-moved estimate or no calibrated bandwidth")
    attainable = min(peaks[dtype], intensity * bandwidth)
    out["roofline_attainable_flops_s"] = attainable
    out["roofline_fraction"] = out["achieved_flops_s"] / attainable
    return CollectorResult("roofline", ok=True, metrics=out)
