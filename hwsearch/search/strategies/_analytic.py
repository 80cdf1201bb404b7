"""A zero-evaluation strategy in the spirit of Kwon et al. 2022 (post-training pruning of transformers).

1. **Importance**: ``problem.importance`` gives, per variable and level, the Fisher-estimated loss of
   pruning that group to that level (:func:`hwsearch.search.fisher.level_importance`: mask gradients through
   the LIF surrogate on a few training batches; no accuracy evaluation).
2. **Global ranking**: every step of a variable from one allowed level to its next stronger one is a
   move with a loss (the importance it adds) and a gain (the cost it removes: the budgeted costs, each
   relative to its budget, or the objective's cost); moves are ranked by loss per gain, each variable's
   ratios made non-decreasing (its steps are taken in order).
3. **1-D scan**: the candidates are the prefixes of that ranking. With a cost budget the answer is the
   shortest prefix that meets every budget by the exact cost model (binary search on the prefix
   length: the cost only falls along it), asked once: one evaluation, to measure it. Without a budget
   (minimise a cost under the drop limit) the scan is a bisection on the prefix length with
   evaluations: the longest prefix found within the drop limit.

Its answer seeds the other strategies in ``compare``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate
from hwsearch.search.strategies._base import Problem, register_strategy
from hwsearch.search.strategies._stepwise import COST_BUDGET_KEYS, Steps, StepwiseStrategy

__all__ = ["AnalyticScan"]


@register_strategy("analytic")
class AnalyticScan(StepwiseStrategy):
    """Fisher-ranked global pruning with a 1-D scan (see the module docstring).

    Args:
        seed: unused (deterministic); kept for the common interface.
    """

    needs_importance = True

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def setup(self, problem: Problem) -> None:
        if problem.importance is None:
            raise UserError("the analytic strategy needs the Fisher importance of the levels; run it through "
                            "`hwsearch run --strategy analytic` (the driver computes it)")
        super().setup(problem)
        self.moves: list[tuple[float, str, int]] = []
        self.prefix = 0

    def _gain(self, before: Mapping[str, float], after: Mapping[str, float]) -> float:
        p = self.problem
        keys = [k for k in COST_BUDGET_KEYS if getattr(p.constraints, k) is not None]
        if not keys:
            keys = [p.objective if p.objective != "accuracy" else "param_mb"]
        return sum((float(before[k]) - float(after[k])) / max(float(p.baseline_costs[k]), 1e-12) for k in keys)

    def ranking(self) -> list[tuple[float, str, int]]:
        """Moves ``(loss per gain, variable, level)`` in the order the scan takes them."""
        p = self.problem
        imp = p.importance or {}
        moves = []
        for order, v in enumerate(p.space.variables):
            allowed = p.prior.allowed[v.name] if p.prior is not None else list(range(len(v.levels)))
            prev, ratio = 0, 0.0
            for lv in allowed[1:]:
                gain = self._gain(p.predict({v.name: prev}), p.predict({v.name: lv}))
                loss = max(float(imp[v.name][lv]) - float(imp[v.name][prev]), 0.0)
                ratio = max(ratio, loss / gain if gain > 0 else math.inf)
                moves.append((ratio, order, v.name, lv))
                prev = lv
        moves.sort(key=lambda m: (m[0], m[1], m[3]))
        return [(r, n, lv) for r, _, n, lv in moves if math.isfinite(r)]

    def levels_at(self, t: int) -> dict[str, int]:
        """The candidate of the first ``t`` moves."""
        out: dict[str, int] = {}
        for _, name, lv in self.moves[:t]:
            out[name] = lv
        return out

    def _steps(self) -> Steps:
        p = self.problem
        self.moves = self.ranking()
        n = len(self.moves)
        if self.has_cost_budget():
            if not p.cost_feasible(self.levels_at(n)):
                self._notes.append("analytic: even every ranked move misses the budget; raise it or add axes")
                return
            lo, hi = 0, n  # lo misses the budget (or is 0), hi meets it
            if p.cost_feasible({}):
                hi = 0
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if p.cost_feasible(self.levels_at(mid)):
                    hi = mid
                else:
                    lo = mid
            self.prefix = hi
            cand = Candidate(levels=self.levels_at(hi), tag="analytic")
            res = (yield [cand])[cand.key]
            self._notes.append(f"analytic: the first {hi} of {n} Fisher-ranked moves meet the budget "
                               f"({self.describe_costs(dict(cand.levels))}); measured drop {self.measured_drop(res):.3g} points")
            return
        lo, hi = 0, n + 1  # lo passes (the unpruned model), hi fails (assumed past the end)
        while hi - lo > 1 and self.budget_left() > 0:
            mid = (lo + hi) // 2
            cand = Candidate(levels=self.levels_at(mid), tag="analytic")
            res = (yield [cand])[cand.key]
            if self.is_feasible(cand, res):
                lo = mid
            else:
                hi = mid
        self.prefix = lo
        self._notes.append(f"analytic: the longest passing prefix holds {lo} of {n} Fisher-ranked moves "
                           f"({self.describe_costs(self.levels_at(lo))})")
