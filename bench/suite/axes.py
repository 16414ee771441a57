"""The vocabulary of a sweep: every value an axis may take and the combinations no machine runs.

Torch-free on purpose: suites are validated and expanded (`archbench list`) without importing
torch. Capability checks that depend on the machine (is there a GPU, does it do fp8) live in
`bench.measure.capability` and run in the worker; this module only knows what is impossible
everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
DEVICE_KINDS = ("cpu", "cuda")
#: `generate` times prefill and per-token decode of a decoder-only transformers model.
MODES = ("inference", "train", "generate")
COMPILE_MODES = ("eager", "default", "max-autotune", "reduce-overhead")
PRUNE_METHODS = ("none", "unstructured", "structured", "semi-structured-2:4")
PRUNE_SCOPES = ("layer", "global")

#: ASCII digits only, no leading zeros, nothing after (Python's `\d` takes "٣" and `$` a
#: trailing newline; torch takes neither).
_DEVICE_RE = re.compile(r"(cpu|cuda)(:(0|[1-9][0-9]{0,3}))?", re.ASCII)


@dataclass(frozen=True)
class PrecisionInfo:
    """What a precision needs from the machine, known before anything is built."""

    name: str
    devices: tuple[str, ...]
    trains: bool
    summary: str


PRECISIONS: dict[str, PrecisionInfo] = {
    p.name: p
    for p in (
        PrecisionInfo("fp32", ("cpu", "cuda"), True, "float32 weights and matmuls"),
        PrecisionInfo("tf32", ("cuda",), True, "float32 weights, TF32 matmuls and convolutions"),
        PrecisionInfo("fp16", ("cpu", "cuda"), True, "whole model cast to float16"),
        PrecisionInfo("bf16", ("cpu", "cuda"), True, "whole model cast to bfloat16"),
        PrecisionInfo("amp-fp16", ("cpu", "cuda"), True, "autocast to float16, fp32 weights"),
        PrecisionInfo("amp-bf16", ("cpu", "cuda"), True, "autocast to bfloat16, fp32 weights"),
        PrecisionInfo("int8-dynamic", ("cpu",), False,
                      "torchao int8 weights and dynamically quantised int8 activations"),
        PrecisionInfo("int8-weight-only", ("cpu", "cuda"), False, "torchao int8 weight-only"),
        PrecisionInfo("fp8", ("cuda",), False, "torchao float8 (compute capability >= 8.9)"),
    )
}


#: Precisions quantised by torchao (`pip install 'archbench[torchao]'`).
TORCHAO_PRECISIONS = ("int8-dynamic", "int8-weight-only", "fp8")


def device_kind(device: str) -> str | None:
    """'cuda' for 'cuda' or 'cuda:1', 'cpu' for 'cpu', None for anything else."""
    match = _DEVICE_RE.fullmatch(device)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Prune:
    """One value of the `prune` axis.

    `ratio` is the fraction of weights (unstructured) or of channels/neurons/heads (structured)
    to remove; semi-structured 2:4 is fixed at 0.5 by definition.
    """

    method: str = "none"
    ratio: float = 0.0
    scope: str = "layer"
    round_to: int = 8

    @property
    def label(self) -> str:
        """Short, filename-safe label for case names: 'none', 'unstructured50', 'structured25'."""
        if self.method == "none":
            return "none"
        if self.method == "semi-structured-2:4":
            return "sparse24"
        pct = f"{self.ratio * 100:g}".replace(".", "p")
        scope = "g" if self.scope == "global" else ""
        return f"{self.method}{scope}{pct}"

    def canonical(self) -> dict[str, object]:
        """The fields that define the transform; defaults that do not apply are left out."""
        if self.method == "none":
            return {"method": "none"}
        out: dict[str, object] = {"method": self.method, "ratio": self.ratio}
        if self.method == "unstructured":
            out["scope"] = self.scope
        if self.method == "structured":
            out["round_to"] = self.round_to
        return out


def static_conflicts(
    *, device: str, precision: str, prune: Prune, compile: str, mode: str
) -> list[tuple[str, str]]:
    """Combinations impossible on every machine, as (axis, reason) pairs.

    Machine-dependent limits (no GPU, too old a GPU) are not here: those cases are recorded as
    `unsupported` at run time with the reason, because the same suite runs fine elsewhere.
    """
    kind = device_kind(device) or device
    info = PRECISIONS[precision]
    found: list[tuple[str, str]] = []
    if kind not in info.devices:
        where = " or ".join(info.devices)
        found.append(("precision", f'"{precision}" ({info.summary}) runs only on {where}'))
    if mode == "train" and not info.trains:
        found.append(("precision", f'"{precision}" has no backward pass, so it cannot train'))
    if prune.method == "semi-structured-2:4":
        if kind != "cuda":
            found.append(("prune", "2:4 semi-structured sparsity needs a CUDA device"))
        if precision not in ("fp16", "bf16"):
            found.append(("prune", "2:4 semi-structured sparsity needs fp16 or bf16 weights"))
        if mode == "train":
            found.append(("prune", "2:4 semi-structured sparsity is measured for inference only"))
    if mode == "generate" and compile != "eager":
        found.append(("compile", "generation is measured eagerly (the decode loop is not "
                                 "compiled); use compile = \"eager\""))
    if compile == "reduce-overhead" and kind != "cuda":
        found.append(("compile",
                      '"reduce-overhead" replays CUDA graphs, so it needs a CUDA device'))
    return found
