"""Transforms end to end through the worker: what each case records about its price."""

from __future__ import annotations

import pytest

from bench.engine.runner import RunOptions, run
from bench.suite import loader as suite_file

pytestmark = pytest.mark.slow


def test_transform_cases_record_their_cost(write_suite, tmp_path):
    path = write_suite("""
        [[sweep]]
        model = ["mlp"]
        depth = [2]
        width = [64]
        batch_size = [8]
        precision = ["fp32", "bf16", "int8-dynamic"]
        prune = ["none", { method = "unstructured", ratio = 0.5 },
                 { method = "structured", ratio = 0.5 }]
        [[sweep]]
        model = ["mlp"]
        width = [64]
        batch_size = [8]
        mode = ["train"]
        precision = ["fp32", "amp-bf16"]
        prune = ["none", { method = "unstructured", ratio = 0.5 }]
        [[sweep]]
        model = ["transformer"]
        depth = [1]
        width = [64]
        seq_len = [8]
        precision = ["int8-dynamic"]
    """)
    suite = suite_file.load(path)
    result = run([suite], list(suite.cases), RunOptions(out=tmp_path / "run"))
    by_name = {r.name: r for r in result.records}
    assert all(r.status == "ok" for r in result.records), {
        r.name: r.reason for r in result.records if r.status != "ok"}

    base = by_name["mlp-d2-w64-relu-b8-fp32-cpu"].metrics
    assert base["fidelity_rel_l2"] == 0.0 and base["fidelity_top1_agreement"] == 1.0
    assert base["weight_dtype"] == base["compute_dtype"] == "float32"
    assert base["flops_method"] == "counted" and base["recompiles"] == 0

    masked = by_name["mlp-d2-w64-relu-b8-fp32-cpu-unstructured50"].metrics
    assert masked["prune_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert masked["prune_params_ratio"] == 1.0 and masked["prune_flops_ratio"] == 1.0
    assert masked["params_nonzero"] < 0.55 * masked["params_total"]

    shrunk = by_name["mlp-d2-w64-relu-b8-fp32-cpu-structured50"]
    assert shrunk.metrics["prune_params_ratio"] < 0.6 and shrunk.metrics["prune_flops_ratio"] < 0.6
    assert shrunk.metrics["params_total"] < base["params_total"]
    assert shrunk.info["prune"]["layers_changed"] > 0

    bf16 = by_name["mlp-d2-w64-relu-b8-bf16-cpu"].metrics
    assert bf16["weight_dtype"] == bf16["compute_dtype"] == "bfloat16"
    assert 0 < bf16["fidelity_rel_l2"] < 0.05
    assert bf16["weight_bytes"] == base["weight_bytes"] // 2

    int8 = by_name["mlp-d2-w64-relu-b8-int8-dynamic-cpu"].metrics
    assert int8["weight_dtype"] == "int8 (Int8Tensor)" and int8["compute_dtype"] == "int8"
    assert int8["flops_method"] == "dense-equivalent"
    assert int8["flops_per_item"] == base["flops_per_item"]

    train = by_name["mlp-d2-w64-relu-b8-amp-bf16-cpu-train"]
    assert train.metrics["loss_last"] < train.metrics["loss_first"]
    masked_train = by_name["mlp-d2-w64-relu-b8-fp32-cpu-unstructured50-train"]
    assert masked_train.metrics["prune_sparsity"] == pytest.approx(0.5, abs=0.01)

    attention = by_name["transformer-d1-w64-gelu-b1-int8-dynamic-cpu-s8"]
    assert "mha_fastpath" in attention.info and attention.metrics["compute_dtype"] == "mixed"


def test_compiled_case_reports_compile_time_apart(write_suite, tmp_path):
    path = write_suite("""
        [[sweep]]
        model = ["mlp"]
        depth = [1]
        width = [32]
        batch_size = [4]
        compile = ["default"]
        # A cold Inductor compile (C++ codegen and gcc) takes about a minute on two busy
        # cores: the case timeout leaves room for that rather than timing the compiler out.
        settings = { timeout_s = 240.0 }
    """)
    suite = suite_file.load(path)
    (record,) = run([suite], list(suite.cases), RunOptions(out=tmp_path / "run")).records
    assert record.status == "ok", record.reason
    metrics = record.metrics
    assert metrics["compile_s"] > 0.5, "a cold compile takes real time"
    assert metrics["compile_s"] * 1e9 > 100 * max(record.timing["samples_ns"]), \
        "compile time is not inside the samples"
    assert metrics["recompiles"] == 0
    assert metrics["fidelity_rel_l2"] < 1e-5
    assert record.info["compile"]["caches"] == "cold (per case)"
