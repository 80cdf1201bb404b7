"""A base for strategies that are a sequential procedure: a generator of candidate batches.

PrimeSVT, PSViT and the knapsack relaxation are procedures ("profile, then walk the layers, backing off
on failure"), awkward to write as ask/tell callbacks. :class:`StepwiseStrategy` lets a subclass write the
procedure as a generator (:meth:`StepwiseStrategy._steps`) that yields a *batch* (a list of candidates)
and receives, once every candidate of the batch has a result, a dict ``candidate.key -> Result``. The
base handles the ask/tell contract around it:

* ``ask(n)`` hands out up to ``n`` not-yet-asked candidates of the current batch (``[]`` while the rest
  is in flight); the generator moves on only when the whole batch is answered, so tells may arrive in any
  order and the procedure still sees the same answers: deterministic for the same results.
* A result already known (told before, e.g. a profiling candidate asked again, or results replayed by
  ``tell`` without ``ask`` on resume) answers the batch without asking again.
* ``eval_budget`` caps the distinct candidates asked or told; when it is spent the strategy finishes
  and :meth:`notes` says so.
* A failed result is an answer like any other; :meth:`measured_drop` reads it as an infinite drop.
* A :class:`Ladder` batch (candidates in preference order, e.g. PrimeSVT's back-off rates) is answered
  as soon as its first acceptable candidate is known: ``ask(n)`` hands out its candidates in order, so
  a serial run asks one rung at a time (exactly the sequential procedure) while ``n`` free workers
  evaluate the next ``n`` rungs speculatively; results of rungs past the accepted one are kept (told,
  stored, counted) but do not change the procedure's choice.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

from hwsearch.search.results import Candidate, Result
from hwsearch.search.profiling import SensitivityMeta, SensitivityTable, sensitivity_candidates
from hwsearch.search.strategies._base import Problem, Strategy

__all__ = ["COST_BUDGET_KEYS", "Answers", "Ladder", "Steps", "StepwiseStrategy"]


@dataclass(frozen=True, slots=True)
class Ladder:
    """Candidates in preference order; answered by the first whose result ``accept`` admits.

    The answers sent back hold every rung up to the accepted one (all rungs when none is accepted).
    """

    candidates: Sequence[Candidate]
    accept: Callable[[Result], bool]


Answers = dict[str, Result]
Batch = list[Candidate] | Ladder
Steps = Generator[Batch, Answers, None]
#: Constraints fields that are cost budgets (compared with :meth:`Problem.predict`).
COST_BUDGET_KEYS: tuple[str, ...] = ("param_mb", "macs_g", "act_mb")


class StepwiseStrategy(Strategy):
    """Strategy written as a generator of candidate batches (see the module docstring).

    Subclasses implement :meth:`_steps` and may append report lines to ``self._notes``. After
    :meth:`setup`, :attr:`told` maps every told candidate key to its (first) result.
    """

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        self.told: dict[str, Result] = {r.candidate.key: r for r in problem.history}
        self.table: SensitivityTable | None = problem.sensitivity
        self._notes: list[str] = []
        self._asked: set[str] = set()
        self._batch: list[Candidate] = []
        self._current_ladder: Ladder | None = None
        self._gen: Steps = self._steps()
        self._started = False
        self._done = False

    @abc.abstractmethod
    def _steps(self) -> Steps:
        """The procedure: ``answers = yield [candidates]`` per batch; return when done."""

    # ----------------------------------------------------------------------------------- ask / tell
    def ask(self, n: int) -> list[Candidate]:
        self._pump()
        out: list[Candidate] = []
        for c in self._batch:
            if len(out) >= n or self.budget_left() <= 0:
                break
            if c.key in self.told or c.key in self._asked:
                continue
            self._asked.add(c.key)
            out.append(c)
        return out

    def tell(self, candidate: Candidate, result: Result) -> None:
        self.told.setdefault(candidate.key, result)
        self._pump()

    def finished(self) -> bool:
        self._pump()
        return self._done or self.budget_left() <= 0

    def notes(self) -> list[str]:
        out = list(self._notes)
        if not self._done and self.budget_left() <= 0:
            out.append(f"evaluation budget of {self.problem.eval_budget} spent before the procedure finished; "
                       "the best result so far stands")
        return out

    def budget_left(self) -> float:
        """Evaluations the strategy may still ask for (inf without an ``eval_budget``); history is free."""
        if self.problem.eval_budget is None:
            return math.inf
        known = {r.candidate.key for r in self.problem.history}
        return self.problem.eval_budget - len((self._asked | self.told.keys()) - known)

    def _answered(self) -> Answers | None:
        """The answers of the current batch when it is decided (None while it waits for results)."""
        if self._current_ladder is None:
            if all(c.key in self.told for c in self._batch):
                return {c.key: self.told[c.key] for c in self._batch}
            return None
        answers: Answers = {}
        for c in self._batch:  # rungs in order: decided by the first accepted one
            if c.key not in self.told:
                return None
            answers[c.key] = self.told[c.key]
            if self._current_ladder.accept(answers[c.key]):
                break
        return answers

    def _pump(self) -> None:
        """Advance the procedure while its current batch is decided."""
        while not self._done:
            answers = self._answered()
            if answers is None:
                return
            try:
                batch = self._gen.send(answers) if self._started else next(self._gen)
            except StopIteration:
                self._done, self._batch, self._current_ladder = True, [], None
                return
            self._started = True
            self._current_ladder = batch if isinstance(batch, Ladder) else None
            unique: dict[str, Candidate] = {}
            for c in (batch.candidates if isinstance(batch, Ladder) else batch):
                unique.setdefault(c.key, c)
            self._batch = list(unique.values())

    # -------------------------------------------------------------------------------------- helpers
    def _sensitivity(self) -> Generator[Batch, Answers, SensitivityTable]:
        """The problem's table, or one profiled here (one batch of every single-variable candidate)."""
        if self.table is not None:
            return self.table
        p = self.problem
        answers = yield sensitivity_candidates(p.space)
        meta = SensitivityMeta(model=p.space.model, checkpoint_sha256=p.space.checkpoint_sha256)
        self.table = SensitivityTable.from_results(p.space, answers.values(), p.baseline_accuracy, meta,
                                                   baseline_costs=p.baseline_costs)
        self._notes.append(f"profiled {len(answers)} single-variable candidates (no sensitivity table was given)")
        return self.table

    def measured_drop(self, result: Result) -> float:
        """Accuracy drop of a result in points; inf when it failed; a lower bound when it was stopped."""
        if not (result.ok or result.stopped) or result.accuracy is None:
            return math.inf
        if result.acc_drop is not None:
            return float(result.acc_drop)
        return self.problem.baseline_accuracy - float(result.accuracy)

    def max_drop(self) -> float:
        """The allowed drop (inf when unconstrained)."""
        limit = self.problem.constraints.max_acc_drop
        return math.inf if limit is None else float(limit)

    def has_cost_budget(self) -> bool:
        return any(getattr(self.problem.constraints, k) is not None for k in COST_BUDGET_KEYS)

    def is_feasible(self, candidate: Candidate, result: Result) -> bool:
        """Ok, within the max drop and every cost budget (exact prediction) and no violation recorded."""
        if not result.ok or any(v > 1e-12 for v in result.violations.values()):
            return False
        return self.measured_drop(result) <= self.max_drop() + 1e-12 and self.problem.cost_feasible(candidate.levels)

    def best(self) -> Result | None:
        """The strategy's answer among everything it was told (see :meth:`Strategy.answer`)."""
        return self.answer(list(self.told.values()))

    def describe_costs(self, levels: dict[str, int]) -> str:
        """``param_mb 4.98 (budget 5), saving 21.3%`` for the budgeted costs of ``levels``."""
        costs = self.problem.predict(levels)
        parts = []
        for k in COST_BUDGET_KEYS:
            limit = getattr(self.problem.constraints, k)
            if limit is not None:
                parts.append(f"{k} {float(costs[k]):.4g} (budget {float(limit):.4g})")
        base = float(self.problem.baseline_costs.get("param_mb", 0.0) or 0.0)
        if base:
            parts.append(f"memory saving {100.0 * (1.0 - float(costs['param_mb']) / base):.1f}%")
        return ", ".join(parts)
