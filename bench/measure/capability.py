"""What this machine can run, checked in the worker before any model is built.

`bench.suite.axes.static_conflicts` rejects what no machine runs when the suite is loaded; this
module rejects what *this* machine cannot run, as `UnsupportedCase` with the reason, so the
same suite runs everywhere and each machine records what it could not do and why. Things
that run but badly (bf16 emulated on a CPU without bf16 instructions) come back as warnings.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import psutil
import torch

from bench.errors import UnsupportedCase
from bench.measure.transforms.precision import QUANTISED
from bench.suite import footprint
from bench.suite.spec import Case

#: Compute capability each CUDA feature needs: TF32 and 2:4 sparse tensor cores came with
#: Ampere (8.0), fp8 with Ada/Hopper (8.9).
MIN_CAPABILITY = {"tf32": (8, 0), "semi-structured-2:4": (8, 0), "fp8": (8, 9)}


def check(case: Case) -> list[str]:
    """Raise UnsupportedCase when this machine cannot run the case as asked; return warnings
    about things that will run, but not the way the user probably expects."""
    check_device(case.device)
    check_memory(case)
    warnings: list[str] = []
    warnings += check_precision(case)
    check_prune(case)
    check_compile(case)
    return warnings


def check_device(device: str) -> None:
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return
    if torch.version.cuda is None:
        raise UnsupportedCase(f"no CUDA here: torch {torch.__version__} is a CPU-only build")
    if not torch.cuda.is_available():
        raise UnsupportedCase("no CUDA device: torch.cuda.is_available() is False (no GPU, no "
                              "driver, or CUDA_VISIBLE_DEVICES hides them)")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise UnsupportedCase(f"{device} does not exist: {count} CUDA device(s) visible")


def check_memory(case: Case) -> None:
    """A case whose estimated footprint exceeds the device's whole memory cannot run here:
    say so with the estimate instead of allocating until the OOM killer ends it."""
    size = footprint.estimate(case)
    if size is None:
        return
    if case.device_kind == "cuda":
        index = int(case.device.partition(":")[2] or 0)
        total = int(torch.cuda.get_device_properties(index).total_memory)
        where = f"{case.device} has"
    else:
        total = int(psutil.virtual_memory().total)
        where = "this machine has"
    if size.bytes > total:
        raise UnsupportedCase(f"the model needs {size.describe()}; {where} "
                              f"{footprint.human(total)} in all")


def check_precision(case: Case) -> list[str]:
    precision, kind = case.precision, case.device_kind
    if precision in MIN_CAPABILITY and kind == "cuda":
        require_capability(case.device, MIN_CAPABILITY[precision], f'precision "{precision}"')
    if precision in QUANTISED and importlib.util.find_spec("torchao") is None:
        raise UnsupportedCase(f'precision "{precision}" needs torchao, which is not installed; '
                              "install it with: pip install 'archbench[torchao]'")
    if kind == "cpu" and precision in ("bf16", "amp-bf16") and not cpu_native("bf16"):
        return ["bf16 on this CPU is emulated (no AVX512-BF16 or AMX): expect it to be slower "
                "than fp32"]
    if kind == "cpu" and precision in ("fp16", "amp-fp16") and not cpu_native("fp16"):
        return ["fp16 on this CPU is emulated (no AVX512-FP16 or AMX-FP16): expect it to be "
                "slower than fp32"]
    return []


def check_prune(case: Case) -> None:
    method = case.prune.method
    if method == "structured" and importlib.util.find_spec("torch_pruning") is None:
        raise UnsupportedCase("structured pruning needs torch-pruning, which is not installed")
    if method == "semi-structured-2:4":
        require_capability(case.device, MIN_CAPABILITY[method], "2:4 semi-structured sparsity")


def check_compile(case: Case) -> None:
    if case.compile == "eager":
        return
    if not torch._dynamo.is_dynamo_supported():
        raise UnsupportedCase("torch.compile is not supported on this Python/torch build")
    if case.device_kind == "cpu" and not (os.environ.get("CXX") or shutil.which("g++") or
                                          shutil.which("c++")):
        raise UnsupportedCase("torch.compile on the CPU needs a C++ compiler (g++) on the PATH")
    if case.device_kind == "cuda" and importlib.util.find_spec("triton") is None:
        raise UnsupportedCase("torch.compile on CUDA needs triton, which is not installed")


def require_capability(device: str, needed: tuple[int, int], what: str) -> None:
    capability = torch.cuda.get_device_capability(torch.device(device))
    if tuple(capability) < needed:
        name = torch.cuda.get_device_name(torch.device(device))
        raise UnsupportedCase(f"{what} needs compute capability {needed[0]}.{needed[1]}; "
                              f"{name} has {capability[0]}.{capability[1]}")


def cpu_native(kind: str) -> bool:
    """Whether oneDNN has native kernels for bf16/fp16 on this CPU (AVX512-BF16, AMX...)."""
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[kind]
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):
        return False
