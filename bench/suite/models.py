"""Model registry: which models exist, which sweep axes each takes, and how to build them.

The registry holds metadata only and never imports torch, so a suite can be validated and
listed in a process that never touches torch. Builders are named as "module:function" and
imported in the worker (see `bench.measure.models.build`).

Add a model with::

    from bench.suite import models
    models.register(models.ModelInfo(
        name="my-net", axes=frozenset({"depth", "width"}), defaults={"depth": 2, "width": 64},
        summary="...", builder="mypkg.nets:build_my_net"))

A builder takes the `bench.suite.spec.Case` and returns a `bench.measure.models.build.BuiltModel`.
Users can also skip the registry and write `model = "package.module:function"` in a suite;
see `bench.measure.models.user` for that contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bench.errors import SpecError, did_you_mean, one_of

#: Axes that shape the model itself; every model declares the subset it takes. `heads`,
#: `kv_heads` and `vocab_size` are taken by transformers families (`hf:...`, see
#: `bench.suite.hf`) and by user factories.
MODEL_AXES = ("depth", "width", "heads", "kv_heads", "vocab_size", "activation", "features",
              "image_size", "seq_len", "classes")
#: Largest value of each integer axis for any model: beyond these a tensor's size overflows
#: what kernels index, or a build never ends. (The memory estimate bounds combinations.)
AXIS_MAX = {"depth": 4096, "width": 2**20, "heads": 2**16, "kv_heads": 2**16,
            "vocab_size": 2**24, "features": 2**24, "image_size": 2**14, "seq_len": 2**20,
            "classes": 2**24}


@dataclass(frozen=True)
class ModelInfo:
    """What the spec needs to know about a model without building it."""

    name: str
    axes: frozenset[str]
    defaults: Mapping[str, Any]
    summary: str
    builder: str
    #: The axis giving the input size, used in case names ("features", "image_size", ...).
    input_axis: str | None = None
    #: Said in validation errors when a suite sets an axis the model does not take.
    fixed_note: str = ""
    #: Whether `model_args` (free-form factory keywords) are accepted.
    takes_model_args: bool = False
    #: Bounds per integer axis, checked in validation: axis -> (min, max or None); a None
    #: max (and an axis not listed) means `AXIS_MAX`.
    bounds: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)

    def bounds_of(self, axis: str) -> tuple[int, int]:
        low, high = self.bounds.get(axis, (1, None))
        return low, min(high, AXIS_MAX[axis]) if high is not None else AXIS_MAX[axis]

    def __post_init__(self) -> None:
        unknown = set(self.axes) - set(MODEL_AXES)
        if unknown:
            raise ValueError(f"model {self.name!r} declares unknown axes {sorted(unknown)}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "bounds", MappingProxyType(dict(self.bounds)))


_REGISTRY: dict[str, ModelInfo] = {}


def register(info: ModelInfo) -> ModelInfo:
    """Add a model; registering a name twice is an error (it would make case ids ambiguous)."""
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def known() -> list[str]:
    return sorted(_REGISTRY)


#: Names starting with this are transformers architectures (`hf:llama`, `hf:path/to/dir`).
HF_PREFIX = "hf:"


def is_hf_model(name: str) -> bool:
    """`hf:MODEL_TYPE` or `hf:path/to/saved_dir` names a Hugging Face transformers model."""
    return name.startswith(HF_PREFIX)


def is_user_model(name: str) -> bool:
    """`package.module:function` or `path/to/file.py:function` names a user factory."""
    return ":" in name and not is_hf_model(name)


def hf_model_info(name: str) -> ModelInfo:
    """Metadata for a transformers model: which axes its family takes is known only from its
    config class, so the loader checks them through `bench.suite.hf`, not through here."""
    return ModelInfo(
        name=name,
        axes=frozenset(MODEL_AXES) - {"activation", "features"},
        defaults={},
        summary=f"transformers model {name.removeprefix(HF_PREFIX)}",
        builder="bench.measure.models.hf:build_hf",
        takes_model_args=True,
    )


def user_model_info(name: str) -> ModelInfo:
    """Metadata for a user factory: it may take any model axis; nothing is defaulted."""
    return ModelInfo(
        name=name,
        axes=frozenset(MODEL_AXES),
        defaults={},
        summary=f"user factory {name}",
        builder=name,
        takes_model_args=True,
        bounds={"depth": (1, None), "width": (1, None), "features": (1, None),
                "image_size": (1, None), "seq_len": (1, None), "classes": (1, None)},
    )


def get(name: str, *, key: str = "model", file: str | None = None) -> ModelInfo:
    """Look a model up by name; an unknown name raises a SpecError listing the known ones."""
    if is_hf_model(name):
        if not name.removeprefix(HF_PREFIX).strip():
            raise SpecError(f'"{name}" names no model; write "hf:MODEL_TYPE" (hf:llama, '
                            'hf:bert, ...) or "hf:path/to/saved_model"', file=file, key=key)
        return hf_model_info(name)
    if is_user_model(name):
        module, _, function = name.partition(":")
        if not module or not function.isidentifier():
            raise SpecError(
                f'"{name}" is not a factory path; write "package.module:function" or '
                f'"path/to/file.py:function"', file=file, key=key)
        return user_model_info(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError(
            f'unknown model "{name}"{did_you_mean(name, _REGISTRY)}; known models are '
            f'{one_of(known())}, a transformers model "hf:llama", or a factory '
            '"package.module:function"',
            file=file, key=key) from None


_POSITIVE = (1, None)

register(ModelInfo(
    name="mlp",
    axes=frozenset({"depth", "width", "activation", "features", "classes"}),
    defaults={"depth": 2, "width": 256, "activation": "relu", "features": 256, "classes": 10},
    summary="depth hidden Linear layers of `width` units, each followed by the activation",
    builder="bench.measure.models.zoo:build_mlp",
    input_axis="features",
    bounds={"depth": _POSITIVE, "width": _POSITIVE, "features": _POSITIVE, "classes": (2, None)},
))
register(ModelInfo(
    name="cnn",
    axes=frozenset({"depth", "width", "activation", "image_size", "classes"}),
    defaults={"depth": 4, "width": 32, "activation": "relu", "image_size": 32, "classes": 10},
    summary="depth conv3x3-BN-activation blocks from `width` channels, doubling every 2 blocks",
    builder="bench.measure.models.zoo:build_cnn",
    input_axis="image_size",
    bounds={"depth": _POSITIVE, "width": _POSITIVE, "image_size": (4, None),
            "classes": (2, None)},
))
register(ModelInfo(
    name="transformer",
    axes=frozenset({"depth", "width", "activation", "seq_len", "classes"}),
    defaults={"depth": 2, "width": 128, "activation": "gelu", "seq_len": 64, "classes": 10},
    summary="token embedding + depth encoder layers (d_model = width, heads = width/64) + head",
    builder="bench.measure.models.zoo:build_transformer",
    input_axis="seq_len",
    bounds={"depth": _POSITIVE, "width": (8, None), "seq_len": _POSITIVE,
            "classes": (2, None)},
))
register(ModelInfo(
    name="seed-cnn",
    axes=frozenset({"classes"}),
    defaults={"classes": 10},
    summary="conv 3-64-128 with ReLU and 2x2 max-pool, fc 128*8*8-1024-classes, input 3x32x32",
    builder="bench.measure.models.zoo:build_seed_cnn",
    fixed_note="seed-cnn is a fixed architecture (3x32x32 input, ReLU); sweep `cnn` instead",
    bounds={"classes": (2, None)},
))
register(ModelInfo(
    name="text-classifier",
    axes=frozenset({"seq_len", "classes"}),
    defaults={"seq_len": 128, "classes": 2},
    summary="embedding 10000x128, mean over tokens, dropout 0.3, linear 128-classes",
    builder="bench.measure.models.zoo:build_text_classifier",
    input_axis="seq_len",
    fixed_note="text-classifier is a fixed architecture (embedding 10000x128 and one linear)",
    bounds={"seq_len": _POSITIVE, "classes": (2, None)},
))
