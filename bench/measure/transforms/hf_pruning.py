"""Structured pruning of transformers models that keeps them the models their configs say.

Attention is pruned by whole heads, never by head dimensions: transformers reshapes q, k and v
as (..., -1, head_dim), so thinning each head would silently re-read the projections as fewer,
mixed heads (BERT's 4 heads of 64 narrowed to 192 dims run as 3 heads of 64). With plain
multi-head attention each removed head takes its query, key and value rows and its output
columns; with grouped-query attention, query heads are removed within each key/value group (the
same number in every group, so the sharing stays regular) and the key/value heads, hence the
KV cache, stay. MLP blocks lose their least important intermediate channels. The hidden size
(the residual stream shared by embeddings, norms, rotary or learned positions and tied heads)
is kept: sweep `width` to change it.

Importance is the L1 norm of each head's (channel's) weights; every layer loses the same
count, so the config can state the result, and is updated with the modules' own bookkeeping
(`num_key_value_groups`, `all_head_size`, ...). The result is then checked against the config:
a model built from the pruned config must have exactly the pruned model's parameter shapes.
Torch-Pruning does the channel surgery (`prune_linear_out_channels` / `_in_channels`); its
dependency-graph tracer is used for the convolutional families, which have no heads.

Models whose attention layout is not one of these (fused q/k/v such as GPT-2's Conv1D) raise
`UnsupportedCase` with the reason instead of being pruned into something else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import BuildError, UnsupportedCase
from bench.suite.axes import Prune


@dataclass
class Attention:
    """One attention layer: its module (holding the bookkeeping) and its four projections."""

    name: str
    module: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear


@dataclass
class Mlp:
    """One MLP block: the layers producing the intermediate channels and the one reading them."""

    name: str
    ins: tuple[nn.Linear, ...]
    out: nn.Linear


def find_attention(model: nn.Module) -> list[Attention]:
    """q/k/v/o projections (Llama, Mistral, Qwen2, ...) or query/key/value with a sibling output
    dense (BERT, RoBERTa, ViT, ...)."""
    found: list[Attention] = []
    for name, module in model.named_modules():
        if _linears(module, "q_proj", "k_proj", "v_proj", "o_proj"):
            found.append(Attention(name, module, module.q_proj, module.k_proj, module.v_proj,
                                   module.o_proj))
            continue
        for child_name, child in module.named_children():
            if not _linears(child, "query", "key", "value"):
                continue
            output = next((c.dense for n, c in module.named_children() if n != child_name
                           and isinstance(getattr(c, "dense", None), nn.Linear)
                           and c.dense.in_features == child.query.out_features), None)
            if output is not None:
                found.append(Attention(f"{name}.{child_name}", child, child.query, child.key,
                                       child.value, output))
    return found


def find_mlps(model: nn.Module) -> list[Mlp]:
    """gate/up/down projections (Llama-style), fc1/fc2 (ViT) or intermediate.dense +
    output.dense (BERT)."""
    found: list[Mlp] = []
    for name, module in model.named_modules():
        if _linears(module, "gate_proj", "up_proj", "down_proj"):
            found.append(Mlp(name, (module.gate_proj, module.up_proj), module.down_proj))
        elif _linears(module, "fc1", "fc2") and module.fc2.in_features == module.fc1.out_features:
            found.append(Mlp(name, (module.fc1,), module.fc2))
        elif (isinstance(getattr(getattr(module, "intermediate", None), "dense", None), nn.Linear)
              and isinstance(getattr(getattr(module, "output", None), "dense", None), nn.Linear)
              and module.output.dense.in_features == module.intermediate.dense.out_features):
            found.append(Mlp(name, (module.intermediate.dense,), module.output.dense))
    return found


def unknown_attention(model: nn.Module, known: list[Attention]) -> list[str]:
    """Attention-like modules (their class names say so) that hold weights of their own but
    are none of the layouts found: pruning around them could change what they compute."""
    covered = {id(a.module) for a in known}
    inside = {id(m) for a in known for m in a.module.modules()}
    out = []
    for name, module in model.named_modules():
        if "attention" not in type(module).__name__.lower() or id(module) in inside:
            continue
        if any(id(m) in covered for m in module.modules()):
            continue  # a wrapper around a known layer (BertAttention around BertSelfAttention)
        if any(True for _ in module.parameters(recurse=False)) or any(
                isinstance(m, nn.Linear) or "conv1d" in type(m).__name__.lower()
                for m in module.modules()):
            out.append(f"{name} ({type(module).__name__})")
    return out


def prune_transformer(model: nn.Module, prune: Prune) -> dict[str, Any]:
    """Remove `prune.ratio` of the heads (per key/value group under GQA) and of the MLP
    channels (rounded to `round_to`) of every layer, update the config and the modules'
    bookkeeping, and check the result against its config. Returns what was done."""
    config: Any = model.config
    attention, mlps = find_attention(model), find_mlps(model)
    strange = unknown_attention(model, attention)
    if strange:
        raise UnsupportedCase(
            "structured pruning knows whole-head pruning for separate q/k/v projections "
            "(Llama, Mistral, BERT, ViT, ...); this model's attention is laid out otherwise: "
            f"{', '.join(strange[:3])}. Pruning it could silently change what it computes, "
            "so it is not pruned")
    heads = int(config.num_attention_heads) if attention else 0
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads) if attention else 0
    done: dict[str, Any] = {"method": "structured", "nominal_ratio": prune.ratio,
                            "round_to": prune.round_to, "importance": "L1 magnitude",
                            "hidden_size": "kept"}
    if attention:
        done["heads"] = _prune_heads(attention, heads, kv_heads, prune.ratio, config)
    if mlps:
        done["intermediate"] = _prune_mlps(mlps, prune, config)
    removed_heads = attention and done["heads"]["after"] < done["heads"]["before"]
    removed_channels = mlps and done["intermediate"]["after"] < done["intermediate"]["before"]
    if not (removed_heads or removed_channels):
        raise UnsupportedCase(
            f"structured pruning at ratio {prune.ratio} removes nothing here: "
            f"{heads} heads and {_describe_mlps(mlps)} intermediate channels "
            f"(round_to={prune.round_to}) round to no removal")
    if attention:
        check_heads(attention, done["heads"])
    done.update(describes_model(model))
    return done


def _prune_heads(attention: list[Attention], heads: int, kv_heads: int, ratio: float,
                 config: Any) -> dict[str, Any]:
    if heads % kv_heads:
        raise UnsupportedCase(f"{heads} heads over {kv_heads} key/value heads is irregular")
    group = heads // kv_heads
    head_dim = attention[0].q.out_features // heads
    per_group = group if group > 1 else heads  # MHA: the heads are one pool
    remove = min(per_group - 1, math.floor(ratio * per_group + 0.5))
    if remove <= 0:
        return {"before": heads, "after": heads, "kv_before": kv_heads, "kv_after": kv_heads,
                "head_dim": head_dim}
    for layer in attention:
        _check_layout(layer, heads, kv_heads, head_dim)
        dropped = _heads_to_drop(layer, heads, kv_heads, head_dim, remove)
        rows = [h * head_dim + i for h in dropped for i in range(head_dim)]
        _prune_out(layer.q, rows)
        _prune_in(layer.o, rows)
        if group == 1:  # MHA: the key and value heads go with their query heads
            _prune_out(layer.k, rows)
            _prune_out(layer.v, rows)
    new_heads = heads - (remove if group == 1 else remove * kv_heads)
    new_kv = new_heads if group == 1 else kv_heads
    config.num_attention_heads = new_heads
    if hasattr(config, "num_key_value_heads"):
        config.num_key_value_heads = new_kv
    # The head size stays; configs that read `head_dim` (Llama, ViT) then state the model.
    config.head_dim = head_dim
    for layer in attention:
        _bookkeeping(layer.module, new_heads, new_kv, head_dim)
    return {"before": heads, "after": new_heads, "kv_before": kv_heads, "kv_after": new_kv,
            "head_dim": head_dim, "layers": len(attention),
            "rule": ("whole heads (query, key, value rows and output columns)" if group == 1
                     else f"{remove} of {group} query heads in each key/value group")}


def _heads_to_drop(layer: Attention, heads: int, kv_heads: int, head_dim: int,
                   remove: int) -> list[int]:
    """The least important query heads: `remove` overall (MHA) or per key/value group."""
    with torch.no_grad():
        score = (layer.q.weight.abs().reshape(heads, -1).sum(1)
                 + layer.o.weight.abs().reshape(layer.o.out_features, heads, head_dim)
                 .sum((0, 2)))
        if heads == kv_heads:
            score = (score + layer.k.weight.abs().reshape(heads, -1).sum(1)
                     + layer.v.weight.abs().reshape(heads, -1).sum(1))
            return sorted(score.argsort()[:remove].tolist())
        group = heads // kv_heads
        by_group = score.reshape(kv_heads, group).argsort(dim=1)[:, :remove]
        offsets = torch.arange(kv_heads).unsqueeze(1) * group
        return sorted((by_group + offsets).flatten().tolist())


def _prune_mlps(mlps: list[Mlp], prune: Prune, config: Any) -> dict[str, Any]:
    channels = mlps[0].out.in_features
    keep = channels - math.floor(prune.ratio * channels + 0.5)
    if prune.round_to > 1:
        keep = max(prune.round_to, prune.round_to * round(keep / prune.round_to))
    keep = max(1, min(channels, keep))
    if keep == channels:
        return {"before": channels, "after": channels}
    for mlp in mlps:
        if mlp.out.in_features != channels or any(i.out_features != channels for i in mlp.ins):
            raise UnsupportedCase(f"MLP {mlp.name} has {mlp.out.in_features} channels where "
                                  f"the others have {channels}; the config cannot state it")
        with torch.no_grad():
            score = mlp.out.weight.abs().sum(0) + sum(i.weight.abs().sum(1) for i in mlp.ins)
        dropped = sorted(score.argsort()[: channels - keep].tolist())
        for layer in mlp.ins:
            _prune_out(layer, dropped)
        _prune_in(mlp.out, dropped)
    if hasattr(config, "intermediate_size"):
        config.intermediate_size = keep
    return {"before": channels, "after": keep, "layers": len(mlps)}


def _describe_mlps(mlps: list[Mlp]) -> str:
    return str(mlps[0].out.in_features) if mlps else "no"


def _check_layout(layer: Attention, heads: int, kv_heads: int, head_dim: int) -> None:
    shapes = (layer.q.out_features, layer.k.out_features, layer.v.out_features,
              layer.o.in_features)
    if shapes != (heads * head_dim, kv_heads * head_dim, kv_heads * head_dim, heads * head_dim):
        raise UnsupportedCase(
            f"{layer.name}: projections of {shapes} do not match {heads} heads and {kv_heads} "
            f"key/value heads of {head_dim} dims from the config; not pruned")


def _bookkeeping(module: nn.Module, heads: int, kv_heads: int, head_dim: int) -> None:
    """Update the attributes transformers' attention modules keep about their heads."""
    values = {"num_heads": heads, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "num_key_value_groups": heads // kv_heads, "all_head_size": heads * head_dim}
    for attribute, value in values.items():
        if isinstance(getattr(module, attribute, None), int):
            setattr(module, attribute, value)


def check_heads(attention: list[Attention], heads: dict[str, Any]) -> None:
    """Every attention layer has the heads the pruning reports, of the unchanged head size,
    and its module's bookkeeping says the same. Raises BuildError otherwise: that would be a
    silently different model, which is worse than a failed case."""
    count, kv, size = heads["after"], heads["kv_after"], heads["head_dim"]
    problems = []
    for layer in attention:
        shapes = (layer.q.out_features, layer.k.out_features, layer.v.out_features,
                  layer.o.in_features)
        if shapes != (count * size, kv * size, kv * size, count * size):
            problems.append(f"{layer.name}: q/k/v/o widths {shapes}")
        expected = {"num_attention_heads": count, "num_heads": count,
                    "num_key_value_heads": kv, "num_key_value_groups": count // kv,
                    "all_head_size": count * size, "head_dim": size,
                    "attention_head_size": size}
        for attribute, value in expected.items():
            have = getattr(layer.module, attribute, None)
            if isinstance(have, int) and have != value:
                problems.append(f"{layer.name}.{attribute} = {have}, not {value}")
    if problems:
        raise BuildError(f"structured pruning left attention inconsistent with {count} heads "
                         f"of {size} dims over {kv} key/value heads: " + "; ".join(problems[:4]))


def describes_model(model: nn.Module) -> dict[str, Any]:
    """Whether the updated config describes the pruned model: one built from it (on the meta
    device: shapes only) has the same parameter names and shapes. Some families cannot say
    it: BERT derives its head size from hidden_size / heads, so 3 heads of 64 in a 256-wide
    model are not a BERT config. Such a model is still the head-pruned model (its modules
    are checked), but saved with save_pretrained it would not reload; the record says so."""
    try:
        fresh = _meta_twin(model)
    except Exception as exc:
        return {"config_describes_model": False,
                "config_note": f"the pruned config does not build: {type(exc).__name__}: "
                               f"{str(exc)[:200]}"}
    want = {n: tuple(p.shape) for n, p in fresh.named_parameters()}
    have = {n: tuple(p.shape) for n, p in model.named_parameters()}
    wrong = sorted(n for n in have.keys() | want.keys() if have.get(n) != want.get(n))
    if wrong:
        return {"config_describes_model": False,
                "config_note": "a model built from the pruned config differs: " + "; ".join(
                    f"{n} {have.get(n)} vs {want.get(n)}" for n in wrong[:3])}
    return {"config_describes_model": True}


def _meta_twin(model: nn.Module) -> nn.Module:
    import copy

    config = copy.deepcopy(model.config)
    with torch.device("meta"):
        twin: nn.Module = type(model)._from_config(  # type: ignore[attr-defined]
            config, dtype=torch.float32)
    return twin


def _linears(module: nn.Module, *names: str) -> bool:
    return all(isinstance(getattr(module, n, None), nn.Linear) for n in names)


def _prune_out(layer: nn.Linear, idxs: list[int]) -> None:
    import torch_pruning as tp

    tp.prune_linear_out_channels(layer, idxs)


def _prune_in(layer: nn.Linear, idxs: list[int]) -> None:
    import torch_pruning as tp

    tp.prune_linear_in_channels(layer, idxs)

