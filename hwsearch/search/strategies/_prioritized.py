"""PrimeSVT: the prioritized compression policy (methods.md §1), largest layer first, greedy with back-off.

The procedure, as the paper gives it, with the choices it leaves open marked:

1. Robustness profile: the sensitivity table (``problem.sensitivity``, or profiled here first: one batch
   of every single-variable candidate, tag ``profile``).
2. Order the variables by ``params`` (the layer size), largest first, ties by network ``order``
   (**choice**); ``order="network"`` walks them in network order instead.
3. Targets: variables with at least one level whose single-variable drop is <= ``max_acc_drop``; the
   others are skipped (named in :meth:`notes`). Without ``max_acc_drop`` every measured level counts.
4. Walk the targets. For each, start at its largest tolerated level (**choice**, the paper's) and ask the
   cumulative candidate (every level accepted so far plus this one), one candidate at a time. If its
   measured drop exceeds ``max_acc_drop`` (a failed evaluation counts as exceeding), back off to the
   next milder level and re-ask from the state before this variable. ``backoff="tolerated"`` (default,
   **choice**) steps only through levels the profile tolerated (a level that failed alone is not expected
   to pass with more pruned around it); ``backoff="every"`` steps through every milder level down to 1.
   If even the mildest fails, the variable stays unpruned.
5. After each accepted step, if the plan meets every cost budget (exact prediction), stop. If the
   targets run out first, the strategy finishes and :meth:`notes` says the budget could not be met and
   what was reached. Without any cost budget it walks every target (the most compression the drop
   limit allows). If the unpruned model already meets the budgets, it asks that one candidate and stops.

The plan PrimeSVT returns is :attr:`PrioritizedGreedy.final_levels` (the accepted levels);
:attr:`PrioritizedGreedy.steps` records every asked step (variable, level, rate, drops, accepted).
"""

from __future__ import annotations

import logging

from collections.abc import Sequence
from dataclasses import dataclass

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate, Result
from hwsearch.search.encoding import Variable
from hwsearch.search.strategies._base import Problem, register_strategy
from hwsearch.search.strategies._stepwise import Ladder, Steps, StepwiseStrategy

log = logging.getLogger(__name__)

__all__ = ["BACKOFFS", "ORDERS", "GreedyStep", "PrioritizedGreedy"]

ORDERS: tuple[str, ...] = ("largest_first", "network")
BACKOFFS: tuple[str, ...] = ("tolerated", "every")
TAG = "greedy"


@dataclass(frozen=True, slots=True, kw_only=True)
class GreedyStep:
    """One asked step of the walk.

    Attributes:
        variable: the variable being pruned.
        level: its level in this step; ``rate`` the realised rate.
        profile_drop: its single-variable drop from the table (points).
        measured_drop: the drop of the cumulative candidate (points; inf when the evaluation failed).
        accepted: whether the step was kept.
    """

    variable: str
    level: int
    rate: float
    profile_drop: float
    measured_drop: float
    accepted: bool


@register_strategy("prioritized")
class PrioritizedGreedy(StepwiseStrategy):
    """PrimeSVT's greedy walk over the layers, largest first (see the module docstring).

    Args:
        seed: unused by the procedure (deterministic); kept for the common interface.
        order: ``largest_first`` (by ``params``, ties by network order) or ``network``.
        backoff: ``tolerated`` (next milder level the profile tolerated) or ``every`` (next milder level).

    The back-off ladder of each variable is one :class:`~hwsearch.search.strategies._stepwise.Ladder`: a serial
    run asks one rung at a time (the paper's procedure); with ``n`` free workers the next ``n`` milder
    rungs are evaluated speculatively, and the walk still accepts the first rung within the max drop, so
    the plan is the same as the serial one's.
    """

    needs_sensitivity = True

    def __init__(self, *, seed: int = 0, order: str = "largest_first", backoff: str = "tolerated") -> None:
        self.seed = seed
        self.order = order
        self.backoff = backoff

    def setup(self, problem: Problem) -> None:
        if self.order not in ORDERS:
            raise UserError(f"prioritized: unknown order '{self.order}'; use one of {', '.join(ORDERS)}")
        if self.backoff not in BACKOFFS:
            raise UserError(f"prioritized: unknown backoff '{self.backoff}'; use one of {', '.join(BACKOFFS)}")
        super().setup(problem)
        self.steps: list[GreedyStep] = []
        self.final_levels: dict[str, int] = {}
        self.skipped: list[str] = []
        self.budget_met = False

    def answer(self, results: Sequence[Result]) -> Result | None:
        """PrimeSVT's own answer: the accepted plan (:attr:`final_levels`) when it is feasible.

        Until the walk has accepted a plan (or when it is not feasible: budget unmet), the best feasible
        result it was told stands in (the default rule).
        """
        if self.final_levels:
            key = Candidate(levels=self.final_levels).key
            mine = [r for r in results if r.candidate.key == key and r.feasible
                    and self.problem.cost_feasible(r.candidate.levels)]
            if mine:
                return mine[0]
        return super().answer(results)

    def ordered_variables(self) -> list[Variable]:
        """The walk order of the variables."""
        vs = self.problem.space.variables
        if self.order == "network":
            return sorted(vs, key=lambda v: v.order)
        return sorted(vs, key=lambda v: (-v.params, v.order))

    def _ladder(self, tolerated: list[int]) -> list[int]:
        if self.backoff == "tolerated":
            return sorted(tolerated, reverse=True)
        return list(range(max(tolerated), 0, -1))

    def _steps(self) -> Steps:
        p = self.problem
        table = yield from self._sensitivity()
        max_drop = self.max_drop()
        budgeted = self.has_cost_budget()
        if budgeted and p.cost_feasible({}):
            self.budget_met = True
            self._notes.append("the unpruned model already meets the budgets; nothing to prune")
            yield [Candidate(levels={}, tag=TAG)]
            return
        targets = []
        for v in self.ordered_variables():
            tolerated = table.tolerated_levels(v.name, max_drop)
            if tolerated:
                targets.append((v, tolerated))
            else:
                self.skipped.append(v.name)
        if self.skipped:
            names = ", ".join(self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "")
            self._notes.append(f"skipped {len(self.skipped)} variable(s) with no level within the max drop "
                               f"{max_drop:g} in the profile: {names}")
        accepted: dict[str, int] = {}
        for v, tolerated in targets:
            rungs = [(lv, Candidate(levels={**accepted, v.name: lv}, tag=TAG)) for lv in self._ladder(tolerated)]
            answers = yield Ladder([c for _, c in rungs], accept=lambda r: self.measured_drop(r) <= max_drop)
            for lv, cand in rungs:
                if cand.key not in answers:
                    break
                drop = self.measured_drop(answers[cand.key])
                ok = drop <= max_drop
                log.debug("greedy: %s at level %d (rate %.2f): drop %.3g (profile %.3g) -> %s", v.name, lv,
                          float(v.rates[lv]), drop, table.drop(v.name, lv), "accepted" if ok else "backed off")
                self.steps.append(GreedyStep(variable=v.name, level=lv, rate=float(v.rates[lv]),
                                             profile_drop=table.drop(v.name, lv), measured_drop=drop, accepted=ok))
                if ok:
                    accepted[v.name] = lv
                    break
            self.final_levels = dict(accepted)
            if v.name in accepted and budgeted and p.cost_feasible(accepted):
                self.budget_met = True
                self._notes.append(f"budget met after {len(accepted)} pruned variable(s) "
                                   f"({len(self.steps)} evaluations): {self.describe_costs(accepted)}")
                return
        if budgeted:
            last = next((s.measured_drop for s in reversed(self.steps) if s.accepted), 0.0)
            self._notes.append(f"budget could not be met: every one of {len(targets)} target variable(s) was tried; "
                               f"reached {self.describe_costs(accepted)} at an accuracy drop of {last:.3g} points "
                               f"(max {max_drop:g}); raise the budget or the max drop, or add axes")
        else:
            self._notes.append(f"no cost budget: pruned {len(accepted)} of {len(targets)} target(s) as far as the "
                               f"max drop allows; {self.describe_costs(accepted)}")
