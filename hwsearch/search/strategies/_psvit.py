"""PSViT: uniform pruning, sensitivity analysis, then fine-grained per-layer rates (methods.md §2).

1. **Uniform** (tag ``uniform``): ``space.uniform_levels(r)`` for every grid rate ``r`` (``rates``; None:
   the sensitivity table's grid, else 0.1 ... 0.9), one batch. :attr:`PSViTSensitivity.uniform_curve`
   keeps the global trade-off curve (rate, accuracy, drop, memory saving, feasible).
2. **Sensitivity**: ``problem.sensitivity``, or profiled here (tag ``profile``).
3. **Fine-grained** (tag ``fine``), **choices**: a per-layer drop threshold ``t`` and a rate cap ``c``
   pick, for every variable, its largest level whose *individual* drop is <= ``t`` and whose realised
   rate is <= ``c`` (none: unpruned). The options, ordered from strongest to mildest (each per variable
   no stronger than the one before, so the combined drop is expected to fall along the list):

   * **threshold relaxation** (PSViT's rule, no cap): ``t`` over the distinct finite single-variable
     drops <= ``base`` (``base = max_acc_drop``; without one, the largest finite drop), descending;
   * then **rate relaxation** at the mildest threshold: ``c`` over the distinct realised rates,
     descending. Single-layer profiles call many layers free (drop <= 0 at 90% on a small evaluation
     subset), and their sum is not; capping the rate relaxes those until the budget binds.

   Options that miss a cost budget (exact prediction) or repeat the previous choice are left out. The
   search, one candidate at a time: ask the strongest (``t = base``, PSViT's first try); if its combined
   drop is within ``max_acc_drop`` stop. Else relax: ask the mildest; if even that fails, stop (none
   passes). Else bisect between the last failing and the first passing option until they are adjacent:
   :attr:`PSViTSensitivity.fine_levels` is the strongest passing choice (the most compression within the
   drop), found in about ``2 + log2(#options)`` evaluations.

The answer is :meth:`best`: the most accurate feasible result among the uniform and fine-grained ones
(and the profile's, which are real measurements too).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate
from hwsearch.search.profiling import SensitivityTable
from hwsearch.search.encoding import DEFAULT_RATES
from hwsearch.search.strategies._base import Problem, register_strategy
from hwsearch.search.strategies._stepwise import Answers, Steps, StepwiseStrategy

__all__ = ["FineStep", "PSViTSensitivity", "UniformPoint"]


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
    """One fine-grained attempt (step 3): threshold and rate cap, the levels they chose, the outcome."""

    threshold: float
    cap: float = 1.0
    levels: dict[str, int] = field(default_factory=dict)
    measured_drop: float = math.inf
    feasible: bool = False


@register_strategy("sensitivity")
class PSViTSensitivity(StepwiseStrategy):
    """PSViT's three steps (see the module docstring).

    Args:
        seed: unused by the procedure (deterministic); kept for the common interface.
        rates: nominal grid of the uniform step (None: the table's grid, else 0.1 ... 0.9).
    """

    needs_sensitivity = True

    def __init__(self, *, seed: int = 0, rates: Sequence[float] | None = None) -> None:
        self.seed = seed
        self.rates = rates

    def setup(self, problem: Problem) -> None:
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
        options = self.options(table)
        if not options:
            self._notes.append("fine-grained: no per-layer threshold gives a choice that meets the budgets; "
                               + ("the best uniform or profiled result stands" if self.best() else
                                  "no feasible plan found; raise the budget or the max drop"))
            return
        n = len(options)
        strongest: int | None = None
        if (yield from self._try(options[0])):
            strongest = 0
        elif n > 1 and (yield from self._try(options[n - 1])):
            lo, hi = 0, n - 1  # lo fails, hi passes
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if (yield from self._try(options[mid])):
                    hi = mid
                else:
                    lo = mid
            strongest = hi
        if strongest is not None:
            opt = options[strongest]
            self.fine_levels = dict(opt.levels)
            cap = f", rate cap {opt.cap:.3g}" if opt.cap < 1.0 else ""
            self._notes.append(f"fine-grained: per-layer threshold {opt.threshold:.3g}{cap} is the strongest of {n} "
                               f"options within the max drop ({len(self.fine_steps)} tried by bisection); "
                               f"{self.describe_costs(opt.levels)}")
        else:
            self._notes.append("fine-grained: even the mildest per-layer choice that meets the budgets exceeds the "
                               "max drop; " + ("the best uniform or profiled result stands" if self.best() else
                                               "no feasible plan found; raise the budget or the max drop"))

    def _try(self, option: FineStep) -> Generator[list[Candidate], Answers, bool]:
        """Ask one option's combined candidate; whether its drop is within the max drop."""
        cand = Candidate(levels=option.levels, tag="fine")
        drop = self.measured_drop((yield [cand])[cand.key])
        ok = drop <= self.max_drop()
        self.fine_steps.append(FineStep(threshold=option.threshold, cap=option.cap, levels=dict(cand.levels),
                                        measured_drop=drop, feasible=ok))
        return ok

    def options(self, table: SensitivityTable) -> list[FineStep]:
        """The choices step 3 searches, strongest first (see the module docstring); outcomes unset."""
        p = self.problem
        finite = sorted({float(e.acc_drop) for e in table.entries
                         if e.acc_drop is not None and math.isfinite(e.acc_drop)}, reverse=True)
        base = self.max_drop() if math.isfinite(self.max_drop()) else (finite[0] if finite else 0.0)
        thresholds = [d for d in finite if d <= base]
        if not thresholds:
            return []
        per_var = {v.name: [(e.level, float(e.acc_drop), e.rate) for e in table.entries
                            if e.variable == v.name and e.acc_drop is not None] for v in p.space.variables}

        def choose(t: float, cap: float) -> dict[str, int]:
            out = {}
            for name, rows in per_var.items():
                ok = [lv for lv, d, r in rows if d <= t and r <= cap + 1e-12]
                if ok:
                    out[name] = max(ok)
            return out

        rates = sorted({r for rows in per_var.values() for _, _, r in rows}, reverse=True)
        steps = [(t, 1.0) for t in thresholds] + [(thresholds[-1], c) for c in rates[1:]]
        options: list[FineStep] = []
        previous: dict[str, int] | None = None
        for t, cap in steps:
            levels = choose(t, cap)
            if levels != previous and levels and p.cost_feasible(levels):
                options.append(FineStep(threshold=t, cap=cap, levels=levels))
            previous = levels
        return options

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
