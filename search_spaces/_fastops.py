"""Fast inference paths for two Spikformer operations, bit-identical to the official code.

Both run only when the result cannot differ and no gradient can be needed (not training, grad
disabled, CPU float32, no dispatch mode or jit trace recording ops, not inside
:func:`~search_spaces._fastlif.reference_lif`, which turns off every fast inference path); otherwise
the official operations run. Proven equal with ``torch.equal`` on every family's models in the tests.

**Batch norm over the last dimension** (:func:`batch_norm_last_dim`). The CIFAR layout normalises
``Linear`` outputs ``[TB, N, C]`` with ``BatchNorm1d`` on the transposed view ``[TB, C, N]`` (official
code). That view is neither contiguous nor channels-last, so PyTorch's CPU kernel takes its generic
strided branch (``aten/src/ATen/native/cpu/batch_norm_kernel.cpp``), which computes per element::

    y = ((x - mean) * invstd) * weight + bias        invstd = 1 / sqrt(running_var + eps)

and the result needs a transposing copy back. The fast path runs those four operations as separate
elementwise ops (each rounds once, as the kernel's vectorised lambda does) on the contiguous tensor,
already laid out as the next layer reads it: about 5x faster on the demo's shapes.

**Spiking self-attention on spikes** (:func:`spike_attention`). The CIFAR and DVS layouts compute
``(q @ kᵀ) @ v`` (``N x N`` attention, ``2 N² d`` multiply-adds per head); the ImageNet layout, in the
official code too, computes ``q @ (kᵀ @ v)`` (``2 N d²``). With binary ``q, k, v`` (LIF outputs) every
product and partial sum is a whole number below ``N * d_qk``: below ``2**24`` every such number is
exact in float32, so any summation order gives the same result, and a power-of-two ``scale`` multiplies
exactly. Under those conditions (checked) the cheaper order returns the same bits.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from search_spaces._fastlif import dispatch_mode_active, reference_lif_forced

__all__ = ["batch_norm_last_dim", "spike_attention"]

#: float32 represents every whole number up to 2**24 exactly.
EXACT_INTEGERS_FP32 = 1 << 24


def _fast_inference(*tensors: torch.Tensor) -> bool:
    """No gradient can be needed and nothing records ops: the fast paths may run."""
    return (
        not torch.is_grad_enabled()
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not torch.jit.is_tracing()  # type: ignore[attr-defined, no-untyped-call]  # torch: unannotated, not in torch.jit.__all__
        and not dispatch_mode_active()
        and not reference_lif_forced()
    )


def batch_norm_last_dim(bn: nn.BatchNorm1d, y: torch.Tensor) -> torch.Tensor:
    """``bn(y.transpose(-1, -2)).transpose(-1, -2)`` for ``y`` shaped ``[M, N, C]``, bit for bit.

    The fast path returns a contiguous tensor and may overwrite ``y`` (pass a temporary, e.g. a layer's
    output); the official path returns the transposed view as the official code does.
    """
    running_mean, running_var = bn.running_mean, bn.running_var
    if (bn.training or not bn.track_running_stats or not bn.affine or running_mean is None or running_var is None
            or not _fast_inference(y, running_var)):
        official: torch.Tensor = bn(y.transpose(-1, -2))
        return official.transpose(-1, -2)
    invstd = 1 / torch.sqrt(running_var + bn.eps)
    out = y.sub_(running_mean) if y.is_contiguous() else y - running_mean
    return out.mul_(invstd).mul_(bn.weight).add_(bn.bias)


def _power_of_two(x: float) -> bool:
    return x > 0 and math.frexp(x)[0] == 0.5


def spike_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, *,
                    scale_before_v: bool) -> torch.Tensor:
    """Official ``(q @ kᵀ) @ v`` attention on spike tensors ``[..., N, d]``, scaled by ``scale``.

    ``scale_before_v`` says where the official code multiplies: ``((q @ kᵀ) * scale) @ v`` (CIFAR) or
    ``((q @ kᵀ) @ v) * scale`` (DVS). ``q``, ``k``, ``v`` must be spikes (0/1, as LIF outputs are): then,
    when exact (see the module docstring), ``(q @ (kᵀ @ v)) * scale`` is returned instead.
    """
    n, d_qk = k.shape[-2], k.shape[-1]
    if _fast_inference(q, k, v) and _power_of_two(scale) and n * d_qk < EXACT_INTEGERS_FP32:
        return (q @ (k.transpose(-2, -1) @ v)) * scale
    if scale_before_v:
        return ((q @ k.transpose(-2, -1)) * scale) @ v
    return (q @ k.transpose(-2, -1) @ v) * scale
