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
    if ref.dim() >= 2 and ref.shape[-1] > 1:  # classes, or a language model's vocabulary
        out["fidelity_top1_agreement"] = float((y.argmax(-1) == ref.argmax(-1)).double().mean())
    return out


#: Below this RMS a float32 output carries no signal an int8 activation scale can represent.
TINY_RMS = 1e-12


def vanished_output(output: torch.Tensor, reference: torch.Tensor) -> str | None:
    """Why an all-zero output is the model's doing, when it is: a reference whose values are
    vanishingly small (a random-weight model whose activations die out through its layers)
    rounds to zero under any int8 activation scale. None when there is nothing to say."""
    y = output.detach().to("cpu", torch.float64)
    ref = reference.detach().to("cpu", torch.float64)
    if ref.numel() == 0 or bool(y.any()):
        return None
    rms = float(ref.pow(2).mean().sqrt())
    if rms == 0:
        return None
    if rms < TINY_RMS:
        return (f"the output is all zeros and the fp32 reference's RMS is {rms:.1e}: this "
                "model's activations vanish (random weights), so quantising them rounds "
                "everything to zero; fidelity needs a trained model (hf:path/to/dir)")
    return (f"the output is all zeros while the fp32 reference's RMS is {rms:.3g}: the "
            "transform destroyed the signal")
