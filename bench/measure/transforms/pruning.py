"""Pruning: masked (unstructured), structured (physically smaller layers) and 2:4 sparse.

Masked ≠ pruned: unstructured pruning only zeroes weights; shapes stay and dense kernels do
the same work, which the report must be able to show. Structured pruning removes whole
neurons, channels and head dimensions (Torch-Pruning follows the dependency graph), so the
layers really shrink; the classifier head's outputs and the model's input width are kept.
2:4 semi-structured sparsity stores half the weights in a format sparse tensor cores use.

Each function changes the module in place and returns what it really did.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from bench.errors import BuildError, UnsupportedCase
from bench.measure.fidelity import first_tensor
from bench.measure.models.build import Inputs, call
from bench.measure.models.hf import HFModel
from bench.measure.transforms import hf_pruning
from bench.suite.axes import Prune

PrunableTarget = tuple[nn.Module, str]


def prunable_weights(module: nn.Module) -> list[PrunableTarget]:
    """Weights that do multiply-accumulate work: Linear and Conv weights (transformers'
    Conv1D, a transposed Linear, too) and attention's packed input projection. Embeddings are
    lookups, not FLOPs, and are left alone, and so is an output layer tied to one (GPT-2's
    language-model head is its token embedding): masking it would mask the lookup too."""
    embeddings = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    targets: list[PrunableTarget] = []
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.modules.conv._ConvNd)) or _is_hf_conv1d(sub):
            if id(sub.weight) not in embeddings:
                targets.append((sub, "weight"))
        elif isinstance(sub, nn.MultiheadAttention) and sub.in_proj_weight is not None:
            targets.append((sub, "in_proj_weight"))
    return targets


def _is_hf_conv1d(module: nn.Module) -> bool:
    return (type(module).__name__ == "Conv1D" and type(module).__module__.startswith(
        "transformers") and isinstance(getattr(module, "weight", None), nn.Parameter))


def sparsity(targets: list[PrunableTarget]) -> float:
    """Fraction of exactly-zero entries across the targets' weights."""
    zeros = total = 0
    for sub, name in targets:
        weight = getattr(sub, name).detach()
        zeros += int((weight == 0).sum().item())
        total += weight.numel()
    return zeros / total if total else 0.0


def prune_unstructured(module: nn.Module, prune: Prune) -> dict[str, Any]:
    """L1-magnitude unstructured pruning, per layer or across all layers (global).

    The masks are multiplied into the weights and torch's re-parametrisation removed, so no
    forward hook is left in the timed call. (Hooks would also be wrong for attention:
    nn.MultiheadAttention reads `out_proj.weight` without calling `out_proj`, so its hook
    never runs.) Training keeps the zeros with `zero_masks` re-applied after each step.
    """
    targets = prunable_weights(module)
    if not targets:
        raise BuildError("unstructured pruning found no Linear, Conv or attention weights")
    if prune.scope == "global":
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured,
                                        amount=prune.ratio)
    else:
        for sub, name in targets:
            torch_prune.l1_unstructured(sub, name, amount=prune.ratio)
    for sub, name in targets:
        torch_prune.remove(sub, name)
    return {"method": "unstructured", "scope": prune.scope, "nominal_ratio": prune.ratio,
            "layers": len(targets), "achieved_sparsity": sparsity(targets)}


def zero_masks(module: nn.Module) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(weight, keep-mask) of every prunable weight, for keeping masked weights at zero
    while training: the optimizer would otherwise regrow them after one step."""
    return [(getattr(sub, name), getattr(sub, name).detach() != 0)
            for sub, name in prunable_weights(module)]


def classifier_head(module: nn.Module) -> nn.Module | None:
    """The last Linear (or, failing that, Conv) registered: the layer producing the classes,
    whose outputs structured pruning must keep."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    convs = [m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return convs[-1] if convs else None


def prune_structured(module: nn.Module, inputs: Inputs, prune: Prune) -> dict[str, Any]:
    """Remove `prune.ratio` of the channels of every prunable group by L1 importance.

    Torch-Pruning traces the model on `inputs` to find coupled layers (a Linear's outputs,
    the next layer's inputs, a BatchNorm, a residual stream) and removes whole channels from
    each group together; channel counts are rounded to `round_to` for tensor-core shapes.
    For attention, head dimensions are thinned (the head count stays: Torch-Pruning cannot
    drop whole heads of nn.MultiheadAttention).
    """
    import torch_pruning as tp

    with torch.inference_mode():
        shape_before = _output_shape(call(module, inputs))
    if isinstance(module, HFModel) and (hf_pruning.find_attention(module.model)
                                        or hf_pruning.find_mlps(module.model)
                                        or hf_pruning.unknown_attention(module.model, [])):
        before = _shapes(module)
        done = hf_pruning.prune_transformer(module.model, prune)
        _check_output(module, inputs, shape_before)
        return {**done, **_changed(before, _shapes(module))}
    head = classifier_head(module)
    before = _shapes(module)
    attention = [m for m in module.modules() if isinstance(m, nn.MultiheadAttention)]
    with _quiet():
        pruner = tp.pruner.MetaPruner(
            module, inputs, importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=prune.ratio, round_to=prune.round_to,
            ignored_layers=[head] if head is not None else [],
            root_module_types=[nn.modules.conv._ConvNd, nn.Linear, nn.Embedding],
            num_heads={m: m.num_heads for m in attention}, prune_head_dims=True,
            prune_num_heads=False)
        pruner.step()
    for mha in attention:  # keep MHA's bookkeeping consistent with its pruned projections
        mha.head_dim = mha.embed_dim // mha.num_heads
    changed = _changed(before, _shapes(module))
    if not changed["layers_changed"]:
        raise UnsupportedCase(
            f"structured pruning at ratio {prune.ratio} removed nothing from this model (no "
            f"prunable channel group, or every group is smaller than round_to={prune.round_to})")
    _check_output(module, inputs, shape_before)
    return {"method": "structured", "nominal_ratio": prune.ratio, "round_to": prune.round_to,
            "importance": "L1 magnitude per channel group",
            "kept_head": type(head).__name__ if head is not None else None, **changed}


def _changed(before: dict[str, tuple[int, ...]],
             after: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    names = sorted(name for name, shape in after.items() if before.get(name) != shape)
    return {"layers_changed": len(names),
            "shapes": {name: [list(before[name]), list(after[name])] for name in names[:50]}}


def _output_shape(output: Any) -> tuple[int, ...] | None:
    tensor = first_tensor(output)
    return None if tensor is None else tuple(tensor.shape)


def _check_output(module: nn.Module, inputs: Inputs, shape_before: tuple[int, ...] | None
                  ) -> None:
    """The pruned model runs and its output keeps its shape; otherwise it is not the model
    the case asked for, and the case fails saying so."""
    try:
        with torch.inference_mode():
            shape_after = _output_shape(call(module, inputs))
    except Exception as exc:
        raise BuildError(f"the structurally pruned model no longer runs: "
                         f"{type(exc).__name__}: {exc}") from exc
    if shape_after != shape_before:
        raise BuildError(f"structured pruning changed the output shape from {shape_before} to "
                         f"{shape_after}")


# ---- 2:4 semi-structured --------------------------------------------------------------------
def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude weights of every 4 consecutive inputs (the 2:4 pattern)."""
    rows, cols = weight.shape
    if cols % 4:
        raise ValueError(f"2:4 needs the input width to be a multiple of 4, got {cols}")
    groups = weight.detach().abs().reshape(rows, cols // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(rows, cols)


def semi_structured_backend() -> Any:
    """The sparse tensor class used for 2:4: cuSPARSELt where torch has it, else CUTLASS."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

    if torch.backends.cusparselt.is_available():
        return SparseSemiStructuredTensorCUSPARSELT
    return SparseSemiStructuredTensorCUTLASS


def semi_structured_fits(weight: torch.Tensor, backend: Any) -> str | None:
    """None when the weight can be converted by `backend`, else why not (torch's rules)."""
    rules = backend._DTYPE_SHAPE_CONSTRAINTS.get(weight.dtype)
    if rules is None:
        return f"dtype {weight.dtype} has no 2:4 kernel in {backend.__name__}"
    rows, cols = weight.shape
    low_rows, low_cols = rules.sparse_min_rows, rules.sparse_min_cols
    if rows < low_rows or cols < low_cols or rows % low_rows or cols % low_cols:
        return f"shape {rows}x{cols} is not a multiple of (and at least) {low_rows}x{low_cols}"
    return None


def prune_semi_structured(module: nn.Module) -> dict[str, Any]:
    """Apply a 2:4 magnitude mask to every Linear that fits the kernels' shape rules and
    convert its weight to a semi-structured sparse tensor; layers that do not fit stay dense
    and are listed with the reason."""
    backend = semi_structured_backend()
    converted, skipped = [], {}
    for name, sub in module.named_modules():
        if not isinstance(sub, nn.Linear):
            continue
        reason = semi_structured_fits(sub.weight, backend)
        if reason:
            skipped[name] = reason
            continue
        with torch.no_grad():
            masked = sub.weight * two_four_mask(sub.weight)
        sub.weight = nn.Parameter(backend.from_dense(masked), requires_grad=False)
        converted.append(name)
    if not converted:
        raise UnsupportedCase("no Linear layer of this model fits the 2:4 kernels' shape rules: "
                              + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5]))
    return {"method": "semi-structured-2:4", "nominal_ratio": 0.5, "backend": backend.__name__,
            "layers_converted": converted, "layers_skipped": skipped}


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Torch-Pruning prints advice to stdout; keep it out of the worker log's signal."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
