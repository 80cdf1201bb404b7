"""Building blocks shared by the SViT families: the official neuron and init helpers."""

from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron, surrogate

from search_spaces._fastlif import FastLIFNode

__all__ = ["lif", "neuron_settings", "trunc_normal_init", "add_residual_branches"]

#: The official neurons: legacy ``MultiStepLIFNode(tau=2.0, detach_reset=True)`` mapped to 2.0.0.
LIF_TAU = 2.0
LIF_THRESHOLD = 1.0
ATTN_LIF_THRESHOLD = 0.5


def lif(v_threshold: float = LIF_THRESHOLD) -> neuron.LIFNode:
    """A multi-step LIF neuron as the official code builds it (tau 2, hard reset to 0, detach_reset).

    Input ``[T, ...]``; output binary spikes of the same shape. Has no state_dict entries. A
    :class:`~search_spaces._fastlif.FastLIFNode`: spikingjelly's ``LIFNode`` with a bit-identical fast CPU
    path when no gradient is needed (``HWSEARCH_REFERENCE_LIF=1`` or ``reference_lif()`` turn it off).
    """
    return FastLIFNode(tau=LIF_TAU, **neuron_settings(v_threshold))


def neuron_settings(v_threshold: float = LIF_THRESHOLD) -> dict[str, object]:
    """What every official neuron shares: input decay, hard reset to 0, detach_reset, sigmoid surrogate
    (alpha 4), multi-step; ``lif`` and SDT's PLIF add their time constant."""
    return dict(decay_input=True, v_threshold=float(v_threshold), v_reset=0.0,
                surrogate_function=surrogate.Sigmoid(alpha=4.0), detach_reset=True, step_mode="m")


def trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """timm-style init used by Spikformer/QKFormer: trunc_normal(std) Linear weights, zero bias, LN 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.0)
    elif isinstance(module, nn.LayerNorm):
        nn.init.constant_(module.bias, 0.0)
        nn.init.constant_(module.weight, 1.0)


def add_residual_branches(x: torch.Tensor, *branches: nn.Module | None) -> torch.Tensor:
    """``x = x + branch(x)`` for each branch in order; a branch removed by depth pruning (None) is skipped.

    The block forward of Spikformer and QKFormer (SDT's branches carry their own shortcut).
    """
    for branch in branches:
        if branch is not None:
            x = x + branch(x)
    return x
