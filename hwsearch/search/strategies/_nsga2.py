"""NSGA2Search: multi-objective search (accuracy against costs) with Optuna's NSGA-II sampler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optuna.samplers import BaseSampler, NSGAIISampler
from optuna.study import StudyDirection

from hwsearch.errors import UserError
from hwsearch.search.results import COST_KEYS, Candidate, Result, non_dominated
from hwsearch.search.strategies._base import Problem, register_strategy
from hwsearch.search.strategies._tpe import OptunaSearch

__all__ = ["NSGA2Search"]


@register_strategy("nsga2")
class NSGA2Search(OptunaSearch):
    """NSGA-II over per-variable levels: maximise accuracy, minimise each of ``problem.objectives``.

    Same ask/tell plumbing and constraint handling as ``tpe`` (``Trial.set_constraint``; NSGA-II ranks
    feasible trials first, infeasible ones by their total violation). Objective values of a trial are
    ``[accuracy, *costs]`` (exact predicted costs); an early-stopped trial is PRUNED (its accuracy is only
    bounded) and NSGA-II, which ranks COMPLETE trials only, leaves it out of the population. :meth:`pareto` is the trade-off found; :meth:`best` is what the
    driver keeps: the most accurate feasible result meeting every budget.

    Args:
        n_trials: accuracy evaluations to ask for (None: ``problem.eval_budget``, else 50); never more
            than ``problem.eval_budget``.
        population_size: individuals per generation (skipped trials count as individuals).
        mutation_prob: per-variable mutation probability (None: 1 / number of variables).
        crossover_prob: probability that a child comes from crossover rather than a copy.
        warm_start: candidates (``Candidate`` or level maps, the latter plain data) enqueued first.
        use_prior: search only the levels the shared prior allows; the first population is drawn from it.
        seed: seed of the sampler.

    >>> NSGA2Search(population_size=8).get_params()["population_size"]
    8
    """

    tag = "nsga2"

    def __init__(self, *, n_trials: int | None = None, population_size: int = 20, mutation_prob: float | None = None,
                 crossover_prob: float = 0.9, warm_start: Sequence[Candidate | Mapping[str, int]] | None = None,
                 use_prior: bool = True, seed: int = 0) -> None:
        self.n_trials = n_trials
        self.population_size = population_size
        self.mutation_prob = mutation_prob
        self.crossover_prob = crossover_prob
        self.warm_start = warm_start
        self.use_prior = use_prior
        self.seed = seed

    def _startup_count(self) -> int:
        return int(self.population_size) if self.use_prior and self.problem.prior is not None else 0

    def setup(self, problem: Problem) -> None:
        if self.population_size < 2:
            raise UserError(f"nsga2 population_size must be at least 2, got {self.population_size}")
        self._objectives = list(problem.objectives)
        if not self._objectives:
            raise UserError("nsga2 needs at least one cost objective; e.g. objectives = [\"param_mb\"]")
        unknown = [k for k in self._objectives if k not in COST_KEYS]
        if unknown:
            raise UserError(f"unknown cost objective '{unknown[0]}'; choose from {', '.join(COST_KEYS)}")
        super().setup(problem)

    def _make_sampler(self) -> BaseSampler:
        return NSGAIISampler(seed=self.seed, population_size=self.population_size, mutation_prob=self.mutation_prob,
                             crossover_prob=self.crossover_prob)

    def _directions(self) -> list[StudyDirection]:
        return [StudyDirection.MAXIMIZE, *[StudyDirection.MINIMIZE] * len(self._objectives)]

    def _values(self, result: Result) -> list[float] | None:
        if not result.ok or result.accuracy is None:
            return None
        predicted = self.problem.predict(result.candidate.levels)
        return [float(result.accuracy), *(float(predicted[k]) for k in self._objectives)]

    def pareto(self) -> list[Result]:
        """Feasible results that no other feasible result dominates (accuracy up, every objective down).

        One result per candidate, sorted by the first objective (smallest first).
        """
        pool = [r for r in self.results() if r.feasible and r.accuracy is not None
                and self.problem.cost_feasible(r.candidate.levels)]
        return sorted(non_dominated(pool, self._point), key=lambda r: self._point(r)[1:])

    def _point(self, r: Result) -> tuple[float, ...]:
        predicted = self.problem.predict(r.candidate.levels)
        return (-float(r.accuracy), *(float(r.costs.get(k, predicted[k])) for k in self._objectives))  # type: ignore[arg-type]
