"""RandomSearch: uniformly random levels per variable, the baseline every other strategy must beat."""

from __future__ import annotations

from hwsearch.search.prior import Prior
from hwsearch.search.results import Candidate, Result
from hwsearch.search.strategies._base import Problem, Strategy, register_strategy

__all__ = ["DEFAULT_N_TRIALS", "RandomSearch", "resolve_budget", "unreachable_note"]

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


@register_strategy("random")
class RandomSearch(Strategy):
    """Random levels per variable from a seeded ``numpy.random.Generator``, the baseline to beat.

    Lifecycle: ``ask(n)`` returns up to ``n`` distinct, never-asked candidates until ``n_trials``
    candidates have been asked; the draws do not depend on the results, so tells may come in any
    order (failed ones included) and a resumed run replays exactly. Each draw takes every variable's
    level uniformly from the levels the shared prior allows (``use_prior``; else from all levels), is
    projected onto the cost budgets with the exact cost model (never an over-budget evaluation) and,
    with the prior, screened by its predicted drop (when minimising a cost, draws are random points of
    the predicted frontier instead, :meth:`~hwsearch.search.prior.Prior.fill`); when ``max_retries`` draws find nothing new the
    strategy stops (its :meth:`notes` say so).

    Args:
        n_trials: accuracy evaluations to ask for (None: ``problem.eval_budget``, else
            :data:`DEFAULT_N_TRIALS`); never more than ``problem.eval_budget``.
        use_prior: draw from the prior's allowed (weighted) levels and screen by predicted drop.
        max_retries: draws per candidate before giving up.
        seed: seed of the generator.

    >>> RandomSearch(seed=3).get_params()["seed"]
    3
    """

    halving = True

    def __init__(self, *, n_trials: int | None = None, use_prior: bool = True, max_retries: int = 200,
                 seed: int = 0) -> None:
        self.n_trials = n_trials
        self.use_prior = use_prior
        self.max_retries = max_retries
        self.seed = seed

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        self._budget = resolve_budget(self.n_trials, problem)
        self._seen: set[str] = set()
        self._known = {r.candidate.key for r in problem.history}
        self._results: dict[str, Result] = {}
        self._notes: list[str] = []
        self._stopped = False
        prior = problem.prior if self.use_prior and problem.prior is not None else None
        self._prior = prior or Prior(problem.space, None, problem.constraints, problem.predict, mode="none")
        note = unreachable_note(problem)
        if note is not None:
            self._notes.append(note)
            self._stopped = True

    def _draw(self) -> Candidate | None:
        levels = self._prior.sample_unseen(self.rng, lambda key: key in self._seen or key in self._known,
                                           tries=self.max_retries, fill=self.problem.objective != "accuracy")
        return None if levels is None else Candidate(levels=levels, tag="random")

    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        while len(out) < n and not self.finished():
            cand = self._draw()
            if cand is None:
                self._stopped = True
                self._notes.append(f"stopped after {len(self._seen)} candidates: {self.max_retries} random draws "
                                   "found no new candidate within the cost budgets")
                break
            self._seen.add(cand.key)
            out.append(cand)
        return out

    def tell(self, candidate: Candidate, result: Result) -> None:
        self._seen.add(candidate.key)
        self._results.setdefault(candidate.key, result)
        self._prior.observe(result)

    def finished(self) -> bool:
        return self._stopped or len(self._seen) >= self._budget

    def best(self) -> Result | None:
        """The strategy's answer among the results told so far (None if none is feasible)."""
        return self.answer([*self.problem.history, *self._results.values()])

    def notes(self) -> list[str]:
        return list(self._notes)
