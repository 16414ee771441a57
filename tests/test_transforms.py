"""Pruning, precision, compile and training transforms, on the real zoo models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench.errors import UnsupportedCase
from bench.measure import capability
from bench.measure.fidelity import fidelity
from bench.measure.models.build import build, call
from bench.measure.modelstats import count_flops, parameter_stats
from bench.measure.transforms import precision as precisions
from bench.measure.transforms.pruning import (
    prunable_weights,
    prune_structured,
    prune_unstructured,
    sparsity,
    two_four_mask,
    zero_masks,
)
from bench.measure.transforms.training import make_train_step, seeded_labels
from bench.suite.axes import Prune
from bench.suite.spec import Case

ZOO = {
    "mlp": dict(depth=3, width=64, activation="relu", features=32, classes=10),
    "cnn": dict(depth=4, width=16, activation="relu", image_size=16, classes=10),
    "transformer": dict(depth=2, width=128, activation="gelu", seq_len=16, classes=10),
    "seed-cnn": dict(classes=10),
    "text-classifier": dict(seq_len=16, classes=2),
}
#: Expected params-after / params-before at a 0.5 channel ratio: hidden-to-hidden layers
#: keep a quarter of their weights, layers touching the input or the head keep half.
STRUCTURED_RANGE = {"mlp": (0.2, 0.5), "cnn": (0.2, 0.35), "transformer": (0.35, 0.55),
                    "seed-cnn": (0.2, 0.3), "text-classifier": (0.45, 0.55)}


def zoo(model: str, batch: int = 2):
    built, inputs = build(Case(model=model, batch_size=batch, **ZOO[model]))
    return built.module.eval(), inputs


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- structured -----------------------------------------------------------------------------
@pytest.mark.parametrize("model", sorted(ZOO))
def test_structured_pruning_really_shrinks_every_zoo_model(model):
    module, inputs = zoo(model)
    before_params, before_flops = n_params(module), count_flops(module, inputs)
    first_layer = next(m for m in module.modules()
                       if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)))
    input_width = (first_layer.in_features if isinstance(first_layer, nn.Linear) else
                   first_layer.in_channels if isinstance(first_layer, nn.Conv2d) else
                   first_layer.num_embeddings)

    applied = prune_structured(module, inputs, Prune("structured", 0.5))

    low, high = STRUCTURED_RANGE[model]
    assert low <= n_params(module) / before_params <= high
    assert count_flops(module, inputs) < before_flops
    assert applied["layers_changed"] > 0 and applied["nominal_ratio"] == 0.5
    with torch.inference_mode():
        out = call(module, inputs)
    assert out.shape == (2, ZOO[model]["classes"]), "the classifier head keeps its outputs"
    kept_input = (first_layer.in_features if isinstance(first_layer, nn.Linear) else
                  first_layer.in_channels if isinstance(first_layer, nn.Conv2d) else
                  first_layer.num_embeddings)
    assert kept_input == input_width, "the model's input width is kept"


def test_structured_channels_are_rounded_for_tensor_cores():
    module, inputs = zoo("mlp")
    prune_structured(module, inputs, Prune("structured", 0.3, round_to=8))
    hidden = [m.out_features for m in module.modules() if isinstance(m, nn.Linear)][:-1]
    assert all(width % 8 == 0 for width in hidden) and all(w < 64 for w in hidden)


def test_structured_pruning_that_removes_nothing_is_unsupported():
    module = nn.Sequential(nn.Linear(4, 3))  # only the head: nothing may be pruned
    with pytest.raises(UnsupportedCase, match="removed nothing"):
        prune_structured(module, torch.randn(2, 4), Prune("structured", 0.5))


# ---- unstructured ---------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("model", ["mlp", "seed-cnn", "transformer"])
def test_unstructured_reaches_the_asked_sparsity_with_unchanged_shapes(model, scope):
    module, inputs = zoo(model)
    shapes = {n: p.shape for n, p in module.named_parameters()}
    applied = prune_unstructured(module, Prune("unstructured", 0.6, scope=scope))
    assert applied["achieved_sparsity"] == pytest.approx(0.6, abs=0.01)
    assert sparsity(prunable_weights(module)) == pytest.approx(0.6, abs=0.01)
    assert {n: p.shape for n, p in module.named_parameters()} == shapes
    assert not any(m._forward_pre_hooks for m in module.modules()), "no mask hooks left"
    assert not [n for n, _ in module.named_parameters() if n.endswith("_orig")]
    with torch.inference_mode():
        assert torch.isfinite(call(module, inputs)).all()


def test_layer_scope_prunes_each_layer_alike_global_does_not():
    module, _ = zoo("mlp")
    prune_unstructured(module, Prune("unstructured", 0.5, scope="layer"))
    per_layer = [sparsity([t]) for t in prunable_weights(module)]
    assert all(s == pytest.approx(0.5, abs=0.02) for s in per_layer)
    module, _ = zoo("mlp")
    with torch.no_grad():  # make one layer's weights much larger than the rest
        module[2].weight.mul_(100)
    prune_unstructured(module, Prune("unstructured", 0.5, scope="global"))
    assert sparsity([(module[2], "weight")]) < 0.05


def test_masked_training_keeps_the_zeros():
    module, inputs = zoo("mlp", batch=8)
    prune_unstructured(module, Prune("unstructured", 0.5))
    labels = seeded_labels(8, 10, 0, torch.device("cpu"))
    step, _ = make_train_step(module, inputs, labels, precisions.autocast(
        torch.device("cpu"), "fp32"), grad_scaler=False, masks=zero_masks(module))
    for _ in range(5):
        step()
    assert sparsity(prunable_weights(module)) == pytest.approx(0.5, abs=0.01)


def test_two_four_mask_keeps_the_two_largest_of_every_four():
    weight = torch.tensor([[1.0, -4.0, 3.0, 2.0, 0.5, 0.1, -0.2, 9.0]])
    mask = two_four_mask(weight)
    assert mask.tolist() == [[False, True, True, False, True, False, False, True]]
    big = torch.randn(64, 128)
    groups = two_four_mask(big).reshape(64, 32, 4)
    assert (groups.sum(-1) == 2).all()


# ---- precision ------------------------------------------------------------------------------
CPU = torch.device("cpu")


@pytest.mark.parametrize(("precision", "weights", "compute"), [
    ("fp32", "float32", "float32"),
    ("bf16", "bfloat16", "bfloat16"),
    ("fp16", "float16", "float16"),
    ("amp-bf16", "float32", "bfloat16"),
    ("amp-fp16", "float32", "float16"),
    ("int8-dynamic", "int8 (Int8Tensor)", "int8"),
])
def test_precisions_set_the_dtypes_they_claim(precision, weights, compute):
    module, inputs = zoo("mlp")
    module, inputs, _ = precisions.apply_precision(module, inputs, precision, CPU)
    observed = precisions.observed_matmul_dtypes(module, inputs,
                                                 precisions.autocast(CPU, precision))
    assert precisions.weight_dtype(module) == weights
    assert precisions.compute_dtype(observed, tf32=False) == compute
    if precision in ("bf16", "fp16"):
        assert all(p.dtype == precisions.CAST_DTYPES[precision] for p in module.parameters())
    if precision.startswith("amp"):
        assert all(p.dtype == torch.float32 for p in module.parameters())


def test_int8_dynamic_quantises_the_linears_through_torchao_within_a_sane_error():
    module, inputs = zoo("mlp", batch=16)
    with torch.inference_mode():
        reference = call(module, inputs)
    linears = sum(isinstance(m, nn.Linear) for m in module.modules())
    quantized, _, applied = precisions.apply_precision(copy.deepcopy(module), inputs,
                                                       "int8-dynamic", CPU)
    assert applied["method"] == "torchao quantize_ Int8DynamicActivationInt8WeightConfig"
    assert applied["layers_quantised"] == linears
    assert all(type(m.weight).__name__ == "Int8Tensor" for m in quantized.modules()
               if isinstance(m, nn.Linear))
    # int8 data plus per-row scales: about a quarter of the fp32 bytes
    assert parameter_stats(quantized)["weight_bytes"] < 0.4 * parameter_stats(module)[
        "weight_bytes"]
    with torch.inference_mode():
        result = fidelity(call(quantized, inputs), reference)
    assert 0 < result["fidelity_rel_l2"] < 0.05
    assert result["fidelity_cosine"] > 0.99 and result["fidelity_top1_agreement"] >= 0.9


def test_torchao_precisions_run_or_say_how_to_install(monkeypatch):
    case = Case(model="mlp", batch_size=2, precision="int8-weight-only", **ZOO["mlp"])
    import importlib.util

    if importlib.util.find_spec("torchao") is None:
        with pytest.raises(UnsupportedCase, match=r"archbench\[torchao\]"):
            capability.check(case)
        return
    capability.check(case)
    module, inputs = zoo("mlp")
    with torch.inference_mode():
        reference = call(module, inputs)
    module, _, _ = precisions.apply_precision(module, inputs, "int8-weight-only", CPU)
    with torch.inference_mode():
        assert fidelity(call(module, inputs), reference)["fidelity_rel_l2"] < 0.05
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchao" else real_find_spec(name, *a))
    with pytest.raises(UnsupportedCase, match=r"archbench\[torchao\]"):
        capability.check(case)


def test_tf32_flags_are_set_and_restored():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with precisions.tf32_flags(torch.device("cuda"), "tf32") as flags:
        assert flags == {"cuda_matmul_allow_tf32": True, "cudnn_allow_tf32": True}
    with precisions.tf32_flags(torch.device("cuda"), "fp32") as flags:
        assert flags == {"cuda_matmul_allow_tf32": False, "cudnn_allow_tf32": False}
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_compute_dtype_reports_mixed_and_tf32():
    assert precisions.compute_dtype({"aten.linear:float32": 3}, tf32=True) == "tf32"
    assert precisions.compute_dtype({"aten.linear:float32": 2,
                                     "quantized.linear_dynamic:float32": 2}, tf32=False) == "mixed"


# ---- capability (this machine has no GPU) ---------------------------------------------------
@pytest.mark.parametrize("case", [
    Case(model="mlp", batch_size=1, device="cuda"),
    Case(model="mlp", batch_size=1, device="cuda", precision="tf32"),
    Case(model="mlp", batch_size=1, device="cuda", precision="bf16",
         prune=Prune("semi-structured-2:4", 0.5)),
    Case(model="mlp", batch_size=1, device="cuda", precision="fp8"),
])
def test_cuda_cases_are_unsupported_here_with_the_reason(case):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UnsupportedCase, match="CUDA"):
        capability.check(case)


def test_cpu_fp16_without_native_support_warns():
    warnings = capability.check(Case(model="mlp", batch_size=1, precision="fp16"))
    assert bool(warnings) != capability.cpu_native("fp16")


# ---- training -------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "amp-bf16", "bf16"])
def test_a_train_step_decreases_the_loss_on_a_fixed_batch(precision):
    module, inputs = zoo("mlp", batch=16)
    module, inputs, _ = precisions.apply_precision(module, inputs, precision, CPU)
    labels = seeded_labels(16, 10, 0, CPU)
    step, state = make_train_step(module, inputs, labels, precisions.autocast(CPU, precision),
                                  grad_scaler=False, lr=1e-2)
    losses = [float(step()) for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0]
    assert state.steps == 8 and state.losses()["loss_first"] == losses[0]


def test_amp_fp16_trains_with_a_grad_scaler():
    module, inputs = zoo("mlp", batch=16)
    labels = seeded_labels(16, 10, 0, CPU)
    step, _ = make_train_step(module, inputs, labels, precisions.autocast(CPU, "amp-fp16"),
                              grad_scaler=True, lr=1e-2)
    losses = [float(step()) for _ in range(8)]
    assert losses[-1] < losses[0]


# ---- fidelity -------------------------------------------------------------------------------
def test_fidelity_of_the_reference_against_itself_is_perfect():
    y = torch.randn(8, 5)
    assert fidelity(y, y.clone()) == {"fidelity_rel_l2": 0.0, "fidelity_max_abs": 0.0,
                                      "fidelity_cosine": pytest.approx(1.0),
                                      "fidelity_top1_agreement": 1.0}


def test_fidelity_known_values():
    ref = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    out = torch.tensor([[3.0, 4.5], [0.0, 1.0]])
    result = fidelity(out, ref)
    assert result["fidelity_rel_l2"] == pytest.approx((0.25 + 1 + 1) ** 0.5 / (26 ** 0.5))
    assert result["fidelity_max_abs"] == 1.0
    assert result["fidelity_top1_agreement"] == 0.5


# ---- compile --------------------------------------------------------------------------------
@pytest.mark.slow
def test_compile_default_matches_eager(monkeypatch):
    import os

    from bench.measure.transforms.compile import RecompileWatch, cold_caches, compile_module

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/else")
    module, inputs = zoo("mlp", batch=4)
    with torch.inference_mode():
        eager = call(module, inputs)
    with cold_caches() as folder:
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"].startswith(folder), "a cold, private cache"
        compiled = compile_module(module, "default")
        with torch.inference_mode():
            first = call(compiled, inputs)
            watch = RecompileWatch()
            watch.start()
            again = call(compiled, inputs)
            assert watch.stop() == 0
            call(compiled, torch.randn(5, 32))  # a new batch size: dynamo recompiles
            assert watch.stop() >= 1
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/somewhere/else"
    assert not os.path.exists(folder)
    torch.testing.assert_close(first, eager, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again, eager, rtol=1e-4, atol=1e-5)


# ---- GPU ------------------------------------------------------------------------------------
@pytest.mark.cuda
def test_semi_structured_converts_linears_on_a_gpu():
    from bench.measure.transforms.pruning import prune_semi_structured

    capability.require_capability("cuda", (8, 0), "2:4")
    module = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10)).cuda().half()
    applied = prune_semi_structured(module)
    assert applied["layers_converted"] == ["0"] and "2" in applied["layers_skipped"]
    with torch.inference_mode():
        assert call(module, torch.randn(64, 128, device="cuda", dtype=torch.half)).shape == (64, 10)


@pytest.mark.cuda
def test_fp32_on_cuda_really_runs_without_tf32():
    module = nn.Linear(256, 256).cuda()
    x = torch.randn(64, 256, device="cuda")
    with precisions.tf32_flags(torch.device("cuda"), "fp32"):
        exact = module(x)
    reference = (x.double() @ module.weight.double().T + module.bias.double()).float()
    torch.testing.assert_close(exact, reference, rtol=1e-5, atol=1e-5)
