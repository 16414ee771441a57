"""How much memory a case needs, estimated from its parameters before anything is built.

A suite can ask for a model no machine holds (`depth = 10**6`, `width = 10**6`): built, it
would allocate until the OOM killer or the case timeout stopped it, minutes later. The
estimate catches that first: the loader rejects a case beyond `MAX_BYTES` (no machine has
that much), and the worker records a case beyond its device's memory as `unsupported`, with
the estimate, before building it. Estimates cover the built-in models only; a user factory's
size is unknown until it runs.

The estimate is deliberately rough but not low: weights (and for training their gradients and
two AdamW moments), plus the fp32 reference copy fidelity is measured against, plus the
activations of one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.suite.spec import Case

#: No single device archbench runs on has this much memory (4 TiB).
MAX_BYTES = 4 * 2**40
#: Token vocabulary of the built-in token models (bench.models.zoo.VOCAB_SIZE).
VOCAB_SIZE = 10_000
_BYTES = {"fp16": 2, "bf16": 2, "int8-dynamic": 1, "int8-weight-only": 1, "fp8": 1}


@dataclass(frozen=True)
class Footprint:
    params: int
    #: Activation values of one batch (all layers' outputs, kept for backward in training).
    activations: int
    bytes: int

    def describe(self) -> str:
        return (f"about {human(self.bytes)} ({self.params:,} parameters, "
                f"{self.activations:,} activation values per batch)")


def estimate(case: Case) -> Footprint | None:
    """The case's memory estimate, or None for a model whose size is not known in advance."""
    counts = _counts(case)
    if counts is None:
        return None
    params, per_item = counts
    weight = _BYTES.get(case.precision, 4)
    state = 4 if case.mode == "train" else 1  # weights, gradients, two AdamW moments
    activations = per_item * case.batch_size
    total = params * weight * state + params * 4 + activations * max(weight, 2)
    return Footprint(params=params, activations=activations, bytes=total)


def _counts(case: Case) -> tuple[int, int] | None:
    """(parameters, activation values per item) of a built-in model."""
    depth, width = case.depth or 0, case.width or 0
    classes = case.classes or 0
    if case.model == "mlp":
        features = case.features or 0
        params = (features + 1) * width + (depth - 1) * (width + 1) * width + \
            (width + 1) * classes
        return params, features + 2 * depth * width + classes
    if case.model == "cnn":
        side, channels_in, params, acts = case.image_size or 0, 3, 0, 0
        for block in range(depth):
            channels = width * 2 ** (block // 2)
            params += 9 * channels_in * channels + 2 * channels
            acts += 3 * channels * side * side
            if block % 2 == 1 and side > 4:
                side //= 2
            channels_in = channels
        return params + (channels_in + 1) * classes, 3 * (case.image_size or 0) ** 2 + acts
    if case.model == "transformer":
        seq = case.seq_len or 0
        heads = max(1, width // 64)
        layer = 12 * width * width + 13 * width
        params = VOCAB_SIZE * width + seq * width + depth * layer + (width + 1) * classes
        return params, depth * seq * (10 * width + heads * seq)
    if case.model == "seed-cnn":
        return 1792 + 73856 + 8193 * 1024 + 1025 * classes, 3 * 32 * 32 + 3 * 64 * 32 * 32
    if case.model == "text-classifier":
        return VOCAB_SIZE * 128 + 129 * classes, (case.seq_len or 0) * 128
    return None


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"
