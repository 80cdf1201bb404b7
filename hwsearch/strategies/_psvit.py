"""PSViT: uniform pruning, sensitivity analysis, then fine-grained per-layer rates (methods.md §2).

1. **Uniform** (tag ``uniform``): ``space.uniform_levels(r)`` for every grid rate ``r`` (``rates``; None:
   the sensitivity table's grid, else 0.1 ... 0.9), one batch. :attr:`PSViTSensitivity.uniform_curve`
   keeps the global trade-off curve (rate, accuracy, drop, memory saving, feasible).
2. **Sensitivity**: ``problem.sensitivity``, or profiled here (tag ``profile``).
3. **Fine-grained** (tag ``fine``), **choices**: a geometric threshold schedule
   ``t_i = base * f_i`` over ``threshold_factors`` taken in decreasing order (default 1, 1/2, 1/4, 1/8),
   ``base = max_acc_drop`` (without one: the largest finite single-variable drop in the table). At each
   threshold every variable takes its largest level whose *individual* drop is <= ``t_i`` (none: it stays
   unpruned); the combined candidate is asked (one at a time). If its measured drop is within
   ``max_acc_drop`` (and it meets the budgets, as it must to be asked) it is kept and the search stops:
   lower thresholds only prune less. Otherwise the threshold is relaxed (the next, lower one). A
   threshold whose choice misses a cost budget stops the schedule (lower thresholds prune less, so they
   miss it too); one that repeats the previous choice is skipped.

The answer is :meth:`best`: the most accurate feasible result among the uniform and fine-grained ones
(and the profile's, which are real measurements too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from hwsearch.errors import UserError
from hwsearch.results import Candidate
from hwsearch.space import DEFAULT_RATES
from hwsearch.strategies._base import Problem, register_strategy
from hwsearch.strategies._stepwise import StepwiseStrategy, Steps

__all__ = ["PSViTSensitivity", "FineStep", "UniformPoint"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UniformPoint:
    """One point of the uniform-rate curve (step 1); drop in points, saving a fraction."""

    rate: float
    levels: dict[str, int]
    accuracy: float | None
    drop: float
    mem_saving: float | None
    feasible: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FineStep:
    """One fine-grained attempt (step 3): the threshold, the per-variable levels it chose, the outcome."""

    threshold: float
    levels: dict[str, int] = field(default_factory=dict)
    measured_drop: float = math.inf
    feasible: bool = False


@register_strategy("sensitivity")
class PSViTSensitivity(StepwiseStrategy):
    """PSViT's three steps (see the module docstring).

    Args:
        seed: unused by the procedure (deterministic); kept for the common interface.
        rates: nominal grid of the uniform step (None: the table's grid, else 0.1 ... 0.9).
        threshold_factors: multiples of the base threshold tried in step 3 (sorted high to low).
    """

    needs_sensitivity = True

    def __init__(self, *, seed: int = 0, rates: Sequence[float] | None = None,
                 threshold_factors: Sequence[float] = (1.0, 0.5, 0.25, 0.125)) -> None:
        self.seed = seed
        self.rates = rates
        self.threshold_factors = threshold_factors

    def setup(self, problem: Problem) -> None:
        if not self.threshold_factors or any(not f > 0 for f in self.threshold_factors):
            raise UserError(f"sensitivity: threshold_factors must be positive, got {list(self.threshold_factors)}")
        if self.rates is not None and any(not 0.0 < r < 1.0 for r in self.rates):
            raise UserError(f"sensitivity: rates must lie in (0, 1), got {list(self.rates)}")
        super().setup(problem)
        self.uniform_curve: list[UniformPoint] = []
        self.fine_steps: list[FineStep] = []
        self.fine_levels: dict[str, int] | None = None

    def grid(self) -> list[float]:
        """The uniform step's rates."""
        if self.rates is not None:
            return sorted({float(r) for r in self.rates})
        if self.table is not None and self.table.grid():
            return self.table.grid()
        return [r for r in DEFAULT_RATES if r > 0]

    def _steps(self) -> Steps:
        yield from self._uniform()
        table = yield from self._sensitivity()
        p = self.problem
        max_drop = self.max_drop()
        finite = [e.acc_drop for e in table.entries if e.acc_drop is not None and math.isfinite(e.acc_drop)]
        base = max_drop if math.isfinite(max_drop) else max(finite, default=0.0)
        prev: str | None = None
        for f in sorted(self.threshold_factors, reverse=True):
            t = base * f
            levels = {}
            for v in p.space.variables:
                tolerated = table.tolerated_levels(v.name, t)
                if tolerated:
                    levels[v.name] = max(tolerated)
            cand = Candidate(levels=levels, tag="fine")
            if not cand.levels:
                self._notes.append(f"threshold {t:.3g}: no variable tolerates it alone; fine-grained step stops")
                break
            if not p.cost_feasible(cand.levels):
                self._notes.append(f"threshold {t:.3g}: per-layer rates miss the budget ({self.describe_costs(levels)}); "
                                   "lower thresholds prune less, fine-grained step stops")
                break
            if cand.key == prev:
                continue
            prev = cand.key
            drop = self.measured_drop((yield [cand])[cand.key])
            ok = drop <= max_drop
            self.fine_steps.append(FineStep(threshold=t, levels=dict(cand.levels), measured_drop=drop, feasible=ok))
            if ok:
                self.fine_levels = dict(cand.levels)
                self._notes.append(f"fine-grained: threshold {t:.3g} per layer gives a combined drop of {drop:.3g} "
                                   f"points; {self.describe_costs(levels)}")
                return
        self._notes.append(f"fine-grained: no threshold of {len(self.threshold_factors)} gave a feasible plan; "
                           "the best uniform or profiled result stands" if self.best() else
                           "fine-grained: no feasible plan found; raise the budget or the max drop")

    def _uniform(self) -> Steps:
        p = self.problem
        rated = [(r, Candidate(levels=p.space.uniform_levels(r), tag="uniform")) for r in self.grid()]
        rated = [(r, c) for r, c in rated if c.levels]
        answers = yield [c for _, c in rated]
        base = float(p.baseline_costs.get("param_mb", 0.0) or 0.0)
        for r, c in rated:
            res = answers[c.key]
            mb = float(p.predict(c.levels)["param_mb"])
            self.uniform_curve.append(UniformPoint(
                rate=r, levels=dict(c.levels), accuracy=res.accuracy if res.ok else None, drop=self.measured_drop(res),
                mem_saving=1.0 - mb / base if base else None, feasible=self.is_feasible(c, res)))
