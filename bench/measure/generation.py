"""Generation with a decoder-only transformers model: prefill, per-token decode, KV cache.

Both are timed by the same loop as every forward pass (`bench.measure.timing.measure`:
warm-up, calibrated blocks, the adaptive stop), each with a step function:

- `prefill`: the prompt (batch x seq_len tokens) in one call that builds a fresh KV cache;
- `decode`: `new_tokens` greedy steps of one token each, reusing the cache the prefill built
  (cut back to the prompt at the start of every call, so every call decodes the same
  positions): exactly the loop `model(input_ids[:, -1:], past_key_values=cache)` a user
  would write (`cache=` in newer transformers). Its samples are divided by `new_tokens`
  (`per_token`), so a generate case's median is milliseconds per decoded token and its
  throughput tokens per second (batch x tokens).

The KV cache's size is read from the cache tensors after a full decode (prompt + new tokens).
Fidelity: the transformed model's next-token choices along the fp32 model's own greedy
continuation (teacher-forced through the cache), as top-1 agreement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.measure.timing import TimingResult

Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


@dataclass
class Generation:
    """The two timed steps of a generate case and what they share."""

    prefill: Callable[[], Any]
    decode: Callable[[], Any]
    prompt_tokens: int
    new_tokens: int
    cache: Any

    def kv_cache_bytes(self) -> int:
        """Bytes the cache holds now (after a decode: prompt + new tokens, every layer)."""
        return cache_bytes(self.cache)


def prepare(model: nn.Module, prompt: torch.Tensor, new_tokens: int,
            autocast: Autocast) -> Generation:
    """The prefill and decode steps for `model` (a transformers causal LM) on `prompt`."""
    prompt_tokens = int(prompt.shape[1])
    key = cache_keyword(model)

    def prefill() -> Any:
        with autocast():
            return model(input_ids=prompt, use_cache=True).logits

    with torch.inference_mode(), autocast():
        first = model(input_ids=prompt, use_cache=True)
    cache = cache_of(first)
    first_token = first.logits[:, -1:].argmax(-1)

    def decode() -> Any:
        extra = cache.get_seq_length() - prompt_tokens
        if extra:
            cache.crop(-extra)  # negative: remove that many tokens (every transformers version)
        token = first_token
        with autocast():
            for _ in range(new_tokens):
                logits = model(input_ids=token, use_cache=True, **{key: cache}).logits
                token = logits[:, -1:].argmax(-1)
        return token

    return Generation(prefill=prefill, decode=decode, prompt_tokens=prompt_tokens,
                      new_tokens=new_tokens, cache=cache)


def greedy_tokens(model: nn.Module, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """The model's own greedy continuation of `prompt`: (batch, new_tokens) token ids."""
    return _next_tokens(model, prompt, None, new_tokens, contextlib.nullcontext)


def next_token_agreement(model: nn.Module, prompt: torch.Tensor, reference: torch.Tensor,
                         autocast: Autocast) -> float:
    """Fraction of positions where `model`, fed the reference continuation token by token
    through its cache, picks the reference's next token (1.0 for the reference model)."""
    chosen = _next_tokens(model, prompt, reference, reference.shape[1], autocast)
    return float((chosen == reference.to(chosen.device)).double().mean())


def _next_tokens(model: nn.Module, prompt: torch.Tensor, forced: torch.Tensor | None,
                 count: int, autocast: Autocast) -> torch.Tensor:
    chosen, key = [], cache_keyword(model)
    with torch.inference_mode(), autocast():
        out = model(input_ids=prompt, use_cache=True)
        cache = cache_of(out)
        for step in range(count):
            token = out.logits[:, -1:].argmax(-1)
            chosen.append(token)
            if step + 1 == count:
                break
            feed = token if forced is None else forced[:, step:step + 1].to(token.device)
            out = model(input_ids=feed, use_cache=True, **{key: cache})
    return torch.cat(chosen, dim=1).cpu()


def cache_keyword(model: nn.Module) -> str:
    """The keyword the model's forward takes its cache by: `cache` in newer transformers,
    `past_key_values` before (still accepted there, with a deprecation warning)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def cache_bytes(cache: Any) -> int:
    """Bytes of every key and value tensor a transformers cache holds."""
    tensors: list[Any] = []
    for layer in getattr(cache, "layers", None) or []:
        tensors += [getattr(layer, "keys", None), getattr(layer, "values", None)]
    if not tensors:  # older transformers: parallel lists per layer
        tensors = [*getattr(cache, "key_cache", []), *getattr(cache, "value_cache", [])]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def per_token(result: TimingResult, tokens: int) -> TimingResult:
    """A decode timing (one sample per block of `tokens`-token loops) in per-token terms:
    samples and the first call divided by `tokens`, counts of calls multiplied by it."""
    return dataclasses.replace(
        result,
        samples_ns=tuple(s / tokens for s in result.samples_ns),
        first_call_ns=result.first_call_ns / tokens,
        block_size=result.block_size * tokens,
        warmup_iters=result.warmup_iters * tokens,
        calibration_iters=result.calibration_iters * tokens)
