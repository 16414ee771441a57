"""Precision: what the weights are stored in and what the matmuls compute in.

- casts (`fp16`, `bf16`) convert the whole model and its floating inputs;
- autocast (`amp-fp16`, `amp-bf16`) keeps fp32 weights and runs eligible ops in low precision;
- `int8-dynamic` (int8 activations quantised per call, int8 weights), `int8-weight-only` and
  `fp8` quantise Linear layers with torchao's `quantize_` (an optional extra);
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
from bench.measure.modelstats import inner_tensors, is_wrapped
from bench.suite.axes import TORCHAO_PRECISIONS

CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
AUTOCAST_DTYPES = {"amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}
QUANTISED = TORCHAO_PRECISIONS


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
    if precision in QUANTISED:
        return module, inputs, _torchao(module, precision)
    return module, inputs, {"method": "none"}


#: torchao's config class for each quantised precision.
TORCHAO_CONFIGS = {"int8-dynamic": "Int8DynamicActivationInt8WeightConfig",
                   "int8-weight-only": "Int8WeightOnlyConfig",
                   "fp8": "Float8DynamicActivationFloat8WeightConfig"}


def _torchao(module: nn.Module, precision: str) -> dict[str, Any]:
    """Quantise every nn.Linear with torchao's `quantize_` (torch's own quantize_dynamic is
    deprecated in its favour); other layers (convolutions, transformers' Conv1D) stay fp32
    and are counted in the record."""
    try:
        import torchao.quantization as ao
    except ImportError:
        raise UnsupportedCase(f'precision "{precision}" needs torchao, which is not installed; '
                              "install it with: pip install 'archbench[torchao]'") from None
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UnsupportedCase(f"{precision} quantises nn.Linear layers; this model has none")
    config_name = TORCHAO_CONFIGS[precision]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ao.quantize_(module, getattr(ao, config_name)())
    others = sum(1 for m in module.modules()
                 if isinstance(m, nn.modules.conv._ConvNd) or type(m).__name__ == "Conv1D")
    return {"method": f"torchao quantize_ {config_name}", "layers_quantised": len(linears),
            "layers_kept_fp32": others}


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
            stored = weight
            if is_wrapped(weight):  # torchao: the dtype its data is stored in, not its facade
                stored = max(inner_tensors(weight), key=lambda t: t.numel())
            dtype = str(stored.dtype).removeprefix("torch.")
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
        # quantized.* (torch.ao) and _int_mm (torchao: uint8 activations x int8 weights)
        integer = op.startswith("quantized.") or op.endswith("._int_mm")
        by_dtype["int8" if integer else dtype] += count
    if not by_dtype:
        return "unknown"
    dtype, count = by_dtype.most_common(1)[0]
    if count < DOMINANT_SHARE * sum(by_dtype.values()):
        return "mixed"
    return "tf32" if dtype == "float32" and tf32 else dtype
