"""In-worker collector pieces, run in this process: the traffic estimate and the probes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.collectors.base import CollectorResult
from bench.measure.probes.host_memory import HostMemoryProbe, faults_per_call, ru_maxrss_bytes
from bench.measure.probes.registry import worker_probes
from bench.measure.probes.traffic import bytes_moved
from bench.suite.spec import Case


def test_bytes_moved_counts_weights_input_and_activations_by_hand():
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 7)).eval()
    parts = bytes_moved(model, torch.randn(5, 12))
    assert parts["weights"] == (12 * 16 + 16 + 16 * 7 + 7) * 4
    assert parts["input"] == 5 * 12 * 4
    assert parts["activations"] == (5 * 16 + 5 * 16 + 5 * 7) * 4  # addmm, relu, addmm
    assert parts["total"] == parts["weights"] + parts["input"] + 2 * parts["activations"]


def test_weights_that_are_never_read_are_not_traffic():
    model = nn.Linear(4, 2).eval()
    model.register_buffer("ballast", torch.ones(1 << 20, dtype=torch.uint8))
    assert bytes_moved(model, torch.randn(3, 4))["weights"] == (4 * 2 + 2) * 4


def test_in_place_and_view_results_create_no_traffic():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(inplace=True), nn.Flatten()).eval()
    parts = bytes_moved(model, torch.randn(2, 8))
    assert parts["activations"] == 2 * 8 * 4  # only the addmm output


def test_packed_weights_fall_back_to_the_stored_bytes():
    quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 8)),
                                                       {nn.Linear}, dtype=torch.qint8)
    parts = bytes_moved(quantized.eval(), torch.randn(2, 8), fallback_weight_bytes=100)
    assert parts["weights"] == 100


def test_host_memory_probe_reads_rss_before_build_and_the_high_water_mark():
    probe = HostMemoryProbe()
    for phase in ("build", "warmup", "timed", "teardown"):
        probe.on_phase(phase)
    result = probe.result()
    assert result.ok
    # The kernel folds per-thread RSS counters into its high-water mark lazily (every 64
    # faults per thread), so ru_maxrss may trail a fresh /proc reading by a few hundred KiB.
    lag = 4 * 2**20
    assert 0 < result.metrics["rss_before_build_bytes"] <= result.metrics["ru_maxrss_bytes"] + lag
    assert ru_maxrss_bytes() + lag >= result.metrics["rss_before_build_bytes"]


def test_host_memory_probe_counts_faults_in_the_timed_window_only():
    probe = HostMemoryProbe()
    probe.on_phase("warmup")
    bytearray(64 * 2**20)[::4096] = b"\x01" * 16384  # outside the window: not counted
    probe.on_phase("timed")
    buffer = bytearray(64 * 2**20)  # above any mmap threshold: fresh pages
    buffer[::4096] = b"\x01" * 16384
    probe.on_phase("teardown")
    metrics = dict(probe.result().metrics)
    assert 0.9 * 16384 <= metrics["minor_faults_timed"] <= 1.5 * 16384
    faults_per_call(metrics, calls=4)
    assert "minor_faults_timed" not in metrics
    assert metrics["minor_faults_per_call"] == pytest.approx(16384 / 4, rel=0.5)


def test_cpu_cases_get_no_cuda_probe_and_telemetry_off_gets_none():
    probes = worker_probes(Case(model="mlp", batch_size=1))
    cuda = next(p for p in probes if getattr(p, "name", None) == "cuda_memory")
    assert isinstance(cuda, CollectorResult) and cuda.reason == "not a CUDA case"
    off = Case(model="mlp", batch_size=1).settings.updated(telemetry=False)
    assert worker_probes(Case(model="mlp", batch_size=1, settings=off)) == []
