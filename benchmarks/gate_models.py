"""A test-only model for the gate-quality benchmark: a stack of identical blocks.

`ARCHBENCH_GATE_SLOWDOWN` (default 1.0) multiplies the number of blocks while the case (and
so its case_id) stays the same: 1.15 turns 20 blocks into 23, exactly 15% more of the same
work per call, so the candidate is really ~15% slower under the baseline's case ids.
"""

from __future__ import annotations

import os

import torch
from torch import nn

BASE_BLOCKS = 20


def blocks(case):
    width = case.width or 256
    count = round(BASE_BLOCKS * float(os.environ.get("ARCHBENCH_GATE_SLOWDOWN", "1.0")))
    layers = []
    for _ in range(count):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers), lambda batch: torch.randn(batch, width)
