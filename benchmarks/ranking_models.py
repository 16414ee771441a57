"""Models for the ranking benchmark: MLPs of `blocks` identical Linear+ReLU blocks.

`tag` changes nothing in the model: two cases that differ only in it are the same workload
measured twice (true ratio 1), and `blocks` 20 against 21 adds one block's work (true ratio
a little under 21/20, the input layer and head being shared).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def make(case: Any) -> tuple[nn.Module, Any]:
    args = dict(case.model_args)
    width, blocks = int(case.width or 256), int(args["blocks"])
    layers: list[nn.Module] = [nn.Linear(width, width), nn.ReLU()]
    for _ in range(blocks):
        layers += [nn.Linear(width, width), nn.ReLU()]
    module = nn.Sequential(*layers, nn.Linear(width, 10))

    def make_input(batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, width)

    return module, make_input
