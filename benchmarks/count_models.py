"""Models for the instruction-count benchmark: an MLP, and the same MLP made a little
heavier by one extra small layer.

`make` builds `depth` hidden Linear(width)+ReLU layers and a 10-way head; with
`model_args = {extra = K}` it adds a bottleneck Linear(width, K) -> Linear(K, width) after
the first hidden layer: 4·width·K more FLOPs per item (K = 5 at width 256, depth 2: +1.9%).
With `model_args = {relus = R}` it adds R more ReLU modules there instead (the same output,
a little more work per call: each is one more elementwise pass and one more module call).
"""

from __future__ import annotations

import torch
from torch import nn


def make(case):
    width, depth = case.width or 256, case.depth or 2
    extra = int(dict(case.model_args).get("extra", 0))
    relus = int(dict(case.model_args).get("relus", 0))
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
        if i == 0 and extra:
            layers += [nn.Linear(width, extra), nn.Linear(extra, width)]
        if i == 0 and relus:
            layers += [nn.ReLU() for _ in range(relus)]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers), lambda batch: torch.randn(batch, width)
