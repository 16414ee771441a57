"""Parameter counts, stored bytes and FLOPs, against hand-computed answers."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from bench.measure.models.build import build
from bench.measure.modelstats import count_flops, parameter_stats
from bench.suite.spec import Case


def test_mlp_flops_are_two_batch_sum_in_out():
    batch, dims = 5, [12, 32, 32, 7]
    module = nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.Linear(32, 32), nn.ReLU(),
                           nn.Linear(32, 7))
    expected = 2 * batch * sum(a * b for a, b in itertools.pairwise(dims))
    assert count_flops(module, torch.randn(batch, 12)) == expected


def test_seed_cnn_flops_by_hand():
    built, inputs = build(Case(model="seed-cnn", batch_size=2, classes=10))
    conv1 = 2 * (3 * 9) * 64 * 32 * 32
    conv2 = 2 * (64 * 9) * 128 * 16 * 16
    fcs = 2 * (128 * 8 * 8 * 1024 + 1024 * 10)
    assert count_flops(built.module, inputs) == 2 * (conv1 + conv2 + fcs)


def test_transformer_fast_path_is_still_counted():
    """Under inference_mode the fused encoder kernel hides its matmuls from the counter."""
    built, inputs = build(Case(model="transformer", batch_size=2, depth=1, width=64,
                               activation="gelu", seq_len=8, classes=3))
    module = built.module.eval()
    with torch.inference_mode():
        flops = count_flops(module, inputs)
    tokens, width = 2 * 8, 64
    projections = 2 * tokens * width * (3 * width) + 2 * tokens * width * width
    feed_forward = 2 * 2 * tokens * width * 4 * width
    attention = 2 * 2 * 2 * 8 * 8 * width  # scores and weighted sum, per sequence
    head = 2 * 2 * width * 3
    assert flops == projections + feed_forward + attention + head


def test_parameter_stats_count_zeros_and_bytes():
    module = nn.Linear(10, 4)
    with torch.no_grad():
        module.weight[:2].zero_()
    stats = parameter_stats(module)
    assert stats["params_total"] == 44
    assert stats["params_nonzero"] == 44 - 20
    assert stats["weight_bytes"] == 44 * 4
    assert parameter_stats(module.half())["weight_bytes"] == 44 * 2


def test_shared_weights_are_counted_once():
    a = nn.Linear(4, 4)
    module = nn.Sequential(a, nn.ReLU(), a)
    assert parameter_stats(module)["params_total"] == 20
