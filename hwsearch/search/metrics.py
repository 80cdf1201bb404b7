"""Measurements on a model: top-1 accuracy, parameter counts and memory, firing rates."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, monitor, neuron
from hwsearch.heap import release_heap_between_batches
from hwsearch.progress import progress_bar

from hwsearch.study import DTYPE_BYTES

__all__ = ["top1_accuracy", "correct_per_batch", "count_params", "param_memory_mb", "measure_firing_rates"]


def count_params(model: nn.Module) -> int:
    """``sum(p.numel())`` over parameters (buffers excluded; unused LayerNorms included)."""
    return sum(p.numel() for p in model.parameters())


def param_memory_mb(params: int, dtype: str = "fp32") -> float:
    """Parameter memory in MB (10^6 bytes) at the deployment ``dtype``."""
    return params * DTYPE_BYTES[dtype] / 1e6


@torch.no_grad()  # torch applies it to each step of the generator, not to the caller between steps
def correct_per_batch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    forward: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[int, int]]:
    """``(correct, samples)`` of each batch in order (eval mode, no gradients; neurons reset around each).

    ``forward(batch_index, x)`` replaces ``model(x)`` (prefix reuse, :mod:`hwsearch.search.prefix`); ``device``:
    where the batches are moved before the forward (None: where they are).
    """
    model.eval()
    # The first batch too starts from a trimmed heap: what ran before it (a previous forward, calibration,
    # pruning) may have left freed memory resident, which would add to this evaluation's peak (hwsearch.heap).
    release_heap_between_batches()
    for i, (x, y) in enumerate(batches):
        if device is not None:
            x = x.to(device, non_blocking=True)
        functional.reset_net(model)
        logits = model(x) if forward is None else forward(i, x)
        functional.reset_net(model)
        correct = int((logits.argmax(dim=1).cpu() == y).sum())
        del logits, x
        release_heap_between_batches()  # large models: memory stays at one batch (hwsearch.heap)
        yield correct, int(y.numel())


def top1_accuracy(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    progress: bool = False,
    desc: str = "evaluate",
    total: int | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Top-1 accuracy in percent; neurons are reset before and after every batch (moved to ``device``)."""
    correct = seen = 0
    bar = progress_bar(batches, desc=desc, total=total, enabled=progress, leave=False, unit="batch")
    for c, n in correct_per_batch(model, bar, device=device):
        correct += c
        seen += n
        bar.set_postfix(top1=f"{100.0 * correct / seen:.2f}", refresh=False)
    if seen == 0:
        raise ValueError("top1_accuracy got no samples")
    return 100.0 * correct / seen


@torch.no_grad()
def measure_firing_rates(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, max_batches: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Mean firing rate of every LIF the forward calls, over the given batches (element-weighted, on ``device``)."""
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    with monitor.OutputMonitor(model, neuron.BaseNode, function_on_output=lambda s: (float(s.sum()), s.numel())) as mon:
        for i, (x, _) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            functional.reset_net(model)
            model(x if device is None else x.to(device))
            functional.reset_net(model)
        for name in mon.monitored_layers:
            for total, n in mon[name]:
                sums[name] = sums.get(name, 0.0) + total
                counts[name] = counts.get(name, 0) + n
    return {name: sums[name] / counts[name] for name in sums if counts[name]}
