"""An estimate of the bytes one forward pass moves through memory, for the roofline.

Counted on one forward pass under `inference_mode` (as timed) with a dispatch mode that sees
every aten operator:

    bytes moved = weights read + input read + 2 × activations

- weights read: every parameter or buffer some operator reads, its whole storage, once;
- input read: the input tensors, once;
- activations: every tensor an operator creates (views and in-place results create none),
  written once and read once by its consumer.

It is a model of DRAM traffic with no cache: activations that stay in cache between two
operators, or weights re-read per tile, are not modelled, so for small models that fit in
cache the arithmetic intensity is underestimated and the roofline fraction can exceed 1.
Fused kernels (the transformer inference fast path) count only their outputs. When no weight
storage is seen (packed quantised weights are not tensors), `weight_bytes + buffer_bytes`
from the model statistics stand in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bench.measure.models.build import Inputs, call


def _storage_key(tensor: torch.Tensor) -> tuple[str, int] | None:
    try:
        return str(tensor.device), tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):  # sparse, quantised, subclasses
        return None


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class _Traffic(TorchDispatchMode):
    def __init__(self, weights: dict[tuple[str, int], int]) -> None:
        super().__init__()
        self.weights = weights
        self.weights_read: set[tuple[str, int]] = set()
        self.activation_bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in tree_flatten((args, kwargs or {}))[0] if isinstance(a, torch.Tensor)]
        seen = set()
        for tensor in inputs:
            key = _storage_key(tensor)
            if key is None:
                continue
            seen.add(key)
            if key in self.weights:
                self.weights_read.add(key)
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and _storage_key(tensor) not in seen:
                self.activation_bytes += _nbytes(tensor)
        return out


def bytes_moved(module: torch.nn.Module, inputs: Inputs, *,
                fallback_weight_bytes: int = 0) -> dict[str, int]:
    """The estimate's parts for one forward pass on `inputs` (the whole batch)."""
    weights: dict[tuple[str, int], int] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        key = _storage_key(tensor)
        if key is not None:
            weights[key] = tensor.untyped_storage().nbytes()
    mode = _Traffic(weights)
    with torch.inference_mode(), mode:
        call(module, inputs)
    weight_bytes = sum(weights[k] for k in mode.weights_read) or fallback_weight_bytes
    parts = inputs if isinstance(inputs, tuple) else (inputs,)
    input_bytes = sum(_nbytes(t) for t in parts)
    return {"weights": weight_bytes, "input": input_bytes,
            "activations": mode.activation_bytes,
            "total": weight_bytes + input_bytes + 2 * mode.activation_bytes}
