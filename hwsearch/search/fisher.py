"""Fisher importance of pruning each searched group to each level (Kwon et al. 2022, post-training pruning).

For a unit ``u`` of a group (a channel, a head) with a multiplicative mask ``m_u = 1``, the gradient of the
loss with respect to the mask is ``sum over u's members of w * dL/dw``; its empirical Fisher information
``F_u = mean over batches of (dL/dm_u)^2`` estimates (to second order) how much the loss rises when the
unit is removed. Pruning a group to a level removes the units the plan's criterion ranks lowest, so the
estimated loss of that level is the sum of their ``F_u``. Gradients flow through the LIF neurons'
surrogate (spikingjelly's training path), with batch norms in eval mode; nothing is evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional

from hwsearch.pruning import ChannelGroup, topk_units
from hwsearch.pruning import param_members, unit_slices

if TYPE_CHECKING:
    from hwsearch.search.evaluation import Evaluator

__all__ = ["level_importance"]


def level_importance(evaluator: Evaluator, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, list[float]]:
    """Per searched variable, the Fisher-estimated loss of each level (level 0: 0.0).

    Args:
        evaluator: an :class:`~hwsearch.search.evaluation.Evaluator` (its source model, groups and ranking).
        batches: a few labelled batches (smaller batches give a better Fisher estimate).
    """
    model = evaluator.model
    space = evaluator.space
    groups = {g.name: g for g in evaluator.groups if isinstance(g, ChannelGroup)}
    searched = [groups[v.name] for v in space.variables if v.name in groups]
    fisher = {g.name: torch.zeros(g.width, dtype=torch.float64) for g in searched}
    members = {g.name: list(param_members(model, g)) for g in searched}
    was_training = model.training
    device = next(iter(model.parameters())).device
    model.eval()
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            functional.reset_net(model)
            with torch.enable_grad():  # (torch's Tensor.backward is unannotated)
                F.cross_entropy(model(x.to(device)), y.to(device)).backward()  # type: ignore[no-untyped-call]
            functional.reset_net(model)
            for g in searched:
                grad_m = torch.zeros(g.width, dtype=torch.float64)
                for t, m in members[g.name]:
                    if t.grad is None:
                        continue
                    prod = (t.detach() * t.grad.detach()).to("cpu", torch.float64)
                    grad_m += unit_slices(prod, m.dim, m.unit_size, m.offset, g.width).sum(dim=1)
                fisher[g.name] += grad_m.pow(2)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    n = max(1, len(batches))
    out: dict[str, list[float]] = {}
    for v in space.variables:
        group = groups.get(v.name)
        if group is None:
            out[v.name] = [0.0] * len(v.levels)
            continue
        f = fisher[group.name] / n
        row = [0.0]
        for kept in v.levels[1:]:
            keep = set(topk_units(evaluator._scores[group.name], kept, group.partitions))
            row.append(float(sum(f[u] for u in range(group.width) if u not in keep)) / 2.0)
        out[v.name] = row
    return out
