"""What this machine can run, checked in the worker before any model is built.

`bench.axes.static_conflicts` rejects what no machine runs when the suite is loaded; this
module rejects what *this* machine cannot run, as `UnsupportedCase` with the reason, so the
same suite runs everywhere and each machine records what it could not do and why.
"""

from __future__ import annotations

import torch

from bench.errors import UnsupportedCase
from bench.spec import Case

#: Axis values the suite format accepts but this version cannot measure yet.
NOT_IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "precision": tuple(p for p in ("tf32", "fp16", "bf16", "amp-fp16", "amp-bf16",
                                   "int8-dynamic", "int8-weight-only", "fp8")),
    "compile": ("default", "max-autotune", "reduce-overhead"),
    "mode": ("train",),
}


def check(case: Case) -> None:
    """Raise UnsupportedCase when this machine cannot run the case as asked."""
    check_device(case.device)
    for axis, values in NOT_IMPLEMENTED.items():
        value = getattr(case, axis)
        if value in values:
            raise UnsupportedCase(f'{axis} "{value}" is not implemented in this archbench '
                                  "version; the case was not run rather than run as something "
                                  "else")
    if case.prune.method != "none":
        raise UnsupportedCase(f'prune method "{case.prune.method}" is not implemented in this '
                              "archbench version; the case was not run")


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
