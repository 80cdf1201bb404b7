"""The Evaluator: *how to measure one candidate*.

It replays the candidate's plan on the source weights (channels ranked once by the space's criterion),
optionally re-estimates the batch-norm statistics of the pruned model on a few training batches
(``bn_recalibrate``, EagleEye's adaptive BN: in SViTs every BN feeds a LIF, so pruning shifts firing),
measures top-1 on fixed evaluation batches, and attaches the analytic costs (exact for parameters and
dense MACs). Everything it needs is plain data (:class:`EvaluatorSpec`), so a Ray worker builds its own
copy once and evaluates many candidates.

Prefix reuse (:mod:`hwsearch.search.prefix`): a candidate that leaves the stem and the first blocks unpruned
replays their stored activations on the evaluation batches instead of recomputing them (identical
outputs; ``prefix_cache_mb = 0`` switches it off).

Multi-fidelity: the evaluation batches are measured in order and, after each, the evaluator checks
whether the drop limit is still reachable: if even answering every remaining image correctly would
leave the drop above ``stop_drop``, the candidate is stopped (status ``stopped``, with the exact upper
bound of its accuracy). The bound is exact, so no candidate that would have met the limit is stopped.
Successive halving (:mod:`hwsearch.search.halving`) adds bars to a candidate (``Candidate.rungs``): one that has
fewer correct than the bar after a rung's images is ``halved``.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from hwsearch.search.costing import CandidateCosts
from hwsearch.data import count_samples
from hwsearch.search.metrics import correct_per_batch, top1_accuracy
from hwsearch.search.prefix import DEFAULT_PREFIX_CACHE_MB, PrefixCache, forward_fn, prefix_length, touched_modules, trace_chain
from hwsearch.pruning import ChannelGroup, PruningPlan, create_criterion, groups_of, prune, topk_units
from hwsearch.search.results import Candidate, Constraints, Result
from hwsearch.search.profiling import PROFILE_TAG
from hwsearch.search.encoding import PlanEncoding

log = logging.getLogger(__name__)

__all__ = ["EvaluatorSpec", "Evaluator", "cost_metrics", "FAULT_TAGS", "recalibrate_bn", "staged_accuracy",
           "StagedAccuracy"]

#: Candidate tags that make an evaluator fail on purpose (only with ``allow_fault_injection``): tests use
#: them to show that a failing evaluation, or a worker that dies, fails that candidate only.
FAULT_TAGS = ("fault:raise", "fault:exit")


#: Training batches the taylor criterion accumulates gradients over.
TAYLOR_BATCHES = 2


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
        calibration_batches: training batches for batch-norm re-estimation (the first
            ``bn_recalibrate`` of them are used; 0: the pruned model keeps the source statistics).
        stop_drop: early-stop limit in points (None: every candidate is measured on every batch).
        config_def: the definition of a user-defined source configuration (registered in the worker).
        threads: torch threads of the evaluating process (None: leave as set).
        device: ``cpu`` or ``cuda[:N]`` (resolved already, see :func:`hwsearch.devices.resolve_device`).
        prefix_cache_mb: memory for stored prefix activations (0: no prefix reuse).
        cost_models: registry names of the search's cost models (:func:`hwsearch.search.costing.resolve_cost_models`):
            the analytic one predicts every candidate's costs; forward-needing ones (``measured``:
            SOPs and energy from the candidate's firing rates on ``batches``; ``latency``: timed at
            ``constraints.latency_batch`` on ``device``) measure each fully evaluated candidate.
    """

    config: str
    model_kwargs: Mapping[str, Any]
    state_dict: Mapping[str, torch.Tensor]
    space: PlanEncoding
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
    constraints: Constraints
    baseline_accuracy: float = float("nan")
    allow_fault_injection: bool = False
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    calibration_batches: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()
    bn_recalibrate: int = 0
    stop_drop: float | None = None
    config_def: Mapping[str, Any] | None = None
    device: str = "cpu"
    prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB
    cost_models: tuple[str, ...] = ("analytic",)


def recalibrate_bn(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                   after: str | None = None) -> nn.Module:
    """Re-estimate batch-norm running statistics on ``batches`` (in place; returns ``model``).

    The statistics are reset and accumulated as a plain average over the batches (``momentum=None``),
    with every other module in eval mode and no gradients; the model is left in eval mode. Deterministic
    for the same batches. ``after``: only the batch norms from that module on (in definition order,
    the forward order of these families) are re-estimated; the ones before it see unchanged inputs and
    keep the statistics of the full training run.
    """
    names = [n for n, _ in model.named_modules()]
    start = names.index(after) if after in names else 0
    bns = [m for i, (n, m) in enumerate(model.named_modules())
           if i >= start and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or not batches:
        return model
    model.eval()
    momenta = [m.momentum for m in bns]
    device = next(iter(model.parameters())).device
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            for x, _ in batches:
                functional.reset_net(model)
                model(x.to(device))
                functional.reset_net(model)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    return model


@dataclass(frozen=True, slots=True)
class StagedAccuracy:
    """Top-1 measured batch by batch: ``correct`` of ``seen`` images, ``total`` in the split.

    ``halved``: stopped because a successive-halving bar was missed (not because the drop limit became
    unreachable); ``stage_correct``: cumulative correct after each evaluated batch.
    """

    correct: int
    seen: int
    total: int
    halved: bool = False
    stage_correct: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        return self.seen == self.total

    @property
    def accuracy(self) -> float:
        """Top-1 in percent when complete; else the most it can still reach (an exact upper bound)."""
        return 100.0 * (self.correct + self.total - self.seen) / self.total


def staged_accuracy(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                    baseline: float | None = None, stop_drop: float | None = None,
                    forward: Any = None, device: torch.device | str | None = None,
                    total: int | None = None, rungs: Sequence[tuple[int, int]] = ()) -> StagedAccuracy:
    """Top-1 over ``batches`` in order, stopping once ``baseline - upper bound > stop_drop`` (exact), or
    (``halved``) once ``seen`` reaches a rung's image count with fewer correct than its bar.

    ``forward(batch_index, x)`` replaces ``model(x)``; ``total``: the samples in ``batches`` when known
    (else counted by iterating them once).
    """
    total = total if total is not None else sum(int(y.numel()) for _, y in batches)
    if total == 0:
        raise ValueError("staged_accuracy got no samples")
    correct = seen = 0
    stages: list[int] = []
    bars = sorted(rungs)
    for c, n in correct_per_batch(model, batches, forward=forward, device=device):
        correct += c
        seen += n
        stages.append(correct)
        if seen >= total:
            break
        if stop_drop is not None and baseline is not None:
            best_possible = 100.0 * (correct + total - seen) / total
            if baseline - best_possible > stop_drop + 1e-9:
                break
        if any(at == seen and correct < need for at, need in bars):
            return StagedAccuracy(correct=correct, seen=seen, total=total, halved=True, stage_correct=tuple(stages))
    return StagedAccuracy(correct=correct, seen=seen, total=total, stage_correct=tuple(stages))


class Evaluator:
    """Measures candidates of one search space on one model.

    Call it with a :class:`~hwsearch.search.results.Candidate`; it never raises for a failing candidate (the
    Result has ``status="failed"`` and the error) except KeyboardInterrupt.
    """

    def __init__(self, spec: EvaluatorSpec) -> None:
        from costmodels import AnalyticCostModel
        from search_spaces import get_config

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.space = spec.space
        if spec.config_def is not None:  # a Ray worker has not loaded the study that defined it
            from search_spaces import ensure_config

            ensure_config(spec.config_def)
        self.device = torch.device(spec.device)
        model = get_config(spec.config).build(**spec.model_kwargs)
        model.load_state_dict(dict(spec.state_dict), strict=True)
        self.model = model.eval()  # the source stays on the CPU: ranking and slicing; candidates run on device
        self._source_on_device: nn.Module | None = None
        self.groups = groups_of(self.model)
        self._scores = self._rank()
        self.compiled = AnalyticCostModel(dtype=spec.constraints.dtype).compile(spec.config, spec.model_kwargs)
        self.measurer = CandidateCosts(names=spec.cost_models, dtype=spec.constraints.dtype,
                                       latency_batch=spec.constraints.latency_batch, device=spec.device)
        self.total = count_samples(spec.batches)
        self.prefix: PrefixCache | None = None
        if spec.prefix_cache_mb > 0 and self.total:
            x0 = spec.batches[0][0][:1]
            self.prefix = PrefixCache(trace_chain(self.model, x0), budget_mb=spec.prefix_cache_mb)

    def reusable_prefix(self, candidate: Candidate) -> int:
        """How many leading modules of the traced chain the candidate's model shares with the source.

        Exact: the prefix holds no pruned tensor and, with batch-norm re-estimation, ends before the
        first re-estimated module (a depth-only or empty plan re-estimates everything: no prefix).
        """
        if self.prefix is None:
            return 0
        chain = self.prefix.chain
        k = prefix_length(chain, touched_modules(self.groups, self.plan(candidate).keep))
        if self.spec.bn_recalibrate and candidate.levels:
            after = self.first_pruned_module(candidate)
            names = [n for n, _ in self.model.named_modules()]
            k = min(k, prefix_length(chain, names[names.index(after):]) if after is not None else 0)
        return k

    def _rank(self) -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = {}
        if self.space.criterion == "taylor":  # gradients on training batches (else the first eval batches)
            kwargs["batches"] = list(self.spec.calibration_batches or self.spec.batches)[:TAYLOR_BATCHES]
        crit = create_criterion(self.space.criterion, **kwargs)
        crit.prepare(self.model)
        searched = set(self.space.names())
        return {g.name: crit.scores(self.model, g) for g in self.groups
                if isinstance(g, ChannelGroup) and g.name in searched}

    def plan(self, candidate: Candidate) -> PruningPlan:
        """The resolved plan (exact kept indices) of a candidate."""
        counts = self.space.widths(candidate.levels)
        by_name = {g.name: g for g in self.groups}
        keep = {name: topk_units(self._scores[name], count, by_name[name].partitions)  # type: ignore[union-attr]
                if name in self._scores else tuple(range(count))  # token/T groups: a count, chosen at run time
                for name, count in counts.items()}
        base = self.space.plan(candidate.levels)
        return PruningPlan(model=base.model, keep=keep, checkpoint_sha256=base.checkpoint_sha256,
                           criterion=base.criterion, model_kwargs=base.model_kwargs)

    def pruned_model(self, candidate: Candidate) -> nn.Module:
        """The candidate's pruned model on the evaluator's device, batch norms re-estimated if the spec asks."""
        model = prune(self.model, self.plan(candidate), self.groups).to(self.device)
        if self.spec.bn_recalibrate and candidate.levels:
            recalibrate_bn(model, list(self.spec.calibration_batches)[: self.spec.bn_recalibrate],
                           after=self.first_pruned_module(candidate))
        return model

    def first_pruned_module(self, candidate: Candidate) -> str | None:
        """The first module (definition order) whose tensors the candidate shrinks."""
        touched = {m.module for g in self.groups if g.name in candidate.levels and isinstance(g, ChannelGroup)
                   for m in g.members}
        name: str  # torch leaves named_modules unannotated
        for name, _ in self.model.named_modules():
            if name in touched:
                return name
        return None

    def costs(self, levels: Mapping[str, int]) -> dict[str, float]:
        """Analytic costs of a candidate (no model built)."""
        return cost_metrics(self.compiled.cost(self.space.widths(levels), per_layer=False))

    def measured_costs(self, model: nn.Module) -> tuple[dict[str, float], str]:
        """The forward-needing cost models' metrics of ``model`` (SOPs over the eval batches, latency on
        this evaluator's device) and where they were measured; ``({}, '')`` when the search asks none."""
        if not self.measurer:
            return {}, ""
        return self.measurer.measure(model, self.spec.batches)

    def accuracy(self, model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> float:
        """Top-1 of ``model`` on this evaluator's device on ``batches`` (default: the eval batches).

        The source model (``self.model``) is measured through a copy on the device, so it stays on the CPU.
        """
        if model is self.model and self.device.type != "cpu":
            if self._source_on_device is None:
                self._source_on_device = copy.deepcopy(self.model).to(self.device)
            model = self._source_on_device
        return top1_accuracy(model, batches if batches is not None else self.spec.batches, device=self.device)

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
                model = self.pruned_model(candidate)
                run = forward_fn(self.prefix, model, self.reusable_prefix(candidate))
                staged = staged_accuracy(model, self.spec.batches, baseline=self.spec.baseline_accuracy,
                                         stop_drop=self.spec.stop_drop, forward=run, device=self.device,
                                         total=self.total, rungs=candidate.rungs)
            where = ""
            if staged.complete and candidate.tag != PROFILE_TAG:  # the shared profile is not measured
                measured, where = self.measured_costs(model)
                costs = {**costs, **measured}
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one failing candidate must not end the search
            log.info("candidate %s failed: %s: %s", candidate.key, type(e).__name__, e)
            return Result(candidate=candidate, status="failed", costs=costs, seconds=time.perf_counter() - t0,
                          error=f"{type(e).__name__}: {e}"[:500],
                          violations=self.spec.constraints.violations(costs, None) if costs else {})
        acc = staged.accuracy
        drop = self.spec.baseline_accuracy - acc
        status = "ok" if staged.complete else "halved" if staged.halved else "stopped"
        log.debug("candidate %s (%s): %s, top-1 %.2f (drop %.2f) on %d samples in %.2f s", candidate.key,
                  candidate.tag or "-", status, acc, drop, staged.seen, time.perf_counter() - t0)
        return Result(candidate=candidate, status=status, accuracy=acc, acc_drop=drop,
                      costs=costs, violations=self.spec.constraints.violations(costs, drop),
                      seconds=time.perf_counter() - t0, samples=staged.seen, stage_correct=staged.stage_correct,
                      measured_on=where)
