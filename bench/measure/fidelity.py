"""How far a transformed model's output is from the fp32, eager, unpruned reference.

Computed in float64 on the CPU on the same seeded input: relative L2 error, max abs error,
cosine similarity, and top-1 agreement for classifier outputs (batch, classes). The reference
against itself gives exactly 0 error, cosine 1 and agreement 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor to compare: the output itself, or the first tensor inside it."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output
    if isinstance(values, (list, tuple)) or isinstance(output, Mapping):
        for value in values:
            found = first_tensor(value)
            if found is not None:
                return found
    return None


def fidelity(output: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    if output.shape != reference.shape:
        raise ValueError(f"output shape {tuple(output.shape)} differs from the reference's "
                         f"{tuple(reference.shape)}")
    y = output.detach().to("cpu", torch.float64)
    ref = reference.detach().to("cpu", torch.float64)
    diff = y - ref
    ref_norm = float(ref.norm())
    out = {
        "fidelity_rel_l2": float(diff.norm()) / ref_norm if ref_norm > 0 else float(diff.norm()),
        "fidelity_max_abs": float(diff.abs().max()) if diff.numel() else 0.0,
        "fidelity_cosine": float(torch.nn.functional.cosine_similarity(
            y.flatten(), ref.flatten(), dim=0, eps=1e-30)),
    }
    if ref.dim() == 2 and ref.shape[1] > 1:
        out["fidelity_top1_agreement"] = float((y.argmax(1) == ref.argmax(1)).double().mean())
    return out
