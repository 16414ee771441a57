"""What this machine's GPU really supports, found by trying each thing, not by table look-up.

`benchmarks.gpu_check` compares archbench's verdicts (a case `ok` or `unsupported`) with these
answers, so each probe here is independent of archbench's own capability checks:

- fp32: a float32 matmul with TF32 off matches float64 to ~1e-6;
- tf32: the same matmul with TF32 on is *less* exact (~1e-4..1e-3): the tensor cores rounded
  its inputs; a GPU without TF32 ignores the switch and stays exact;
- fp16 / bf16: a matmul in that dtype runs and lands within its rounding of float64;
- amp-fp16 / amp-bf16: autocast hands a matmul that dtype;
- fp8: `torch._scaled_mm` on float8_e4m3fn operands runs (the hardware's fp8 path), and
  torchao, which archbench's fp8 uses, can be imported;
- int8-weight-only: torchao can be imported (the kernel itself runs on any CUDA GPU);
- 2:4: `to_sparse_semi_structured` converts an fp16 weight and the product stays right;
- NVML: the enforced power limit, the highest SM clock and whether the energy counter reads.

Run as `python -m benchmarks.gpu_truth`: prints one JSON object. It initialises CUDA, so it
runs in a process of its own, never in the one that starts archbench's workers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from typing import Any

#: Relative error of a float32 matmul that really ran in float32 stays far under this;
#: TF32 (10-bit mantissa inputs) lands far over it.
EXACT_FP32 = 2e-5
#: Relative error bounds of one k=1024 matmul per input dtype (its unit roundoff, with room).
TOLERANCE = {"fp16": 5e-3, "bf16": 3e-2, "tf32": 5e-3, "fp8": 0.15}


def _attempt(probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A probe's answer, or why it could not run (the exception, in one line)."""
    try:
        return probe()
    except Exception as exc:
        return {"supported": False, "why": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}


def precisions(torch: Any, device: Any) -> dict[str, dict[str, Any]]:
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(1024, 1024, device=device, generator=generator)
    b = torch.randn(1024, 1024, device=device, generator=generator)
    exact = (a.double() @ b.double())

    def error(out: Any) -> float:
        return float((out.double() - exact).norm() / exact.norm())

    def with_tf32(enabled: bool) -> float:
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = enabled
        try:
            return error(a @ b)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before

    def fp32() -> dict[str, Any]:
        err = with_tf32(False)
        return {"supported": err < EXACT_FP32, "rel_error": err}

    def tf32() -> dict[str, Any]:
        err = with_tf32(True)
        return {"supported": EXACT_FP32 < err < TOLERANCE["tf32"], "rel_error": err,
                "why": None if err > EXACT_FP32 else "TF32 on gave an exact float32 product: "
                                                      "no TF32 tensor cores"}

    def cast(name: str, dtype: Any) -> Callable[[], dict[str, Any]]:
        def probe() -> dict[str, Any]:
            err = error(a.to(dtype) @ b.to(dtype))
            return {"supported": err < TOLERANCE[name], "rel_error": err}
        return probe

    def autocast(dtype: Any) -> Callable[[], dict[str, Any]]:
        def probe() -> dict[str, Any]:
            with torch.autocast("cuda", dtype=dtype):
                out = a @ b
            return {"supported": out.dtype == dtype, "output_dtype": str(out.dtype)}
        return probe

    torchao = importlib.util.find_spec("torchao") is not None
    no_torchao = "torchao is not importable here"

    def fp8() -> dict[str, Any]:
        scale = torch.tensor(1.0, device=device)
        out = torch._scaled_mm(a.to(torch.float8_e4m3fn),
                               b.t().contiguous().to(torch.float8_e4m3fn).t(),
                               scale_a=scale, scale_b=scale, out_dtype=torch.float32)
        err = error(out)
        kernel = err < TOLERANCE["fp8"]
        return {"supported": kernel and torchao, "rel_error": err, "kernel": kernel,
                "why": None if torchao else f"the fp8 kernel runs, but {no_torchao}"}

    return {
        "fp32": _attempt(fp32),
        "tf32": _attempt(tf32),
        "fp16": _attempt(cast("fp16", torch.float16)),
        "bf16": _attempt(cast("bf16", torch.bfloat16)),
        "amp-fp16": _attempt(autocast(torch.float16)),
        "amp-bf16": _attempt(autocast(torch.bfloat16)),
        "int8-weight-only": {"supported": torchao, "why": None if torchao else no_torchao},
        "fp8": _attempt(fp8),
    }


def semi_structured(torch: Any, device: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any]:
        from torch.sparse import to_sparse_semi_structured

        weight = torch.randn(256, 256, device=device, dtype=torch.float16)
        mask = torch.tensor([1, 1, 0, 0], device=device, dtype=torch.bool).repeat(256, 64)
        dense = weight * mask
        x = torch.randn(256, 128, device=device, dtype=torch.float16)
        sparse = to_sparse_semi_structured(dense)
        out, expected = (sparse @ x).double(), (dense.double() @ x.double())
        err = float((out - expected).norm() / expected.norm())
        return {"supported": err < TOLERANCE["fp16"], "rel_error": err,
                "cusparselt": bool(torch.backends.cusparselt.is_available())}
    return _attempt(probe)


def nvml_facts() -> dict[str, Any]:
    """The device's limits as NVML reports them (device 0: the check uses one GPU)."""
    try:
        import pynvml as nvml
    except ImportError:
        return {"available": False, "why": "nvidia-ml-py is not installed"}
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return {"available": False, "why": f"NVML: {exc}"}
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(0)
        out: dict[str, Any] = {"available": True,
                               "driver": _text(nvml.nvmlSystemGetDriverVersion())}
        readers = {
            "power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3,
            "max_sm_clock_mhz": lambda: nvml.nvmlDeviceGetMaxClockInfo(handle,
                                                                       nvml.NVML_CLOCK_SM),
            "energy_counter_mj": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
        }
        for key, read in readers.items():
            try:
                out[key] = float(read())
            except Exception as exc:
                out[key] = None
                out[f"{key}_why"] = f"NVML: {exc}"
        return out
    finally:
        nvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": str(torch.__version__), "torch_cuda": torch.version.cuda,
                           "python": sys.version.split()[0]}
    if torch.version.cuda is None or not torch.cuda.is_available():
        why = ("torch is a CPU-only build" if torch.version.cuda is None
               else "torch.cuda.is_available() is False")
        return {**out, "cuda": False, "why": f"no GPU: {why} (torch {torch.__version__})"}
    device = torch.device("cuda:0")
    props = torch.cuda.get_device_properties(device)
    out.update(cuda=True, name=props.name, capability=list(torch.cuda.get_device_capability()),
               total_memory_bytes=int(props.total_memory),
               multiprocessors=int(props.multi_processor_count),
               device_count=torch.cuda.device_count(),
               precisions=precisions(torch, device),
               semi_structured=semi_structured(torch, device),
               nvml=nvml_facts())
    return out


if __name__ == "__main__":
    json.dump(probe(), sys.stdout)
