"""Make a random SViT fire: a freshly initialised SViT is silent, so equality tests on it prove nothing."""

from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, monitor, neuron

__all__ = ["calibrate_bn", "firing_rates"]


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: torch.Tensor, *, seed: int = 0) -> nn.Module:
    """Randomise every BN's affine parameters, re-estimate BN statistics on one batch, then eval.

    Follows ``svit-architectures.md`` §10: afterwards every LIF that the forward calls fires. ``x`` is a
    model input batch (``[B, C, H, W]``, or ``[B, T, C, H, W]`` for event layouts). Returns ``model``.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.weight.copy_(torch.rand(bn.num_features, generator=gen) * 1.5 + 0.5)
        bn.bias.copy_(torch.rand(bn.num_features, generator=gen) * 0.5 + 0.5)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    functional.reset_net(model)
    model(x)
    functional.reset_net(model)
    model.eval()
    for bn in bns:
        bn.momentum = 0.1
    return model


@torch.no_grad()
def firing_rates(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Mean firing rate of every LIF the forward calls (name -> fraction of ones), one forward on ``x``."""
    functional.reset_net(model)
    with monitor.OutputMonitor(
        model, neuron.BaseNode, function_on_output=lambda s: s.float().mean().item()
    ) as mon:
        model(x)
        rates = {name: float(sum(mon[name]) / len(mon[name])) for name in mon.monitored_layers if mon[name]}
    functional.reset_net(model)
    return rates
