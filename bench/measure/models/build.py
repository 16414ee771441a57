"""Build a case's model and input, seeded, from the registry or a user factory."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.errors import BuildError
from bench.suite import models
from bench.suite.spec import Case

#: What a model is called with: one tensor, or a tuple of positional tensors.
Inputs = torch.Tensor | tuple[torch.Tensor, ...]
InputMaker = Callable[[int], Inputs]


@dataclass
class BuiltModel:
    """A module and how to make a batch of input for it (on the CPU; the runner moves it)."""

    module: nn.Module
    make_input: InputMaker
    #: What the builder wants recorded about the model (a transformers config...).
    info: dict[str, Any] = field(default_factory=dict)


def random_features(features: int) -> InputMaker:
    return lambda batch: torch.randn(batch, features)


def random_images(side: int) -> InputMaker:
    return lambda batch: torch.randn(batch, 3, side, side)


def random_tokens(seq_len: int, vocab: int) -> InputMaker:
    return lambda batch: torch.randint(0, vocab, (batch, seq_len))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG for a block and restore it after, so builds are reproducible
    without leaking the seed into the caller (matters when running inline)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build(case: Case, search_path: Sequence[str] = ()) -> tuple[BuiltModel, Inputs]:
    """The case's model (seeded with `settings.seed`) and one batch of input (seed + 1).

    The input has its own seed so that a model consuming more or less randomness while
    building (a different depth, say) still sees the same input values.
    """
    builder = resolve_builder(case.model, search_path)
    with seeded(case.settings.seed):
        built = builder(case)
    if not isinstance(built, BuiltModel):
        built = _from_user_result(case.model, built)
    with seeded(case.settings.seed + 1):
        inputs = built.make_input(case.batch_size)
    _check_inputs(case.model, inputs)
    return built, inputs


def resolve_builder(model: str, search_path: Sequence[str] = ()) -> Callable[[Case], Any]:
    info = models.get(model)
    if models.is_user_model(model):
        from bench.measure.models.user import load_factory
        return load_factory(model, search_path)
    module_name, _, attr = info.builder.partition(":")
    builder: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    if models.is_hf_model(model):  # a saved model's folder is looked up like a factory file
        return functools.partial(builder, search_path=tuple(search_path))
    return builder


def _from_user_result(model: str, result: Any) -> BuiltModel:
    if (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module)
            and callable(result[1])):
        return BuiltModel(result[0], result[1])
    raise BuildError(
        f'factory "{model}" returned {type(result).__name__}; it must return '
        "(torch.nn.Module, make_input) where make_input(batch_size) returns the input tensor(s)")


def _check_inputs(model: str, inputs: Any) -> None:
    parts = inputs if isinstance(inputs, tuple) else (inputs,)
    if not parts or not all(isinstance(p, torch.Tensor) for p in parts):
        raise BuildError(f'make_input of "{model}" returned {type(inputs).__name__}; it must '
                         "return a tensor or a tuple of tensors")


def move_inputs(inputs: Inputs, device: torch.device | str) -> Inputs:
    if isinstance(inputs, tuple):
        return tuple(t.to(device) for t in inputs)
    return inputs.to(device)


def call(module: nn.Module, inputs: Inputs) -> Any:
    return module(*inputs) if isinstance(inputs, tuple) else module(inputs)
