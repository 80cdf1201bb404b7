"""LocalSearch: measured hill climbing from the best plan known so far.

The relaxations (knapsack, analytic) and the greedy stop where the additive profile prediction says
the drop limit is reached; the measured frontier is usually a little further (drops do not add up
exactly). Local search spends the remaining evaluations there: it takes the strategy's current answer
(the best feasible result told so far, the shared profile and warm starts included) and evaluates its
neighbours, best predicted first; the first that improves on it becomes the new answer, whose
neighbours come next (first improvement). When every neighbour of the answer is known, the
neighbours of the next-best feasible results follow (best first, the :data:`ELITE` best).

Neighbours move one or two variables by one allowed level of the shared prior:

* minimising a cost (``objective`` a cost key): one variable one level stronger, or one stronger and
  another one milder ("swap") when that still lowers the cost; ranked by predicted drop added per unit
  of cost saved (the additive profile prediction, :meth:`~hwsearch.search.prior.Prior.additive_drop`).
* top-1 within a budget (``objective="accuracy"``): one variable milder, or one milder and another
  stronger, when the result still meets every cost budget (exact cost model); ranked by predicted drop
  removed.

Neighbours the prior screens out (:meth:`~hwsearch.search.prior.Prior.plausible`) are skipped. When every
neighbour of the elite is known (a local optimum), or before any feasible result exists, it restarts
from a random point of the prior (like ``random``). Several candidates can be asked at once (the next
neighbours in rank order); everything depends only on the seed and the sequence of tells, so a resumed
run replays exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hwsearch.search.prior import Prior
from hwsearch.search.results import Candidate, Result, candidate_key, rank_feasible
from hwsearch.search.strategies._base import Problem, Strategy, register_strategy
from hwsearch.search.strategies._random import resolve_budget, unreachable_note
from hwsearch.search.strategies._tpe import warm_start_levels

__all__ = ["LocalSearch"]

TAG = "local"
#: Feasible results (best first) whose neighbours are explored before a random restart.
ELITE = 5


@register_strategy("local")
class LocalSearch(Strategy):
    """Hill climbing on measured results around the current answer (see the module docstring).

    Args:
        n_trials: accuracy evaluations to ask for (None: ``problem.eval_budget``, else the default of
            the sampling strategies); never more than ``problem.eval_budget``.
        swaps: also try moving two variables in opposite directions (one level each).
        use_prior: move between the levels the shared prior allows and rank by its prediction (else
            every level, ranked by cost alone).
        max_retries: prior draws per restart before giving up.
        seed: seed of the restarts.
    """

    def __init__(self, *, n_trials: int | None = None, swaps: bool = True, use_prior: bool = True,
                 max_retries: int = 200, seed: int = 0) -> None:
        self.n_trials = n_trials
        self.swaps = swaps
        self.use_prior = use_prior
        self.max_retries = max_retries
        self.seed = seed

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        self._budget = resolve_budget(self.n_trials, problem)
        self._known = {r.candidate.key for r in problem.history}
        self._asked: set[str] = set()
        self._results: dict[str, Result] = {}
        self._notes: list[str] = []
        self._stopped = False
        self._moves = 0
        self._restarts = 0
        prior = problem.prior if self.use_prior and problem.prior is not None else None
        self._prior = prior or Prior(problem.space, None, problem.constraints, problem.predict, mode="none")
        self._starts = [Candidate(levels=self._prior.project(lv) or lv, tag=f"{TAG}:warm")
                        for lv in warm_start_levels(problem.warm_start, problem)]
        note = unreachable_note(problem)
        if note is not None:
            self._notes.append(note)
            self._stopped = True

    # ---------------------------------------------------------------------------------- ask / tell
    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        while len(out) < n and not self.finished():
            cand = self._next()
            if cand is None:
                break
            self._asked.add(cand.key)
            out.append(cand)
        return out

    def tell(self, candidate: Candidate, result: Result) -> None:
        self._asked.add(candidate.key)
        self._results.setdefault(candidate.key, result)
        self._prior.observe(result)

    def finished(self) -> bool:
        return self._stopped or len(self._asked - self._known) >= self._budget

    def notes(self) -> list[str]:
        return [*self._notes, f"local search: {self._moves} neighbour(s) and {self._restarts} restart(s) asked"]

    # ---------------------------------------------------------------------------------- procedure
    def _seen(self, key: str) -> bool:
        return key in self._asked or key in self._known

    def _elite(self) -> list[Result]:
        """The best feasible results (within every cost budget by the exact prediction), best first."""
        p = self.problem
        pool = [r for r in [*p.history, *self._results.values()] if p.cost_feasible(r.candidate.levels)]
        return rank_feasible(pool, p.objective)[:ELITE]

    def _next(self) -> Candidate | None:
        for cand in self._starts:
            if not self._seen(cand.key):
                return cand
        elite = self._elite()
        for base in elite:
            for levels in self.neighbours(base.candidate.levels):
                if not self._seen(candidate_key(levels)):
                    self._moves += 1
                    return Candidate(levels=levels, tag=TAG)
        if elite and self._asked - self._known - self._results.keys():
            return None  # results in flight may move the elite: wait for them
        return self._restart()

    def _restart(self) -> Candidate | None:
        levels = self._prior.sample_unseen(self.rng, self._seen, tries=self.max_retries,
                                           fill=self.problem.objective != "accuracy")
        if levels is not None:
            self._restarts += 1
            return Candidate(levels=levels, tag=f"{TAG}:restart")
        if not self._asked - self._known - self._results.keys():
            self._stopped = True
            self._notes.append(f"stopped after {len(self._asked - self._known)} evaluations: every neighbour of the "
                               f"answer is known and {self.max_retries} random restarts found nothing new")
        return None

    def neighbours(self, levels: Mapping[str, int]) -> list[dict[str, int]]:
        """The moves from ``levels``, best predicted first (see the module docstring)."""
        p, prior = self.problem, self._prior
        cur = {v.name: int(levels.get(v.name, 0)) for v in p.space.variables}
        step: dict[str, tuple[int | None, int | None]] = {}
        for v in p.space.variables:
            allowed = prior.allowed[v.name]
            stronger = [a for a in allowed if a > cur[v.name]]
            milder = [a for a in allowed if a < cur[v.name]]
            step[v.name] = (stronger[0] if stronger else None, milder[-1] if milder else None)
        names = [v.name for v in p.space.variables]
        minimise = p.objective != "accuracy"
        moves: list[dict[str, int]] = []
        for a in names:
            up, down = step[a]
            first = up if minimise else down
            if first is None:
                continue
            moves.append({**cur, a: first})
            if self.swaps:
                for b in names:
                    second = step[b][1] if minimise else step[b][0]
                    if b != a and second is not None:
                        moves.append({**cur, a: first, b: second})
        base_drop = prior.additive_drop(cur)
        scored: list[tuple[float, int, dict[str, int]]] = []
        for i, m in enumerate(moves):
            if not prior.plausible(m):
                continue
            added = prior.additive_drop(m) - base_drop
            if minimise:
                gain = float(p.predict(cur)[p.objective]) - float(p.predict(m)[p.objective])
                if gain <= 0:
                    continue
                score = max(added, 0.0) / gain if math.isfinite(added) else math.inf
            else:
                if not p.cost_feasible(m):
                    continue
                score = added
            scored.append((score, i, m))
        scored.sort(key=lambda t: (t[0], t[1]))
        return [{n: lv for n, lv in m.items() if lv} for _, _, m in scored]
