"""Helpers for prunable-group tests: run a model from reset, expected shapes and counts, reference models.

Shared by every family's group tests and the family contract suite (``tests/search_spaces``); shipped
so a plug-in family outside hwsearch can check its groups the same way.
"""

from __future__ import annotations

import copy
import math
import re

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from hwsearch.pruning import ChannelGroup, DepthGroup, Group, PruningPlan, groups_of

__all__ = ["assert_same_state", "channel_coverage", "channel_shapes", "check_sizes", "depth_shapes", "half_count",
           "param_count", "pick_units", "random_plan", "run_from_reset", "weight_groups", "zero_consumers"]


def weight_groups(model: nn.Module) -> list[Group]:
    """The channel and depth groups of ``model`` (token and T groups prune no weight)."""
    return [g for g in groups_of(model) if isinstance(g, (ChannelGroup, DepthGroup))]


def run_from_reset(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` without gradients, neurons reset before and after."""
    functional.reset_net(model)
    with torch.no_grad():
        y: torch.Tensor = model(x)
    functional.reset_net(model)
    return y


def half_count(g: Group) -> int:
    """The allowed count nearest half the group's width (channel groups), or half the units (depth groups)."""
    if isinstance(g, ChannelGroup):
        return min(g.allowed_counts(), key=lambda c: (abs(c - g.width / 2), c))
    return max(g.min_width, g.width // 2)


def pick_units(g: Group, count: int, gen: torch.Generator) -> tuple[int, ...]:
    """``count`` random unit indices, the same number in every partition."""
    parts = g.partitions if isinstance(g, ChannelGroup) else 1
    pw, per = g.width // parts, count // parts
    return tuple(sorted(p * pw + int(i) for p in range(parts) for i in torch.randperm(pw, generator=gen)[:per]))


def channel_shapes(model: nn.Module, g: ChannelGroup, kept: int) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes after keeping ``kept`` units of channel group ``g``."""
    shapes = {k: list(t.shape) for k, t in model.state_dict().items()}
    for m in g.members:
        shapes[m.key][m.dim] -= (g.width - kept) * m.unit_size
    return {k: tuple(v) for k, v in shapes.items()}


def depth_shapes(model: nn.Module, g: DepthGroup, kept: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes (and renumbered keys) after keeping units ``kept`` of depth group ``g``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, t in model.state_dict().items():
        if g.kind == "branches":
            if any(key.startswith(g.units[u] + ".") for u in range(g.width) if u not in kept):
                continue
        else:
            m = re.match(rf"^{re.escape(g.container)}\.(\d+)\.(.*)$", key)
            if m:
                if int(m[1]) not in kept:
                    continue
                key = f"{g.container}.{kept.index(int(m[1]))}.{m[2]}"
        shapes[key] = tuple(t.shape)
    return shapes


def param_count(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> int:
    """Parameters (no buffers) of a model whose state_dict has ``shapes`` (keys of ``model``'s params)."""
    names = {n for n, _ in model.named_parameters()}
    return sum(math.prod(s) for k, s in shapes.items() if k in names)


def zero_consumers(model: nn.Module, g: ChannelGroup, removed: list[int]) -> nn.Module:
    """A copy in which nothing reads the removed units: zero their input columns or silence their spikes."""
    ref = copy.deepcopy(model)
    ins = [m for m in g.members if m.dim == 1]
    with torch.no_grad():
        bns = [m for m in g.members if isinstance(ref.get_submodule(m.module), nn.modules.batchnorm._BatchNorm)]
        for m in ins or bns:
            t = getattr(ref.get_submodule(m.module), m.param)
            for u in removed:
                part = t.narrow(m.dim, m.offset + u * m.unit_size, m.unit_size)
                if ins:
                    part.zero_()
                elif m.param in ("weight", "bias"):  # BN before a LIF: output -1e4, the LIF never fires
                    part.fill_(0.0 if m.param == "weight" else -1e4)
    return ref


def check_sizes(model: nn.Module) -> None:
    """Every conv / linear / batch norm's recorded sizes match its weights."""
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.conv._ConvNd):
            assert (mod.out_channels, mod.in_channels) == tuple(mod.weight.shape[:2]), name
        elif isinstance(mod, nn.Linear):
            assert (mod.out_features, mod.in_features) == tuple(mod.weight.shape), name
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            assert mod.running_mean is not None, name  # every batch norm here tracks running statistics
            assert mod.num_features == mod.weight.shape[0] == mod.running_mean.shape[0], name


def random_plan(model: nn.Module, groups: list[Group], seed: int, skip: tuple[str, ...] = ()) -> PruningPlan:
    """A plan keeping a random allowed count of every group (except ``skip``), seeded."""
    gen = torch.Generator().manual_seed(seed)
    keep: dict[str, int] = {}
    for g in groups:
        counts = g.allowed_counts() if isinstance(g, ChannelGroup) else list(range(g.min_width, g.width + 1))
        count = counts[int(torch.randint(len(counts), (1,), generator=gen))]
        if g.name not in skip:
            keep[g.name] = count
    return PruningPlan(model=model.hwsearch_config, keep=keep, criterion="random", seed=seed)  # type: ignore[arg-type]


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    """Same state_dict keys and bit-identical tensors."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])]


def channel_coverage(model: nn.Module, groups: list[Group]) -> dict[str, list[str]]:
    """``key:dim`` -> names of the non-head channel groups covering it (checking each member's span)."""
    state = model.state_dict()
    cover: dict[str, list[str]] = {f"{k}:{d}": [] for k, t in state.items() for d in range(min(t.dim(), 2))}
    for g in groups:
        if not isinstance(g, ChannelGroup):
            continue
        for m in g.members:
            assert m.offset + g.width * m.unit_size == state[m.key].shape[m.dim], (g.name, m)
            if g.kind != "heads":
                cover.setdefault(f"{m.key}:{m.dim}", []).append(g.name)
    return cover
