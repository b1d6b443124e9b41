"""Exponential moving average of a model's weights (decay 0.999 on the generator; docs/training.md#schedule-optimiser-ema).

After every optimiser step, for every floating-point parameter p and its shadow e:

    e <- decay * e + (1 - decay) * p

Buffers (e.g. BatchNorm statistics, fixed Haar filters) are copied, not averaged: they are not
optimised, and averaging integer counters would be meaningless. Shadows of bf16/fp16 tensors are
kept in fp32 so that the (1 - decay) = 1e-3 increments are not rounded away; other dtypes are kept.

The reference code reset the EMA to the current weights on resume; here ``state_dict`` /
``load_state_dict`` round-trip the shadow exactly, so a resumed run continues the same average.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["EMA"]


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel so names match the bare model."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def _shadow_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class EMA:
    """Shadow copy of ``model``'s parameters and buffers, on the model's device."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        model = _unwrap(model)
        self.params: dict[str, torch.Tensor] = {
            name: p.detach().to(_shadow_dtype(p.dtype), copy=True) for name, p in model.named_parameters()
        }
        self.buffers: dict[str, torch.Tensor] = {name: b.detach().clone() for name, b in model.named_buffers()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights (call after ``optimizer.step()``)."""
        model = _unwrap(model)
        params = dict(model.named_parameters())
        self._check_names(params, self.params, "parameters")
        for name, shadow in self.params.items():
            p = params[name].detach()
            if shadow.is_floating_point():
                shadow.mul_(self.decay).add_(p.to(shadow.dtype), alpha=1.0 - self.decay)
            else:
                shadow.copy_(p)
        buffers = dict(model.named_buffers())
        self._check_names(buffers, self.buffers, "buffers")
        for name, shadow in self.buffers.items():
            shadow.copy_(buffers[name])
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters and buffers with the EMA weights (cast to their dtypes)."""
        model = _unwrap(model)
        params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
        self._check_names(params, self.params, "parameters")
        self._check_names(buffers, self.buffers, "buffers")
        for name, shadow in self.params.items():
            params[name].copy_(shadow)
        for name, shadow in self.buffers.items():
            buffers[name].copy_(shadow)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and primitives only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "params": {k: v.clone() for k, v in self.params.items()},
            "buffers": {k: v.clone() for k, v in self.buffers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly; the names must match the model this EMA was built from."""
        missing = {"decay", "num_updates", "params", "buffers"} - set(state)
        if missing:
            raise ValueError(f"EMA state is missing {sorted(missing)}; was it produced by EMA.state_dict()?")
        self._check_names(state["params"], self.params, "parameters")
        self._check_names(state["buffers"], self.buffers, "buffers")
        with torch.no_grad():
            for name, shadow in self.params.items():
                shadow.copy_(state["params"][name])
            for name, shadow in self.buffers.items():
                shadow.copy_(state["buffers"][name])
        if float(state["decay"]) != self.decay:
            logger.warning("EMA decay changed on resume: checkpoint %s, now %s", state["decay"], self.decay)
        self.num_updates = int(state["num_updates"])

    @staticmethod
    def _check_names(got: dict[str, Any], expected: dict[str, Any], what: str) -> None:
        if set(got) != set(expected):
            extra = sorted(set(got) - set(expected))[:5]
            missing = sorted(set(expected) - set(got))[:5]
            raise ValueError(
                f"EMA {what} do not match the model: unexpected {extra}, missing {missing}; "
                f"build the EMA from the same model (unwrapped from DDP/compile)"
            )
