"""RandomSearch: uniformly random levels per variable, the baseline every other strategy must beat."""

from __future__ import annotations

from collections.abc import Iterable

from hwsearch.results import Candidate, Result
from hwsearch.strategies._base import Problem, Strategy, register_strategy

__all__ = ["DEFAULT_N_TRIALS", "RandomSearch", "best_feasible", "resolve_budget", "unreachable_note"]

#: Accuracy evaluations a search strategy asks for when neither it nor the problem sets a budget.
DEFAULT_N_TRIALS = 50


def resolve_budget(n_trials: int | None, problem: Problem) -> int:
    """The evaluations a strategy may ask for: its own ``n_trials``, capped by ``problem.eval_budget``."""
    own = DEFAULT_N_TRIALS if n_trials is None and problem.eval_budget is None else n_trials
    caps = [int(b) for b in (own, problem.eval_budget) if b is not None]
    return max(0, min(caps))


def unreachable_note(problem: Problem) -> str | None:
    """Why no candidate can meet the cost budgets, or None when the smallest model meets them.

    Costs only shrink as levels rise, so the candidate with every variable at its strongest level is
    the smallest reachable model: if it breaks a budget, every candidate does.
    """
    smallest = problem.space.max_levels()
    over = {k: v for k, v in problem.constraints.cost_violations(problem.predict(smallest)).items() if v > 1e-12}
    if not over:
        return None
    costs = problem.predict(smallest)
    what = ", ".join(f"{k} {float(costs[k]):.4g} > {getattr(problem.constraints, k):g}" for k in sorted(over))
    return f"no candidate can meet the cost budgets: the smallest reachable model has {what}"


def best_feasible(problem: Problem, results: Iterable[Result]) -> Result | None:
    """The most accurate feasible result that meets every cost budget (ties: fewer MB, then earlier)."""
    best: Result | None = None
    for r in results:
        if not (r.feasible and r.accuracy is not None and problem.cost_feasible(r.candidate.levels)):
            continue
        if best is None or (r.accuracy, -r.costs.get("param_mb", 0.0)) > (best.accuracy, -best.costs.get("param_mb", 0.0)):  # type: ignore[operator]
            best = r
    return best


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniformly random levels per variable from a seeded ``numpy.random.Generator``.

    Lifecycle: ``ask(n)`` returns up to ``n`` distinct, never-asked candidates until ``n_trials``
    candidates have been asked; the draws do not depend on the results, so tells may come in any
    order (failed ones included) and a resumed run replays exactly. With ``feasible_only`` a draw that
    breaks a cost budget by prediction is redrawn, at most ``max_retries`` times per candidate; when
    that many draws find nothing new the strategy stops (its :meth:`notes` say so).

    Args:
        n_trials: accuracy evaluations to ask for (None: ``problem.eval_budget``, else
            :data:`DEFAULT_N_TRIALS`); never more than ``problem.eval_budget``.
        feasible_only: redraw candidates that break a cost budget by prediction.
        max_retries: draws per candidate before giving up.
        seed: seed of the generator.

    >>> RandomSearch(seed=3).get_params()["seed"]
    3
    """

    def __init__(self, *, n_trials: int | None = None, feasible_only: bool = True, max_retries: int = 200,
                 seed: int = 0) -> None:
        self.n_trials = n_trials
        self.feasible_only = feasible_only
        self.max_retries = max_retries
        self.seed = seed

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        self._budget = resolve_budget(self.n_trials, problem)
        self._seen: set[str] = set()
        self._results: dict[str, Result] = {}
        self._notes: list[str] = []
        self._stopped = False
        note = unreachable_note(problem) if self.feasible_only else None
        if note is not None:
            self._notes.append(note)
            self._stopped = True

    def _draw(self) -> Candidate | None:
        variables = self.problem.space.variables
        for _ in range(max(1, self.max_retries)):
            levels = {v.name: int(self.rng.integers(len(v.levels))) for v in variables}
            cand = Candidate(levels=levels, tag="random")
            if cand.key in self._seen:
                continue
            if self.feasible_only and not self.problem.cost_feasible(levels):
                continue
            return cand
        return None

    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        while len(out) < n and not self.finished():
            cand = self._draw()
            if cand is None:
                self._stopped = True
                self._notes.append(f"stopped after {len(self._seen)} candidates: {self.max_retries} random draws "
                                   "found no new candidate" + (" within the cost budgets" if self.feasible_only else ""))
                break
            self._seen.add(cand.key)
            out.append(cand)
        return out

    def tell(self, candidate: Candidate, result: Result) -> None:
        self._seen.add(candidate.key)
        self._results.setdefault(candidate.key, result)

    def finished(self) -> bool:
        return self._stopped or len(self._seen) >= self._budget

    def best(self) -> Result | None:
        """The most accurate feasible result told so far (None if none)."""
        return best_feasible(self.problem, self._results.values())

    def notes(self) -> list[str]:
        return list(self._notes)
