"""Importance criteria: one score per unit of a group; higher means keep.

Contract (as Torch-Pruning's ``Importance``): ``scores(model, group)`` returns a 1-D float tensor of
length ``group.width``; it never changes the model. Scores aggregate over every parameter member of the
group (weights, biases, BN affine), never over buffers (running statistics).

>>> from search_spaces import create_model
>>> from hwsearch.pruning import groups_of
>>> model = create_model("spikformer-digits-2-64")
>>> g = {g.name: g for g in groups_of(model)}["block.0.mlp.hidden"]
>>> create_criterion("l2").scores(model, g).shape
torch.Size([256])
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional

from search_spaces.groups import ChannelGroup
from hwsearch.registry import Registry

__all__ = ["Importance", "CRITERIA", "create_criterion", "unit_slices", "L2Importance", "L1Importance",
           "TaylorImportance", "RandomImportance"]

CRITERIA: Registry[type["Importance"]] = Registry("criterion", list_command="hwsearch criteria")


def _tensor(model: nn.Module, module: str, param: str) -> torch.Tensor:
    mod = model.get_submodule(module) if module else model
    tensor: torch.Tensor = getattr(mod, param)
    return tensor


def unit_slices(t: torch.Tensor, dim: int, unit_size: int, offset: int, width: int) -> torch.Tensor:
    """``t`` reshaped to ``[width, -1]``: row u holds every element of unit u along ``dim``."""
    part = t.detach().narrow(dim, offset, width * unit_size).movedim(dim, 0)
    return part.reshape(width, -1)


class Importance(abc.ABC):
    """Scores the units of a :class:`ChannelGroup`."""

    name: str = ""

    @abc.abstractmethod
    def scores(self, model: nn.Module, group: ChannelGroup) -> torch.Tensor:
        """One float score per unit (length ``group.width``)."""

    def prepare(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Called once per model before scoring (e.g. to compute gradients)."""


def param_members(model: nn.Module, group: ChannelGroup) -> Iterable[tuple[torch.Tensor, Any]]:
    params = {id(p) for p in model.parameters()}
    for m in group.members:
        t = _tensor(model, m.module, m.param)
        if id(t) in params:
            yield t, m


class _NormImportance(Importance):
    p: int = 2

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare(self, model: nn.Module) -> None:
        self._cache = {}  # per-(tensor, dim) channel magnitudes, shared by the groups of one model

    def _per_channel(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        key = (id(t), dim)
        if key not in self._cache:
            td = t.detach()
            lead = 1
            for d in td.shape[:dim]:
                lead *= d
            x = td.reshape(lead, td.shape[dim], -1)
            if self.p == 1:
                mag = x.abs().sum(dim=(0, 2)).to(torch.float64)
            else:
                mag = torch.linalg.vector_norm(x, dim=(0, 2)).to(torch.float64).square()
            self._cache[key] = (t, mag)  # holding t keeps its id from being reused while cached
        return self._cache[key][1]

    def scores(self, model: nn.Module, group: ChannelGroup) -> torch.Tensor:
        total = torch.zeros(group.width, dtype=torch.float64)
        for t, m in param_members(model, group):
            per_channel = self._per_channel(t, m.dim)
            total += per_channel.narrow(0, m.offset, group.width * m.unit_size).view(group.width, m.unit_size).sum(dim=1)
        return total.pow(1.0 / self.p).float()


@CRITERIA.register("l2")
class L2Importance(_NormImportance):
    """L2 norm of each unit's weights over all members of the group (the papers' filter ranking)."""

    name = "l2"
    p = 2


@CRITERIA.register("l1")
class L1Importance(_NormImportance):
    """L1 norm of each unit's weights over all members of the group."""

    name = "l1"
    p = 1


@CRITERIA.register("random")
class RandomImportance(Importance):
    """Seeded random scores: the baseline every ranking must beat."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def scores(self, model: nn.Module, group: ChannelGroup) -> torch.Tensor:
        digest = sum(ord(c) * (i + 1) for i, c in enumerate(group.name))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + digest)
        return torch.rand(group.width, generator=gen)


@CRITERIA.register("taylor")
class TaylorImportance(Importance):
    """First-order Taylor importance ``|Σ w · ∂L/∂w|`` per unit, from calibration batches.

    Gradients flow through the LIF neurons' surrogate; they are accumulated over ``batches`` (an
    iterable of ``(x, y)``) once per model in :meth:`prepare`.
    """

    name = "taylor"

    def __init__(self, *, batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> None:
        self.batches = batches
        self.loss = loss
        self._grads: dict[int, torch.Tensor] = {}
        self._model_id: int | None = None

    def prepare(self, model: nn.Module) -> None:
        if self.batches is None:
            raise ValueError("the taylor criterion needs calibration batches: TaylorImportance(batches=...)")
        was_training = model.training
        model.eval()  # BN statistics stay fixed; gradients still flow
        grads = {id(p): torch.zeros_like(p) for p in model.parameters()}
        for x, y in self.batches:
            model.zero_grad(set_to_none=True)
            functional.reset_net(model)
            self.loss(model(x), y).backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
            functional.reset_net(model)
            for p in model.parameters():
                if p.grad is not None:
                    grads[id(p)] += p.grad.detach()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        self._grads, self._model_id = grads, id(model)

    def scores(self, model: nn.Module, group: ChannelGroup) -> torch.Tensor:
        if self._model_id != id(model):
            self.prepare(model)
        total = torch.zeros(group.width, dtype=torch.float64)
        for t, m in param_members(model, group):
            prod = (t.detach() * self._grads[id(t)]).to(torch.float64)
            total += unit_slices(prod, m.dim, m.unit_size, m.offset, group.width).sum(dim=1)
        return total.abs().float()  # removing a unit removes all its members at once: ΔL ≈ -Σ w·g


def create_criterion(name: str, **kwargs: Any) -> Importance:
    """Build the registered criterion ``name`` (``l2``, ``l1``, ``taylor``, ``random``)."""
    return CRITERIA.get(name)(**kwargs)
