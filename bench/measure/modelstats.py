"""Model statistics: parameters (total and non-zero), weight bytes as stored, FLOPs per item.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` (a matmul of (m, k)·(k, n) counts
2·m·n·k; element-wise ops count nothing). Two blind spots are handled explicitly:

- fused inference fast paths (nn.TransformerEncoderLayer under no_grad/inference_mode) are
  invisible to the counter, so FLOPs are counted on a grad-enabled forward, which takes the
  decomposed path with the same arithmetic;
- torch registers no formula for the CPU flash-attention kernel, so attention (the seq²
  term) would count as zero on the CPU; the same formula torch uses for the CUDA kernels is
  registered for it here;
- quantised and sparse kernels are invisible too; callers then count the dense reference
  model and record `flops_method = "dense-equivalent"`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from bench.measure.models.build import Inputs, call


def parameter_stats(module: nn.Module) -> dict[str, int]:
    """Parameter counts and the bytes the weights take as stored.

    Quantised modules keep their weights in packed form, not as parameters; those are found
    through their `weight()` accessor so int8 models do not look weightless.
    """
    total = nonzero = weight_bytes = 0
    seen: set[int] = set()
    for tensor in _weights(module):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        dense = tensor.dequantize() if tensor.is_quantized or is_wrapped(tensor) else tensor
        dense = dense.to_dense() if dense.layout != torch.strided else dense
        total += dense.numel()
        nonzero += int(torch.count_nonzero(dense).item())
        weight_bytes += _stored_bytes(tensor)
    buffers = sum(_stored_bytes(b) for b in module.buffers())
    return {"params_total": total, "params_nonzero": nonzero, "weight_bytes": weight_bytes,
            "buffer_bytes": buffers}


def _cpu_flash_attention_flops(query_shape: Any, key_shape: Any, value_shape: Any,
                               *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


#: Kernels torch's counter has no formula for, with the formula of their CUDA twins.
EXTRA_FLOP_FORMULAS: dict[Any, Any] = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = (
        _cpu_flash_attention_flops)


def count_flops(module: nn.Module, inputs: Inputs) -> int:
    """Total FLOPs of one forward pass on `inputs` (the whole batch)."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    with torch.enable_grad(), counter:
        call(module, _detached(inputs))
    return int(counter.get_total_flops())


def _weights(module: nn.Module) -> list[torch.Tensor]:
    out = [p.detach() for p in module.parameters()]
    for sub in module.modules():
        if sub.__class__.__module__.startswith("torch.ao.nn.quantized") and hasattr(sub, "weight"):
            weight = sub.weight() if callable(sub.weight) else sub.weight
            if isinstance(weight, torch.Tensor):
                out.append(weight)
            bias = getattr(sub, "bias", None)
            bias = bias() if callable(bias) else bias
            if isinstance(bias, torch.Tensor):
                out.append(bias)
    return out


def is_wrapped(tensor: torch.Tensor) -> bool:
    """A tensor subclass storing other tensors (torchao's Int8Tensor: int8 data and scales)."""
    return hasattr(tensor, "__tensor_flatten__") and hasattr(tensor, "dequantize")


def inner_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    names, _ = tensor.__tensor_flatten__()  # type: ignore[attr-defined]
    return [t for t in (getattr(tensor, n) for n in names) if isinstance(t, torch.Tensor)]


def _stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor occupies as stored, including sparse/semi-structured metadata and the
    scales of quantised tensors."""
    if tensor.is_quantized:
        return tensor.numel() * tensor.element_size()
    if is_wrapped(tensor):
        return sum(_stored_bytes(t) for t in inner_tensors(tensor))
    packed = getattr(tensor, "packed", None)  # torch.sparse SparseSemiStructuredTensor
    if isinstance(packed, torch.Tensor):
        meta = getattr(tensor, "meta", None)
        return packed.numel() * packed.element_size() + (
            meta.numel() * meta.element_size() if isinstance(meta, torch.Tensor) else 0)
    if tensor.layout != torch.strided:
        return int(sum(t.numel() * t.element_size() for t in _sparse_parts(tensor)))
    return tensor.numel() * tensor.element_size()


def _sparse_parts(tensor: torch.Tensor) -> list[torch.Tensor]:
    if tensor.layout == torch.sparse_coo:
        return [tensor._values(), tensor._indices()]
    if tensor.layout == torch.sparse_csr:
        return [tensor.values(), tensor.crow_indices(), tensor.col_indices()]
    return [tensor.to_dense()]


def _detached(inputs: Inputs) -> Any:
    if isinstance(inputs, tuple):
        return tuple(t.detach() for t in inputs)
    return inputs.detach()
