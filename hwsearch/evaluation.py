"""The Evaluator: *how to measure one candidate*.

It replays the candidate's plan on the source weights (channels ranked once by the space's criterion),
measures top-1 on fixed evaluation batches, and attaches the analytic costs (exact for parameters and
dense MACs). Everything it needs is plain data (:class:`EvaluatorSpec`), so a Ray worker builds its own
copy once and evaluates many candidates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from hwsearch.metrics import top1_accuracy
from hwsearch.pruning import ChannelGroup, PruningPlan, create_criterion, groups_of, prune, topk_units
from hwsearch.results import Candidate, Constraints, Result
from hwsearch.space import SearchSpace

__all__ = ["EvaluatorSpec", "Evaluator", "cost_metrics", "FAULT_TAGS"]

#: Candidate tags that make an evaluator fail on purpose (only with ``allow_fault_injection``): tests use
#: them to show that a failing evaluation, or a worker that dies, fails that candidate only.
FAULT_TAGS = ("fault:raise", "fault:exit")


def cost_metrics(cost: Any) -> dict[str, float]:
    """The cost keys every Result carries, from a ``costmodels.Cost``."""
    return {"params": float(cost.params), "param_mb": float(cost.weight_mb), "macs_g": float(cost.gmacs),
            "act_mb": float(cost.act_mb)}


@dataclass(kw_only=True)
class EvaluatorSpec:
    """Plain, picklable description of an evaluator (what a worker needs to rebuild it).

    Attributes:
        config: registry name of the source model; model_kwargs: its constructor overrides.
        state_dict: the source weights (put in Ray's object store once by the Ray runner).
        space: the search space (variables, levels, criterion).
        batches: evaluation batches ``(x, y)`` (the study's eval split or a seeded subset of it).
        constraints: budgets; baseline_accuracy: top-1 of the unpruned model on ``batches``.
        allow_fault_injection: honour :data:`FAULT_TAGS` (tests only).
    """

    config: str
    model_kwargs: Mapping[str, Any]
    state_dict: Mapping[str, torch.Tensor]
    space: SearchSpace
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
    constraints: Constraints
    baseline_accuracy: float = float("nan")
    allow_fault_injection: bool = False
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Evaluator:
    """Measures candidates of one search space on one model.

    Call it with a :class:`~hwsearch.results.Candidate`; it never raises for a failing candidate (the
    Result has ``status="failed"`` and the error) except KeyboardInterrupt.
    """

    def __init__(self, spec: EvaluatorSpec) -> None:
        from costmodels import AnalyticCostModel
        from search_spaces import get_config

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.space = spec.space
        model = get_config(spec.config).build(**spec.model_kwargs)
        model.load_state_dict(dict(spec.state_dict), strict=True)
        self.model = model.eval()
        self.groups = groups_of(self.model)
        self._scores = self._rank()
        self.compiled = AnalyticCostModel(dtype=spec.constraints.dtype).compile(spec.config, spec.model_kwargs)

    def _rank(self) -> dict[str, torch.Tensor]:
        crit = create_criterion(self.space.criterion)
        crit.prepare(self.model)
        searched = set(self.space.names())
        return {g.name: crit.scores(self.model, g) for g in self.groups
                if isinstance(g, ChannelGroup) and g.name in searched}

    def plan(self, candidate: Candidate) -> PruningPlan:
        """The resolved plan (exact kept indices) of a candidate."""
        counts = self.space.widths(candidate.levels)
        by_name = {g.name: g for g in self.groups}
        keep = {name: topk_units(self._scores[name], count, by_name[name].partitions)  # type: ignore[union-attr]
                for name, count in counts.items()}
        base = self.space.plan(candidate.levels)
        return PruningPlan(model=base.model, keep=keep, checkpoint_sha256=base.checkpoint_sha256,
                           criterion=base.criterion, model_kwargs=base.model_kwargs)

    def pruned_model(self, candidate: Candidate) -> nn.Module:
        return prune(self.model, self.plan(candidate), self.groups)

    def costs(self, levels: Mapping[str, int]) -> dict[str, float]:
        """Analytic costs of a candidate (no model built)."""
        return cost_metrics(self.compiled.cost(self.space.widths(levels), per_layer=False))

    def accuracy(self, model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> float:
        return top1_accuracy(model, batches if batches is not None else self.spec.batches)

    def __call__(self, candidate: Candidate) -> Result:
        t0 = time.perf_counter()
        costs: dict[str, float] = {}
        try:
            costs = self.costs(candidate.levels)
            if self.spec.allow_fault_injection and candidate.tag in FAULT_TAGS:
                if candidate.tag == "fault:exit":
                    os._exit(3)  # a worker that dies mid-evaluation
                raise RuntimeError("injected failure")
            with torch.no_grad():
                acc = self.accuracy(self.pruned_model(candidate))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one failing candidate must not end the search
            return Result(candidate=candidate, status="failed", costs=costs, seconds=time.perf_counter() - t0,
                          error=f"{type(e).__name__}: {e}"[:500],
                          violations=self.spec.constraints.violations(costs, None) if costs else {})
        drop = self.spec.baseline_accuracy - acc
        return Result(candidate=candidate, status="ok", accuracy=acc, acc_drop=drop, costs=costs,
                      violations=self.spec.constraints.violations(costs, drop), seconds=time.perf_counter() - t0)
