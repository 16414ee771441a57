"""One training step: forward, cross-entropy on seeded labels, backward, AdamW, zero-grad.

Losses are kept as tensors and read only after timing, so a CUDA step never synchronises
inside the timed window. fp16 autocast uses a GradScaler, as real fp16 training must.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.measure.models.build import Inputs, call, seeded


@dataclass
class TrainState:
    first_loss: torch.Tensor | None = None
    last_loss: torch.Tensor | None = None
    steps: int = 0

    def losses(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.first_loss is not None:
            out["loss_first"] = float(self.first_loss.item())
        if self.last_loss is not None:
            out["loss_last"] = float(self.last_loss.item())
        return out


def seeded_labels(batch: int, classes: int, seed: int, device: torch.device) -> torch.Tensor:
    with seeded(seed):
        return torch.randint(0, classes, (batch,)).to(device)


def make_train_step(module: nn.Module, inputs: Inputs, labels: torch.Tensor,
                    autocast_context: Callable[[], Any], *, grad_scaler: bool,
                    masks: list[tuple[nn.Parameter, torch.Tensor]] | None = None,
                    lr: float = 1e-3) -> tuple[Callable[[], Any], TrainState]:
    """A closure running one optimisation step on a fixed batch, and its loss record.

    `masks` (masked pruning) are re-applied after every optimizer step, inside the step,
    so the sparsity holds and its cost is part of the measured training step.
    """
    module.train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    device_type = labels.device.type
    scaler = torch.amp.GradScaler(device_type) if grad_scaler else None
    state = TrainState()

    def step() -> torch.Tensor:
        with autocast_context():
            logits = call(module, inputs)
            loss = loss_fn(logits.float(), labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if masks:
            with torch.no_grad():
                for weight, keep in masks:
                    weight.mul_(keep)
        loss = loss.detach()
        if state.first_loss is None:
            state.first_loss = loss
        state.last_loss = loss
        state.steps += 1
        return loss

    return step, state
