"""Precision: what the weights are stored in and what the matmuls compute in.

- casts (`fp16`, `bf16`) convert the whole model and its floating inputs;
- autocast (`amp-fp16`, `amp-bf16`) keeps fp32 weights and runs eligible ops in low precision;
- `int8-dynamic` replaces Linear layers with dynamically quantised ones (CPU);
- `int8-weight-only` and `fp8` use torchao (an optional extra) where the device supports it;
- `fp32` and `tf32` differ only in the TF32 flags, which are set explicitly for both: cuDNN
  convolutions use TF32 by default, so an honest `fp32` on CUDA must switch it off.

What the request turned into is observed, not assumed: `observed_matmul_dtypes` runs one
forward under a dispatch mode and records the dtypes the matmul-like ops really received.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bench.errors import UnsupportedCase
from bench.measure.models.build import Inputs, call

CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
AUTOCAST_DTYPES = {"amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}
QUANTISED = ("int8-dynamic", "int8-weight-only", "fp8")


@contextlib.contextmanager
def tf32_flags(device: torch.device, precision: str) -> Iterator[dict[str, bool]]:
    """Set both TF32 switches for the case (on only for `tf32`) and restore them after."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    enable = precision == "tf32"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enable
        torch.backends.cudnn.allow_tf32 = enable
    try:
        yield {"cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
               "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


ContextFactory = Callable[[], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def mha_fastpath(enabled: bool) -> Iterator[None]:
    """Switch nn.TransformerEncoderLayer/MultiheadAttention's fused inference path.

    The fused kernel reads `linear.weight` as a plain tensor; quantised and sparse layers
    store it otherwise, so for those the fast path must be off (the record says so)."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def autocast(device: torch.device, precision: str) -> ContextFactory:
    """A factory of the autocast context the timed step runs in (a no-op unless amp)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def cast_inputs(inputs: Inputs, dtype: torch.dtype) -> Inputs:
    """Floating inputs follow a cast model; integer inputs (token ids) stay as they are."""
    def one(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if t.is_floating_point() else t

    return tuple(one(t) for t in inputs) if isinstance(inputs, tuple) else one(inputs)


def apply_precision(module: nn.Module, inputs: Inputs, precision: str,
                    device: torch.device) -> tuple[nn.Module, Inputs, dict[str, Any]]:
    """Convert the module (in place where torch allows) and return what was applied."""
    if precision in CAST_DTYPES:
        dtype = CAST_DTYPES[precision]
        module.to(dtype)
        return module, cast_inputs(inputs, dtype), {"method": f"cast to {dtype}"}
    if precision in AUTOCAST_DTYPES:
        return module, inputs, {"method": f"autocast to {AUTOCAST_DTYPES[precision]}"}
    if precision == "int8-dynamic":
        return _dynamic_int8(module), inputs, {"method": "torch dynamic int8 (Linear)",
                                               "engine": torch.backends.quantized.engine}
    if precision in ("int8-weight-only", "fp8"):
        return _torchao(module, precision), inputs, {"method": f"torchao {precision}"}
    return module, inputs, {"method": "none"}


def _dynamic_int8(module: nn.Module) -> nn.Module:
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError:
            raise UnsupportedCase(f"torch {torch.__version__} no longer ships "
                                  "torch.ao.quantization.quantize_dynamic; use precision "
                                  '"int8-weight-only" (torchao) instead') from None

        quantized: nn.Module = quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8,
                                                inplace=True)
    if not any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in
               quantized.modules()):
        raise UnsupportedCase("int8-dynamic replaced nothing: the model has no nn.Linear")
    return quantized


def _torchao(module: nn.Module, precision: str) -> nn.Module:
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )
    except ImportError:
        raise UnsupportedCase(f'precision "{precision}" needs torchao, which is not installed; '
                              "install it with: pip install 'archbench[torchao]'") from None
    config = Int8WeightOnlyConfig() if precision == "int8-weight-only" else (
        Float8DynamicActivationFloat8WeightConfig())
    quantize_(module, config)
    return module


# ---- what really ran ------------------------------------------------------------------------
_MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "convolution",
               "_convolution", "conv1d", "conv2d", "conv3d", "_scaled_mm",
               "_weight_int8pack_mm", "_int_mm", "_transformer_encoder_layer_fwd",
               "_native_multi_head_attention")


class _MatmulDtypes(TorchDispatchMode):
    """Records `op:dtype` for every matmul-like op (after autocast, casts and quantisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
        namespace = getattr(func, "namespace", "aten")
        if name in _MATMUL_OPS or "attention" in name or namespace == "quantized":
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            dtype = str(first.dtype).removeprefix("torch.") if first is not None else "?"
            self.seen[f"{namespace}.{name}:{dtype}"] += 1
        return func(*args, **(kwargs or {}))


def observed_matmul_dtypes(module: nn.Module, inputs: Inputs,
                           autocast_context: Callable[[], Any]) -> dict[str, int]:
    """One forward pass with the case's autocast, recording the dtypes matmuls received."""
    recorder = _MatmulDtypes()
    with torch.inference_mode(), autocast_context(), recorder:
        call(module, inputs)
    return dict(recorder.seen)


def weight_dtype(module: nn.Module) -> str:
    """The dtype most weights of compute layers (Linear, Conv, their quantised forms) are
    stored in; embeddings are lookups and do not count."""
    counts: Counter[str] = Counter()
    for sub in module.modules():
        quantised = type(sub).__module__.startswith("torch.ao.nn.quantized")
        if not (quantised or isinstance(sub, (nn.Linear, nn.modules.conv._ConvNd))):
            continue
        weight = getattr(sub, "weight", None)
        weight = weight() if callable(weight) and not isinstance(weight, torch.Tensor) else weight
        if isinstance(weight, torch.Tensor):
            kind = type(weight).__name__
            dtype = str(weight.dtype).removeprefix("torch.")
            label = dtype if kind in ("Parameter", "Tensor") else f"{dtype} ({kind})"
            counts[label] += weight.numel()
    return counts.most_common(1)[0][0] if counts else "unknown"


#: Below this share of matmul-like ops in one dtype, the compute dtype is reported "mixed".
DOMINANT_SHARE = 0.75


def compute_dtype(observed: dict[str, int], tf32: bool) -> str:
    """The dtype the matmul-like ops ran in ('tf32' for fp32 matmuls with TF32 on), or
    'mixed' when no dtype covers most of them (the breakdown is kept in the record)."""
    by_dtype: Counter[str] = Counter()
    for key, count in observed.items():
        op, _, dtype = key.rpartition(":")
        by_dtype["int8" if op.startswith("quantized.") else dtype] += count
    if not by_dtype:
        return "unknown"
    dtype, count = by_dtype.most_common(1)[0]
    if count < DOMINANT_SHARE * sum(by_dtype.values()):
        return "mixed"
    return "tf32" if dtype == "float32" and tf32 else dtype
