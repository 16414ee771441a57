"""torch.compile: compile time kept apart from the timed window, recompiles detected.

Every case compiles cold: Inductor's and Triton's on-disk caches point at a fresh folder, so
`compile_s` is what a user pays the first time, not a cache hit left by an earlier case.
A recompilation inside the timed window (a guard failing on a shape, a dtype, the grad mode)
would put compile time into the samples; it is counted and reported with the case.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

#: compile axis value -> torch.compile `mode` argument
MODES: dict[str, str | None] = {"default": None, "max-autotune": "max-autotune",
                                "reduce-overhead": "reduce-overhead"}


@contextlib.contextmanager
def cold_caches() -> Iterator[str]:
    """Fresh Inductor/Triton cache folders and a reset dynamo for the case; restored after."""
    keys = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
    before = {k: os.environ.get(k) for k in keys}
    with tempfile.TemporaryDirectory(prefix="archbench-compile-") as folder:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(folder, "inductor")
        os.environ["TRITON_CACHE_DIR"] = os.path.join(folder, "triton")
        torch._dynamo.reset()
        try:
            yield folder
        finally:
            torch._dynamo.reset()
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def compile_module(module: nn.Module, mode: str) -> nn.Module:
    compiled: nn.Module = torch.compile(module, mode=MODES[mode])  # type: ignore[assignment]
    return compiled


def frames_compiled() -> int:
    """Frames dynamo has compiled so far in this process (grows by one per recompile).

    Importing dynamo costs about a second; an eager case never loads it, and where it was
    never loaded nothing can have been compiled.
    """
    if "torch._dynamo.utils" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"])


class RecompileWatch:
    """Counts compilations between `start()` and `stop()`."""

    def __init__(self) -> None:
        self._start = 0
        self.recompiles = 0

    def start(self) -> None:
        self._start = frames_compiled()

    def stop(self) -> int:
        self.recompiles = frames_compiled() - self._start
        return self.recompiles


def describe(mode: str) -> dict[str, Any]:
    return {"mode": mode, "torch_compile_mode": MODES.get(mode), "caches": "cold (per case)"}
