"""Build a transformers model for a case: from its config class with random weights (seeded,
nothing downloaded), or from a `save_pretrained` folder (config and weights from disk).

The model is wrapped in `HFModel`, which takes the case's inputs positionally (token ids and
an attention mask, or pixel values) and returns the logits tensor, so the stages (fidelity,
pruning, FLOPs, training) treat it like any other model. Generation reaches the wrapped
model through `HFModel.model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bench.errors import BuildError
from bench.measure.models.build import BuiltModel, InputMaker
from bench.suite import hf
from bench.suite.spec import Case


class HFModel(nn.Module):
    """A transformers model called with positional tensors, returning its logits (or, for a
    bare model, its first output). `use_cache=False`: a forward pass is the whole sequence;
    generation builds its cache itself."""

    def __init__(self, model: nn.Module, family: hf.Family) -> None:
        super().__init__()
        self.model = model
        self.family = family
        self.input_names: tuple[str, ...] = (
            ("input_ids", "attention_mask") if family.input_name == "input_ids"
            else ("pixel_values",))

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = dict(zip(self.input_names, tensors, strict=False))
        if self.family.kind == "causal-lm":
            kwargs["use_cache"] = False
        output = self.model(**kwargs)
        logits = getattr(output, "logits", None)
        return logits if isinstance(logits, torch.Tensor) else output[0]


def build_hf(case: Case, search_path: Sequence[str] = ()) -> BuiltModel:
    """The case's transformers model (torch's RNG is seeded by the caller) and its inputs."""
    family = hf.describe(case.model, search_path)
    model = _from_folder(family) if family.source == "dir" else _from_config(family, case)
    model.eval()
    wrapped = HFModel(model, family)
    config = model.config
    info = {"hf": {"model_type": family.model_type, "model_class": type(model).__name__,
                   "source": family.source, "path": family.path,
                   "attn_implementation": getattr(config, "_attn_implementation", None),
                   "config": {k: _plain(getattr(config, k)) for k in hf.KEPT_FIELDS
                              if getattr(config, k, None) is not None}}}
    return BuiltModel(wrapped, _inputs(family, case, config), info=info)


def _from_config(family: hf.Family, case: Case) -> nn.Module:
    import transformers

    overrides = hf.config_overrides(family, case)
    try:
        config = transformers.AutoConfig.for_model(family.model_type, **overrides)
    except Exception as exc:  # the config class's own validation: name it and the values
        raise BuildError(f"{family.name}: its config refused {overrides}: "
                         f"{type(exc).__name__}: {exc}") from None
    model_class = getattr(transformers, family.model_class, None)
    if model_class is None:
        raise BuildError(f"{family.name}: transformers has no class {family.model_class}")
    model: nn.Module = model_class._from_config(config, dtype=torch.float32)
    return model


def _from_folder(family: hf.Family) -> nn.Module:
    import transformers

    model_class = getattr(transformers, family.model_class, None) or transformers.AutoModel
    # fp32 whatever the folder holds: every transform is compared with the fp32 model.
    model: nn.Module = model_class.from_pretrained(family.path, local_files_only=True,
                                                   dtype=torch.float32)
    return model


def _inputs(family: hf.Family, case: Case, config: Any) -> InputMaker:
    """Token ids over the whole vocabulary with an all-ones attention mask, or pixel values
    of the case's image size; the same shapes the config was built for."""
    if family.input_name == "input_ids":
        seq_len, vocab = int(case.seq_len or hf.DEFAULT_SEQ_LEN), int(config.vocab_size)

        def tokens(batch: int) -> tuple[torch.Tensor, ...]:
            ids = torch.randint(0, vocab, (batch, seq_len))
            return ids, torch.ones_like(ids)

        return tokens
    side = int(case.image_size or hf.DEFAULT_IMAGE_SIZE)
    channels = int(getattr(config, "num_channels", 3) or 3)
    return lambda batch: torch.randn(batch, channels, side, side)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
