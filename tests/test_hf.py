"""Transformers families (`hf:...`): suite checks, building, head-aware pruning, generation.

Tiny configs only (two layers, 64-256 wide): each model builds in well under a second.
"""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from torch import nn

from bench.errors import BuildError, SpecError, UnsupportedCase
from bench.measure import generation
from bench.measure.fidelity import vanished_output
from bench.measure.models.build import build, call
from bench.measure.models.hf import HFModel
from bench.measure.timing import TimingResult
from bench.measure.transforms import hf_pruning, pruning
from bench.suite import hf
from bench.suite import loader as suite_file
from bench.suite.axes import Prune
from bench.suite.spec import Case

LLAMA = {"model": "hf:llama", "depth": 2, "width": 64, "vocab_size": 256, "seq_len": 8}
TINY = {
    "llama-gqa": Case(batch_size=2, heads=8, kv_heads=2, **LLAMA),
    "llama-mha": Case(batch_size=2, heads=4, kv_heads=4, **LLAMA),
    "bert-2-heads": Case(model="hf:bert", batch_size=2, depth=2, width=128, heads=2,
                         vocab_size=256, seq_len=8),
    "bert-4-heads": Case(model="hf:bert", batch_size=2, depth=2, width=256, heads=4,
                         vocab_size=256, seq_len=8),
    "vit-3-heads": Case(model="hf:vit", batch_size=2, depth=2, width=192, heads=3,
                        image_size=32, model_args=(("patch_size", 8),)),
}


@pytest.fixture(scope="module")
def families() -> dict[str, hf.Family]:
    return {name: hf.describe(name) for name in ("hf:llama", "hf:bert", "hf:vit", "hf:resnet",
                                                 "hf:gpt2")}


# ---- what a family takes, and the suite errors ---------------------------------------------
def test_families_map_the_axes_onto_their_configs(families):
    llama, resnet = families["hf:llama"], families["hf:resnet"]
    assert llama.kind == "causal-lm" and llama.input_name == "input_ids"
    assert llama.axis_fields == {"depth": "num_hidden_layers", "width": "hidden_size",
                                 "heads": "num_attention_heads",
                                 "kv_heads": "num_key_value_heads", "vocab_size": "vocab_size"}
    assert families["hf:bert"].kind == "text-classification"
    assert families["hf:vit"].kind == "image-classification"
    assert resnet.axis_fields == {"depth": "depths", "width": "hidden_sizes",
                                  "classes": "num_labels"}
    overrides = hf.config_overrides(resnet, Case(model="hf:resnet", batch_size=1, depth=3,
                                                 width=64))
    assert overrides["depths"] == [3, 3, 3, 3] and overrides["hidden_sizes"] == [64, 128, 256, 512]


def test_width_alone_keeps_the_family_head_size_and_mlp_ratio(families):
    llama = families["hf:llama"]  # default: 4096 wide, 32 heads of 128, MLP 11008
    config = hf.effective_config(llama, Case(model="hf:llama", batch_size=1, width=512))
    assert config["num_attention_heads"] == 4 and config["head_dim"] == 128
    assert config["num_key_value_heads"] == 4
    assert config["intermediate_size"] == round(11008 * 512 / 4096)


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"width": 100, "heads": 3}, "heads", "not divisible by 3 heads"),
    ({"heads": 8, "kv_heads": 3}, "kv_heads", "kv_heads must divide heads"),
    ({"model_args": (("hiden_size", 3),)}, "model_args.hiden_size", 'did you mean "hidden_size"'),
    ({"width": 64, "model_args": (("hidden_size", 64),)}, "model_args.hidden_size",
     "`width` already sets"),
    ({"seq_len": 5000}, "seq_len", "exceeds the 2048 positions"),
    ({"image_size": 32}, "image_size", "it takes token ids"),
])
def test_impossible_llama_cases_name_the_field(families, changes, key, words):
    case = hf.fill_defaults(families["hf:llama"], Case(model="hf:llama", batch_size=1, **changes))
    found = dict(hf.problems(families["hf:llama"], case))
    assert key in found and words in found[key], found


def test_generate_needs_a_decoder_and_train_a_classifier(families):
    bert = Case(model="hf:bert", batch_size=1, mode="generate")
    assert "decoder-only" in dict(hf.problems(families["hf:bert"],
                                              hf.fill_defaults(families["hf:bert"], bert)))["mode"]
    llama = Case(model="hf:llama", batch_size=1, mode="train")
    assert "classifier" in dict(hf.problems(families["hf:llama"], llama))["mode"]
    heads = Case(model="hf:resnet", batch_size=1, heads=2)
    assert "num_attention_heads" in dict(hf.problems(families["hf:resnet"], heads))["heads"]


def test_inputs_are_made_to_fit(families):
    text = hf.fill_defaults(families["hf:llama"], Case(model="hf:llama", batch_size=1,
                                                       mode="generate"))
    assert (text.seq_len, text.new_tokens) == (hf.DEFAULT_SEQ_LEN, hf.DEFAULT_NEW_TOKENS)
    vit = hf.fill_defaults(families["hf:vit"], Case(model="hf:vit", batch_size=1))
    assert vit.image_size == 224 and vit.seq_len is None
    forward = hf.fill_defaults(families["hf:llama"], Case(model="hf:llama", batch_size=1,
                                                          new_tokens=8))
    assert forward.new_tokens is None  # only generating decodes tokens


@pytest.mark.slow
def test_the_loader_checks_hf_suites_in_a_subprocess(write_suite):
    """One subprocess per load describes every family; errors name file, key and fix."""
    path = write_suite("""
        [[sweep]]
        model = "hf:llama"
        depth = 2
        width = [64, 128]
        heads = 4
        kv_heads = [1, 2, 4]
        vocab_size = 256
        mode = ["inference", "generate"]
        new_tokens = 4
        seq_len = 8
    """)
    suite = suite_file.load(path)
    assert len(suite.cases) == 12
    generate = [c for c in suite.cases if c.mode == "generate"]
    assert {c.new_tokens for c in generate} == {4}
    assert {c.new_tokens for c in suite.cases if c.mode == "inference"} == {None}
    assert generate[0].name == "hf-llama-d2-w64-h4-kv1-v256-b1-fp32-cpu-s8-generate-n4"

    bad = write_suite('[[sweep]]\nmodel = "hf:meta-llama/Llama-2-7b"\n')
    with pytest.raises(SpecError, match=r"sweep\[0\]\.model\[0\].*never downloads"):
        suite_file.load(bad)
    bad = write_suite('[[sweep]]\nmodel = "hf:llama"\nwidth = [100]\nheads = [3]\n')
    with pytest.raises(SpecError, match=r"sweep\[0\]\.heads: .*not divisible by 3 heads"):
        suite_file.load(bad)
    bad = write_suite('[[sweep]]\nmodel = "mlp"\nmode = "generate"\n')
    with pytest.raises(SpecError, match=r"sweep\[0\]\.mode: .*decoder-only transformers"):
        suite_file.load(bad)


def test_a_missing_transformers_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(hf.HFUnavailable, match=r"pip install 'archbench\[hf\]'"):
        hf.describe("hf:llama")
    # what the loader's subprocess answers in that case
    monkeypatch.setattr(sys, "stdin", _Stdin(json.dumps({"names": ["hf:llama"],
                                                          "search_path": []})))
    hf._serve()
    answer = json.loads(capsys.readouterr().out)
    assert "archbench[hf]" in answer["hf:llama"]["error"]


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self) -> str:
        return self.text


# ---- building -------------------------------------------------------------------------------
def test_models_build_from_configs_with_inputs_that_fit():
    built, inputs = build(TINY["llama-gqa"])
    assert isinstance(built.module, HFModel)
    config = built.module.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.vocab_size) == (2, 64, 8, 2, 256)
    ids, mask = inputs
    assert ids.shape == mask.shape == (2, 8) and int(ids.max()) < 256
    assert call(built.module, inputs).shape == (2, 8, 256)
    again, _ = build(TINY["llama-gqa"])  # seeded: the same weights
    assert torch.equal(next(iter(again.module.parameters())),
                       next(iter(built.module.parameters())))
    assert built.info["hf"]["model_class"] == "LlamaForCausalLM"
    vit, pixels = build(TINY["vit-3-heads"])
    assert pixels.shape == (2, 3, 32, 32) and call(vit.module, pixels).shape == (2, 2)


def test_a_saved_model_loads_its_weights_and_keeps_its_architecture(tmp_path, families):
    built, inputs = build(TINY["llama-gqa"])
    built.module.model.save_pretrained(tmp_path / "tiny")
    name = "hf:tiny"
    loaded, _ = build(Case(model=name, batch_size=2, seq_len=8), search_path=[str(tmp_path)])
    with torch.inference_mode():
        assert torch.equal(call(loaded.module, inputs), call(built.module, inputs))
    saved = hf.describe(name, [str(tmp_path)])
    assert saved.source == "dir" and saved.model_class == "LlamaForCausalLM"
    widened = Case(model=name, batch_size=1, width=128, seq_len=8)
    assert "weights fix its architecture" in dict(hf.problems(saved, widened))["width"]


# ---- structured pruning keeps the model its config describes --------------------------------
def _kept_columns(original: nn.Linear, pruned: nn.Linear) -> list[int]:
    """The original input columns a pruned layer kept, found by matching their values."""
    columns = {tuple(original.weight[:, j].tolist()): j for j in range(original.in_features)}
    return [columns[tuple(pruned.weight[:, j].tolist())] for j in range(pruned.in_features)]


def _masked_original(original: nn.Module, pruned: nn.Module) -> nn.Module:
    """The unpruned model with the removed heads' and channels' output columns zeroed: what
    whole-head and whole-channel pruning must compute."""
    masked = copy.deepcopy(original)
    pairs = [(a.o, b.o) for a, b in zip(hf_pruning.find_attention(masked),
                                        hf_pruning.find_attention(pruned), strict=True)]
    pairs += [(a.out, b.out) for a, b in zip(hf_pruning.find_mlps(masked),
                                             hf_pruning.find_mlps(pruned), strict=True)]
    with torch.no_grad():
        for layer, kept in pairs:
            drop = torch.ones(layer.in_features, dtype=torch.bool)
            drop[_kept_columns(layer, kept)] = False
            layer.weight[:, drop] = 0
    return masked


@pytest.mark.parametrize("ratio", [0.25, 0.5])
@pytest.mark.parametrize("name", list(TINY))
def test_structured_pruning_removes_whole_heads_and_says_so_in_the_config(name, ratio):
    case = TINY[name]
    built, inputs = build(case)
    wrapper, before = built.module, built.module.model.config
    heads, kv = before.num_attention_heads, getattr(before, "num_key_value_heads", None)
    channels = before.intermediate_size
    original = copy.deepcopy(wrapper.model)
    with torch.inference_mode():
        shape = call(wrapper, inputs).shape
    info = pruning.prune_structured(wrapper, inputs, Prune("structured", ratio))
    config, model = wrapper.model.config, wrapper.model

    # head counts and shapes against the config, layer by layer
    head_dim = info["heads"]["head_dim"]
    assert info["heads"]["after"] == config.num_attention_heads < heads
    kv_after = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    if kv is not None and kv < heads:  # GQA: query heads leave each group, the KV heads stay
        assert kv_after == kv
    for layer in hf_pruning.find_attention(model):
        assert layer.q.out_features == layer.o.in_features == config.num_attention_heads * head_dim
        assert layer.k.out_features == layer.v.out_features == kv_after * head_dim
    assert config.intermediate_size < channels
    for mlp in hf_pruning.find_mlps(model):
        assert mlp.out.in_features == config.intermediate_size
        assert all(layer.out_features == config.intermediate_size for layer in mlp.ins)

    # it runs, keeps its output shape, and computes exactly the head-pruned model
    masked = HFModel(_masked_original(original, model), wrapper.family)
    with torch.inference_mode():
        out = call(wrapper, inputs)
        assert out.shape == shape
        torch.testing.assert_close(out, call(masked, inputs), rtol=1e-4, atol=1e-5)

    # a model built from the pruned config has its shapes (BERT's config cannot say it:
    # its head size is hidden_size / heads; the record says so)
    if wrapper.family.model_type == "bert":
        assert info["config_describes_model"] is False and "config_note" in info
    else:
        assert info["config_describes_model"] is True
        fresh = type(model)._from_config(copy.deepcopy(config), dtype=torch.float32).eval()
        fresh.load_state_dict(model.state_dict())
        with torch.inference_mode():
            torch.testing.assert_close(call(HFModel(fresh, wrapper.family), inputs), out)


def test_fused_attention_is_unsupported_with_the_reason():
    built, inputs = build(Case(model="hf:gpt2", batch_size=1, depth=2, width=64, heads=4,
                               vocab_size=256, seq_len=8))
    with pytest.raises(UnsupportedCase, match="GPT2Attention"):
        pruning.prune_structured(built.module, inputs, Prune("structured", 0.5))


def test_convolutional_families_prune_through_the_dependency_graph():
    built, pixels = build(Case(model="hf:resnet", batch_size=2, width=32, image_size=32,
                               model_args=(("depths", (1, 1, 1, 1)), ("layer_type", "basic"))))
    before = sum(p.numel() for p in built.module.parameters())
    info = pruning.prune_structured(built.module, pixels, Prune("structured", 0.5))
    assert info["layers_changed"] > 0
    assert sum(p.numel() for p in built.module.parameters()) < 0.5 * before
    assert call(built.module, pixels).shape == (2, 2)


def test_a_check_that_finds_stale_bookkeeping_fails_the_case():
    built, _ = build(TINY["llama-gqa"])
    attention = hf_pruning.find_attention(built.module.model)
    attention[0].module.num_key_value_groups = 3  # as if pruning had forgotten it
    with pytest.raises(BuildError, match="num_key_value_groups = 3"):
        hf_pruning.check_heads(attention, {"after": 8, "kv_after": 2, "head_dim": 8})


def test_unstructured_pruning_leaves_tied_embeddings_alone():
    built, _ = build(Case(model="hf:gpt2", batch_size=1, depth=1, width=64, heads=4,
                          vocab_size=256, seq_len=8))
    model = built.module.model
    assert model.lm_head.weight is model.transformer.wte.weight
    names = {type(m).__name__ for m, _ in pruning.prunable_weights(built.module)}
    assert "Conv1D" in names
    assert all(m is not model.lm_head for m, _ in pruning.prunable_weights(built.module))


# ---- generation -----------------------------------------------------------------------------
@pytest.mark.parametrize("kv_heads", [1, 2])
def test_decode_reuses_the_cache_and_its_size_is_counted(kv_heads):
    case = Case(batch_size=2, heads=4, kv_heads=kv_heads, **LLAMA)
    built, (ids, _) = build(case)
    model = built.module.model
    gen = generation.prepare(model, ids, 5, lambda: torch.autocast("cpu", enabled=False))
    with torch.inference_mode():
        first = gen.decode()
        assert torch.equal(gen.decode(), first)  # every call decodes the same positions
    head_dim = 64 // 4
    # keys and values, every layer, batch x kv heads x (prompt + new tokens) x head_dim, fp32
    assert gen.kv_cache_bytes() == 2 * 2 * 2 * kv_heads * (8 + 5) * head_dim * 4
    # the prefill picks a token, then 5 decode steps pick one each: 6 greedy tokens
    reference = generation.greedy_tokens(model, ids, 6)
    assert torch.equal(reference[:, -1:], first)
    assert generation.next_token_agreement(model, ids, reference, _no_autocast) == 1.0


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_decode_samples_become_per_token():
    timing = TimingResult(samples_ns=(800.0, 1600.0), block_size=2, first_call_ns=4000.0,
                          warmup_iters=3, warmup_ns=10, warmup_steady=True, calibration_iters=4,
                          min_block_ns=1.0,
                          measure_ns=100, ci_rel=0.1, target_met=False, stop_reason="max_time",
                          clock="fake")
    tokens = generation.per_token(timing, 8)
    assert tokens.samples_ns == (100.0, 200.0) and tokens.first_call_ns == 500.0
    assert (tokens.block_size, tokens.warmup_iters, tokens.calibration_iters) == (16, 24, 32)


def test_an_all_zero_output_says_whose_doing_it_is():
    zeros = torch.zeros(2, 4)
    assert "activations vanish" in vanished_output(zeros, torch.full((2, 4), 1e-22))
    assert "destroyed the signal" in vanished_output(zeros, torch.ones(2, 4))
    assert vanished_output(torch.ones(2, 4), torch.ones(2, 4)) is None


@pytest.mark.slow
def test_generate_cases_record_prefill_decode_and_the_kv_cache(write_suite, tmp_path):
    from bench.engine.runner import RunOptions, run

    path = write_suite("""
        [[sweep]]
        model = "hf:llama"
        depth = 2
        width = 64
        heads = 4
        kv_heads = [1, 4]
        vocab_size = 256
        seq_len = 8
        new_tokens = 4
        mode = "generate"
        precision = ["fp32", "int8-dynamic"]
        prune = ["none", { method = "structured", ratio = 0.5 }]
    """)
    suite = suite_file.load(path)
    result = run([suite], list(suite.cases), RunOptions(out=tmp_path / "run"))
    assert all(r.status == "ok" for r in result.records), {
        r.name: r.reason for r in result.records if r.status != "ok"}
    by_name = {r.name: r for r in result.records}
    base = by_name["hf-llama-d2-w64-h4-kv1-v256-b1-fp32-cpu-s8-generate-n4"]
    m = base.metrics
    assert m["prefill_ci_low_ms"] <= m["prefill_ms"] <= m["prefill_ci_high_ms"]
    assert m["kv_cache_bytes"] == 2 * 2 * 1 * 1 * (8 + 4) * 16 * 4
    assert m["fidelity_next_token_top1"] == 1.0 and m["fidelity_rel_l2"] == 0.0
    assert base.info["generate"]["prefill_timing"]["samples_ns"]
    assert base.timing["block_size"] % 4 == 0  # samples are per token of 4-token loops
    mha = by_name["hf-llama-d2-w64-h4-kv4-v256-b1-fp32-cpu-s8-generate-n4"].metrics
    assert mha["kv_cache_bytes"] == 4 * m["kv_cache_bytes"]
    pruned = by_name["hf-llama-d2-w64-h4-kv4-v256-b1-fp32-cpu-s8-structured50-generate-n4"]
    assert pruned.info["prune"]["heads"]["after"] == 2
    assert pruned.metrics["kv_cache_bytes"] == mha["kv_cache_bytes"] // 2
    int8 = by_name["hf-llama-d2-w64-h4-kv1-v256-b1-int8-dynamic-cpu-s8-generate-n4"].metrics
    assert int8["compute_dtype"] == "int8" and int8["weight_dtype"] == "int8 (Int8Tensor)"
