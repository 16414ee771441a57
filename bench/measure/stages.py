"""Turn a built model into the step that is timed, recording the price of every transform.

Stages, in order (all before the timed window):

1. move to the device; the fp32, eager, unpruned reference output (TF32 off);
2. pruning (in fp32), with achieved parameter and FLOP ratios;
3. precision (cast, autocast, quantisation), then 2:4 sparsity (needs fp16/bf16 weights);
4. model statistics and the dtypes the matmuls really ran in;
5. fidelity of the transformed forward against the reference;
6. the step: an inference call, a training step (forward, loss, backward, AdamW), or for
   `mode = "generate"` the decode loop (its prefill is a second step; `bench.measure.generation`);
7. compile, timed apart; later recompiles are counted during the timed window.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import UnsupportedCase
from bench.measure import generation as generating
from bench.measure.fidelity import fidelity, first_tensor, vanished_output
from bench.measure.models.build import BuiltModel, Inputs, call, move_inputs
from bench.measure.modelstats import count_flops, parameter_stats
from bench.measure.transforms import compile as compiling
from bench.measure.transforms import precision as precisions
from bench.measure.transforms import pruning
from bench.measure.transforms.training import TrainState, make_train_step, seeded_labels
from bench.suite.spec import Case

#: Precisions whose kernels FlopCounterMode cannot see: FLOPs are those of the dense model.
_INVISIBLE_TO_COUNTER = precisions.QUANTISED


@dataclass
class Prepared:
    """What the timing loop runs, and what to read after it."""

    step: Callable[[], Any]
    #: The grad mode the step is timed in: inference_mode, or autograd on for training.
    grad_mode: Callable[[], contextlib.AbstractContextManager[Any]]
    recompiles: compiling.RecompileWatch
    train_state: TrainState | None = None
    #: The eager module and inputs as timed (after pruning and precision), and the autocast
    #: the step runs under: what collectors that replay one forward pass need.
    module: nn.Module | None = None
    inputs: Inputs | None = None
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    #: A generate case's prefill and decode steps (`step` is its decode loop).
    generation: generating.Generation | None = None

    def finish(self, metrics: dict[str, Any]) -> list[str]:
        """Read what may only be read after timing (losses sync the device); return warnings."""
        warnings = []
        metrics["recompiles"] = self.recompiles.stop()
        if metrics["recompiles"]:
            warnings.append(f"{metrics['recompiles']} recompilation(s) during the timed window: "
                            "their compile time is inside the samples")
        if self.train_state is not None:
            losses = self.train_state.losses()
            metrics.update(losses)
            if not math.isfinite(losses.get("loss_last", 0.0)):
                warnings.append(f"training diverged: the loss is {losses['loss_last']} after "
                                f"{self.train_state.steps} steps (fp16 weights without loss "
                                "scaling underflow; amp-fp16 uses a GradScaler)")
        return warnings


@dataclass
class _Work:
    """The model as the stages hand it on, and where they write what they learn."""

    case: Case
    device: torch.device
    module: nn.Module
    inputs: Inputs
    metrics: dict[str, Any]
    info: dict[str, Any]
    stack: contextlib.ExitStack
    #: A generate case: the fp32 model's greedy continuation of the prompt, (batch, tokens).
    reference_tokens: torch.Tensor | None = None


def prepare(case: Case, built: BuiltModel, inputs: Inputs, metrics: dict[str, Any],
            info: dict[str, Any], stack: contextlib.ExitStack) -> Prepared:
    """The stages listed at the top of this module, in order."""
    device = torch.device(case.device)
    work = _Work(case, device, built.module.to(device).eval(), move_inputs(inputs, device),
                 metrics, info, stack)
    reference = _reference_output(work.module, work.inputs, device)
    if case.mode == "generate":
        with precisions.tf32_flags(device, "fp32"):
            work.reference_tokens = generating.greedy_tokens(
                _causal_lm(work.module), _prompt(work.inputs), _new_tokens(case))
    flops = _prune(work)
    _cast(work)
    autocast = _statistics(work, flops)
    step, grad_mode, train_state = _step(work, autocast, reference)
    generation = _generation(work, autocast) if case.mode == "generate" else None
    if generation is not None:
        step = generation.decode
    _compile_first_call(work, step, grad_mode, reference)
    watch = compiling.RecompileWatch()
    watch.start()
    return Prepared(step=step, grad_mode=grad_mode, recompiles=watch, train_state=train_state,
                    module=work.module, inputs=work.inputs, autocast=autocast,
                    generation=generation)


def _generation(work: _Work, autocast: Callable[[], Any]) -> generating.Generation:
    """Generate cases: the prefill and decode steps on the transformed model, and its
    next-token agreement with the fp32 model's greedy continuation."""
    model, prompt = _causal_lm(work.module), _prompt(work.inputs)
    assert work.reference_tokens is not None
    work.metrics["fidelity_next_token_top1"] = generating.next_token_agreement(
        model, prompt, work.reference_tokens, autocast)
    return generating.prepare(model, prompt, _new_tokens(work.case), autocast)


def _causal_lm(module: nn.Module) -> nn.Module:
    from bench.measure.models.hf import HFModel

    if not isinstance(module, HFModel) or module.family.kind != "causal-lm":
        raise UnsupportedCase('mode "generate" needs a transformers causal language model')
    return module.model


def _prompt(inputs: Inputs) -> torch.Tensor:
    return inputs[0] if isinstance(inputs, tuple) else inputs


def _new_tokens(case: Case) -> int:
    return int(case.new_tokens or 1)


def _prune(work: _Work) -> float:
    """Stage 2: masked or structured pruning in fp32; returns the FLOPs of the model as timed."""
    case, module, inputs, metrics = work.case, work.module, work.inputs, work.metrics
    base_params = parameter_stats(module)["params_total"]
    base_flops = count_flops(module, inputs)
    if case.prune.method not in ("unstructured", "structured"):
        return base_flops
    if case.prune.method == "unstructured":
        work.info["prune"] = pruning.prune_unstructured(module, case.prune)
        metrics["prune_sparsity"] = work.info["prune"]["achieved_sparsity"]
    else:
        work.info["prune"] = pruning.prune_structured(module, inputs, case.prune)
        metrics["prune_sparsity"] = pruning.sparsity(pruning.prunable_weights(module))
    flops = count_flops(module, inputs)
    metrics["prune_params_ratio"] = parameter_stats(module)["params_total"] / base_params
    metrics["prune_flops_ratio"] = flops / base_flops if base_flops else None
    return flops


def _cast(work: _Work) -> None:
    """Stage 3: precision (cast, autocast, quantisation), then 2:4 sparsity, which needs the
    fp16/bf16 weights."""
    case = work.case
    unreadable = case.precision in precisions.QUANTISED or case.prune.method.startswith("semi")
    if unreadable and any(isinstance(m, nn.MultiheadAttention) for m in work.module.modules()):
        work.stack.enter_context(precisions.mha_fastpath(False))
        work.info["mha_fastpath"] = "off: the fused attention kernel cannot read these weights"
    work.module, work.inputs, work.info["precision"] = precisions.apply_precision(
        work.module, work.inputs, case.precision, work.device)
    if case.prune.method == "semi-structured-2:4":
        work.info["prune"] = pruning.prune_semi_structured(work.module)
        work.metrics["prune_sparsity"] = 0.5


def _statistics(work: _Work, flops: float) -> Callable[[], Any]:
    """Stage 4: parameters, FLOPs and the dtypes matmuls really ran in; returns the autocast
    the step runs under."""
    case, metrics = work.case, work.metrics
    metrics.update(parameter_stats(work.module))
    metrics["flops_per_item"] = flops / case.batch_size
    invisible = case.precision in _INVISIBLE_TO_COUNTER or case.prune.method.startswith("semi")
    metrics["flops_method"] = "dense-equivalent" if invisible else "counted"
    autocast = precisions.autocast(work.device, case.precision)
    observed = precisions.observed_matmul_dtypes(work.module, work.inputs, autocast)
    work.info["matmul_dtypes"] = observed
    metrics["weight_dtype"] = precisions.weight_dtype(work.module)
    metrics["compute_dtype"] = precisions.compute_dtype(
        observed, tf32=work.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
    return autocast


def _step(work: _Work, autocast: Callable[[], Any], reference: torch.Tensor | None
          ) -> tuple[Callable[[], Any], Callable[[], Any], TrainState | None]:
    """Stages 5-6: fidelity of the eager forward, and the step that is timed (an inference
    call, or forward, loss, backward and AdamW) with the grad mode it runs in."""
    case, module, inputs = work.case, work.module, work.inputs
    if case.compile == "eager" or case.mode == "train":
        # A compiled inference step is checked on its first call instead; a compiled
        # training graph is the training one, so its eager forward is what is checked.
        _record_fidelity(_forward(module, inputs, autocast), reference, work.metrics, work.info)
    target = _compiled(case, module, work.stack)
    if case.mode == "train":
        labels = seeded_labels(case.batch_size, _classes(reference), case.settings.seed + 2,
                               work.device)
        masks = pruning.zero_masks(module) if case.prune.method == "unstructured" else None
        step, train_state = make_train_step(target, inputs, labels, autocast, masks=masks,
                                            grad_scaler=case.precision == "amp-fp16")
        return step, contextlib.nullcontext, train_state

    def infer() -> Any:
        with autocast():
            return call(target, inputs)

    return infer, torch.inference_mode, None


def _compile_first_call(work: _Work, step: Callable[[], Any], grad_mode: Callable[[], Any],
                        reference: torch.Tensor | None) -> None:
    """Stage 7: the first call of a compiled step compiles it, timed apart."""
    case = work.case
    if case.compile == "eager":
        return
    work.info["compile"] = compiling.describe(case.compile)
    with grad_mode():
        started = time.perf_counter()
        first = step()
        _synchronize(work.device)
        work.metrics["compile_s"] = time.perf_counter() - started
    if case.mode == "inference":
        _record_fidelity(first, reference, work.metrics, work.info)


def _reference_output(module: nn.Module, inputs: Inputs, device: torch.device) -> Any:
    """The untransformed fp32 eager output on the CPU, computed with TF32 off."""
    with precisions.tf32_flags(device, "fp32"), torch.inference_mode():
        output = first_tensor(call(module, inputs))
    return None if output is None else output.detach().to("cpu", copy=True)


def _forward(module: nn.Module, inputs: Inputs, autocast: Callable[[], Any]) -> Any:
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), autocast():
            return call(module, inputs)
    finally:
        module.train(was_training)


def _record_fidelity(output: Any, reference: torch.Tensor | None, metrics: dict[str, Any],
                     info: dict[str, Any]) -> None:
    tensor = first_tensor(output)
    if reference is None or tensor is None:
        info["fidelity_error"] = "the model's output holds no tensor to compare"
        return
    try:
        metrics.update(fidelity(tensor, reference))
    except ValueError as exc:  # a transform changed the output's shape: say so, keep going
        info["fidelity_error"] = str(exc)
        return
    note = vanished_output(tensor, reference)
    if note:
        info["fidelity_note"] = note


def _compiled(case: Case, module: nn.Module, stack: contextlib.ExitStack) -> nn.Module:
    if case.compile == "eager":
        return module
    stack.enter_context(compiling.cold_caches())
    return compiling.compile_module(module, case.compile)


def _classes(reference: torch.Tensor | None) -> int:
    if reference is None or reference.dim() < 2:
        raise ValueError("train mode needs a model whose output is (batch, classes) logits")
    return int(reference.shape[-1])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
