"""TPESearch, and the ask/tell plumbing shared by the Optuna-backed strategies (TPE, NSGA-II).

One in-memory Optuna study per strategy, driven by ``study.ask()`` / ``study.tell()``: each trial
suggests one level per variable (``IntDistribution(0, n_levels - 1)``), constraints go through
``Trial.set_constraint`` (which Optuna 5's TPE and NSGA-II samplers read from the stored trial; the
``constraints_func`` argument is deprecated in 5.0 and not used). Constraint keys are the budget names
(``param_mb``, ``macs_g``, ``act_mb``: predicted cost minus budget), ``acc_drop`` (measured drop minus
``max_acc_drop``) and ``failed`` (1 for a failed evaluation, else 0); a trial is feasible when all are <= 0.

Trials and candidates: every candidate handed to the driver is distinct and backed by one or more
trials. A trial whose levels were already told is answered from the strategy's own record at once; one
whose levels are in flight waits for that result; with ``skip_infeasible`` a trial that breaks a cost
budget by prediction (exact for params and MACs) is told at once as infeasible (accuracy 0, its
predicted violations, user attr ``status=skipped``) and never reaches the driver. When the sampler
repeats itself (:data:`MAX_IDLE_DRAWS` trials in a row with nothing new, as a converged TPE does on a
small discrete space), a random unseen candidate from the strategy's seeded generator is enqueued as the
next trial (tag ``<strategy>:explore``). None of these short-cuts consume evaluations, and all depend
only on the seed and the sequence of asks and tells, so a replay is exact. Trials carry the user attrs
``key`` (candidate key), ``tag`` and ``status`` (``ok``, ``failed``, ``skipped``, ``duplicate``).
"""

from __future__ import annotations

import abc
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import ClassVar

import optuna
from optuna.distributions import IntDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import Trial

from hwsearch.errors import UserError
from hwsearch.results import Candidate, Result, candidate_key
from hwsearch.strategies._base import Problem, Strategy, register_strategy
from hwsearch.strategies._random import best_feasible, resolve_budget, unreachable_note

__all__ = ["MAX_IDLE_DRAWS", "RANDOM_TRIES", "OptunaSearch", "TPESearch"]

log = logging.getLogger(__name__)

#: Consecutive Optuna trials without a new candidate (duplicates, predicted-infeasible) before a random
#: unseen candidate is enqueued instead (a converged sampler on a small discrete space repeats itself).
MAX_IDLE_DRAWS = 10
#: Random draws looking for an unseen (and, with ``skip_infeasible``, cost-feasible) candidate before the
#: strategy stops for lack of new candidates.
RANDOM_TRIES = 200
#: Finite stand-in for an infinite or NaN constraint value (Optuna rejects NaN).
_BIG = 1e12


def _limit(value: float | None) -> float:
    """A constraint's scale for normalising its violation (1 when the limit is 0 or unset)."""
    return abs(float(value)) if value else 1.0


def _finite(value: float) -> float:
    if math.isnan(value):
        return _BIG
    return max(-_BIG, min(_BIG, value))


def warm_start_levels(items: Sequence[Candidate | Mapping[str, int]] | None, problem: Problem) -> list[dict[str, int]]:
    """Full level maps (every variable named) of the warm-start candidates, checked against the space."""
    out = []
    for item in items or ():
        levels = dict(item.levels if isinstance(item, Candidate) else item)
        for name, lv in levels.items():
            if name not in problem.space.names():
                raise UserError(f"warm-start candidate names unknown search variable '{name}'; "
                                "see `hwsearch groups` for the variables of this model")
            n = len(problem.space[name].levels)
            if not 0 <= int(lv) < n:
                raise UserError(f"warm-start level {lv} of {name} is outside 0..{n - 1}")
        out.append({v.name: int(levels.get(v.name, 0)) for v in problem.space.variables})
    return out


class OptunaSearch(Strategy):
    """Base of strategies driven by an Optuna sampler through an in-memory study (see module docs).

    Lifecycle: ``ask(n)`` returns up to ``n`` distinct new candidates, several trials may run at once;
    ``tell`` finishes every trial waiting on the candidate (any order; a failed result is told to
    Optuna as infeasible with accuracy 0). Finished once ``n_trials`` candidates were asked, at once when
    the cost budgets are unreachable (the smallest model breaks one), or when no new candidate can be
    found (:data:`RANDOM_TRIES` random draws fail) while nothing is in flight; :meth:`notes` say which.
    Subclasses set the attributes ``n_trials``, ``warm_start``,
    ``skip_infeasible`` and ``seed`` and provide the sampler, directions and objective values.
    """

    tag: ClassVar[str] = "optuna"
    n_trials: int | None
    warm_start: Sequence[Candidate | Mapping[str, int]] | None
    skip_infeasible: bool

    @abc.abstractmethod
    def _make_sampler(self) -> BaseSampler: ...

    @abc.abstractmethod
    def _directions(self) -> list[StudyDirection]: ...

    @abc.abstractmethod
    def _values(self, levels: Mapping[str, int], accuracy: float, result: Result | None) -> list[float]:
        """Objective values for a trial (``result`` None: skipped by prediction)."""

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        self._budget = resolve_budget(self.n_trials, problem)
        self._dists = {v.name: IntDistribution(0, len(v.levels) - 1) for v in problem.space.variables}
        self._space_size = math.prod(len(v.levels) for v in problem.space.variables)
        storage = InMemoryStorage()
        name = f"hwsearch-{self.name or type(self).__name__}"
        quiet = logging.getLogger("optuna.storages._in_memory")  # it logs every study it creates at INFO
        level = quiet.level
        quiet.setLevel(logging.WARNING)
        try:
            storage.create_new_study(self._directions(), study_name=name)
        finally:
            quiet.setLevel(level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            self._study = optuna.Study(study_name=name, storage=storage, sampler=self._make_sampler())
        for levels in warm_start_levels(self.warm_start, problem):
            self._study.enqueue_trial(levels, user_attrs={"tag": "warm_start"})
        self._pending: dict[str, list[Trial]] = {}  # in flight: key -> trials waiting for its result
        self._told: dict[str, tuple[list[float], dict[str, float], str]] = {}  # key -> what Optuna was told
        self._results: dict[str, Result] = {}  # first result per key, in tell order
        self._asked = 0
        self._skipped = 0
        self._explored = 0
        self._notes: list[str] = []
        self._stopped = False
        note = unreachable_note(problem)
        if note is not None:
            self._notes.append(note)
            self._stopped = True

    @property
    def study(self) -> optuna.Study:
        """The in-memory Optuna study (read it; do not ask or tell it directly)."""
        return self._study

    # ---- ask ---------------------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        idle = 0
        while len(out) < n and not self.finished():
            if len(self._told) + len(self._pending) >= self._space_size:
                self._stop(f"every one of the {self._space_size} candidates of the space was tried")
                break
            if idle >= MAX_IDLE_DRAWS:
                levels = self._random_unseen()
                if levels is None:
                    if not out and not self._pending:
                        self._stop(f"{RANDOM_TRIES} random draws found no new candidate"
                                   + (" within the cost budgets" if self.skip_infeasible else ""))
                    break
                self._study.enqueue_trial(levels, user_attrs={"tag": f"{self.tag}:explore"})
                self._explored += 1
                idle = 0
            cand = self._draw()
            if cand is None:
                idle += 1
                continue
            idle = 0
            out.append(cand)
        return out

    def _random_unseen(self) -> dict[str, int] | None:
        """Uniformly random levels never asked nor told (cost-feasible with ``skip_infeasible``), or None."""
        variables = self.problem.space.variables
        for _ in range(RANDOM_TRIES):
            levels = {v.name: int(self.rng.integers(len(v.levels))) for v in variables}
            key = candidate_key(levels)
            if key in self._told or key in self._pending:
                continue
            if self.skip_infeasible and not self.problem.cost_feasible(levels):
                continue
            return levels
        return None

    def _draw(self) -> Candidate | None:
        """One Optuna trial: a new candidate, or None when it was answered internally."""
        trial = self._study.ask(fixed_distributions=self._dists)
        levels = {name: int(trial.params[name]) for name in self._dists}
        key = candidate_key(levels)
        trial.set_user_attr("key", key)
        if key in self._told:
            values, constraints, _ = self._told[key]
            self._finish(trial, values, constraints, "duplicate")
            return None
        if key in self._pending:
            self._pending[key].append(trial)
            return None
        if self.skip_infeasible and not self.problem.cost_feasible(levels):
            told = (self._values(levels, 0.0, None), self._constraints(levels, None), "skipped")
            self._told[key] = told
            self._finish(trial, *told)
            self._skipped += 1
            return None
        self._pending[key] = [trial]
        self._asked += 1
        tag = str(trial.user_attrs.get("tag", self.tag))
        trial.set_user_attr("tag", tag)
        return Candidate(levels=levels, tag=tag)

    # ---- tell --------------------------------------------------------------------------------
    def tell(self, candidate: Candidate, result: Result) -> None:
        key = candidate.key
        self._results.setdefault(key, result)
        trials = self._pending.pop(key, [])
        if key not in self._told or self._told[key][2] == "skipped":
            levels = {name: int(candidate.levels.get(name, 0)) for name in self._dists}
            ok = result.ok and result.accuracy is not None
            accuracy = float(result.accuracy) if ok else 0.0  # type: ignore[arg-type]
            self._told[key] = (self._values(levels, accuracy, result), self._constraints(levels, result),
                               "ok" if ok else "failed")
        for trial in trials:
            self._finish(trial, *self._told[key])

    def _finish(self, trial: Trial, values: list[float], constraints: dict[str, float], status: str) -> None:
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        trial.set_user_attr("status", status)
        self._study.tell(trial, values[0] if len(values) == 1 else values)

    def _constraints(self, levels: Mapping[str, int], result: Result | None) -> dict[str, float]:
        """Constraint values, feasible when all <= 0; ``result`` None: skipped by prediction.

        Values are relative to their limit (cost excess / budget, drop excess / max drop), so that Optuna,
        which ranks infeasible trials by their summed violation, weighs MB, GMACs and accuracy points
        alike. A skipped trial's accuracy is unknown and counts as the worst possible drop: otherwise a
        mild, over-budget candidate would look better than every measured one and pull the sampler there.
        """
        p = self.problem
        c = p.constraints
        out = {k: v / _limit(getattr(c, k)) for k, v in c.cost_violations(p.predict(levels)).items()}
        ok = result is not None and result.ok and result.accuracy is not None
        if c.max_acc_drop is not None:
            if ok:
                drop = result.acc_drop if result.acc_drop is not None else p.baseline_accuracy - result.accuracy  # type: ignore[union-attr,operator]
            else:
                drop = p.baseline_accuracy  # failed, or unknown (skipped): as if accuracy were 0
            out["acc_drop"] = (float(drop) - float(c.max_acc_drop)) / _limit(c.max_acc_drop)
        out["failed"] = 0.0 if ok or result is None else 1.0
        return {k: _finite(v) for k, v in out.items()}

    # ---- state -------------------------------------------------------------------------------
    def _stop(self, why: str) -> None:
        self._stopped = True
        self._notes.append(f"stopped after {self._asked} evaluations: {why}")

    def finished(self) -> bool:
        return self._stopped or self._asked >= self._budget

    def best(self) -> Result | None:
        """The most accurate feasible result told so far that meets every budget (None if none)."""
        return best_feasible(self.problem, self._results.values())

    def results(self) -> list[Result]:
        """The first result told for each candidate, in tell order."""
        return list(self._results.values())

    def notes(self) -> list[str]:
        extra = [f"{self._skipped} sampled candidates broke a cost budget by prediction and were not evaluated"] \
            if self._skipped else []
        if self._explored:
            extra.append(f"{self._explored} random candidates were enqueued when the sampler kept repeating itself")
        return [*self._notes, *extra]


@register_strategy("tpe")
class TPESearch(OptunaSearch):
    """Optuna's TPE over per-variable levels; maximises accuracy subject to the budgets.

    Args:
        n_trials: accuracy evaluations to ask for (None: ``problem.eval_budget``, else 50); never more
            than ``problem.eval_budget``.
        n_startup_trials: random trials before TPE models the results (skipped trials count).
        multivariate: model the variables jointly (``TPESampler(multivariate=True)``).
        constant_liar: let running trials repel new ones (worth it when several run at once).
        warm_start: candidates (``Candidate`` or level maps) enqueued first, e.g. a greedy result; they
            are asked before any sampled one, in order. Level maps (``{"block.3.mlp.hidden": 2}``)
            keep the parameters plain data (a study TOML, the run's stored params).
        skip_infeasible: tell Optuna at once, without an evaluation, about trials that break a cost
            budget by prediction.
        seed: seed of the sampler.

    >>> TPESearch(seed=1, multivariate=True).get_params()["multivariate"]
    True
    """

    tag = "tpe"

    def __init__(self, *, n_trials: int | None = None, n_startup_trials: int = 10, multivariate: bool = False,
                 constant_liar: bool = True, warm_start: Sequence[Candidate | Mapping[str, int]] | None = None,
                 skip_infeasible: bool = True, seed: int = 0) -> None:
        self.n_trials = n_trials
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.constant_liar = constant_liar
        self.warm_start = warm_start
        self.skip_infeasible = skip_infeasible
        self.seed = seed

    def _make_sampler(self) -> BaseSampler:
        return TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate,
                          constant_liar=self.constant_liar)

    def _directions(self) -> list[StudyDirection]:
        return [StudyDirection.MAXIMIZE]

    def _values(self, levels: Mapping[str, int], accuracy: float, result: Result | None) -> list[float]:
        return [accuracy]
