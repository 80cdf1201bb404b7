"""TPESearch, and the ask/tell plumbing shared by the Optuna-backed strategies (TPE, NSGA-II).

One in-memory Optuna study per strategy, driven by ``study.ask()`` / ``study.tell()``. Each trial
suggests, per variable, an index into the levels the shared prior allows (``problem.prior.allowed``;
every level without a prior or with ``use_prior=False``), so the sampler never spends trials on levels a
group cannot tolerate alone. Variables with one allowed level are fixed and not suggested.

Optuna only ever hears true values:

* an evaluated candidate is COMPLETE with its objective values (``accuracy``, or the cost being
  minimised) and its constraints via ``Trial.set_constraint`` (cost excess / budget, drop excess /
  max drop: exact predictions and measurements, feasible when all <= 0);
* an early-stopped candidate (status ``stopped``) is PRUNED with its accuracy upper bound as the
  intermediate value and its drop excess lower bound as the constraint; in cost mode (single objective)
  its objective is known exactly, so it is COMPLETE with the true cost and that bound;
* a failed evaluation is FAIL;
* a sampled trial that breaks a cost budget is never evaluated nor given a value: it is closed as FAIL
  (user attr ``status=projected``) and the candidate projected onto the budgets with the exact cost
  model (:meth:`~hwsearch.search.prior.Prior.project`) is enqueued as the next trial; one whose predicted drop
  is far beyond the limit (:meth:`~hwsearch.search.prior.Prior.plausible`) is closed as FAIL (``screened``).

Start-up trials (TPE's ``n_startup_trials``, NSGA-II's first population) are drawn from the prior
(projected and screened), after any warm starts (``warm_start`` and ``problem.warm_start``, enqueued
first). Known results that are not profile entries (e.g. the greedy's answer handed over by
``compare``) are added to the study as completed trials. When the sampler repeats itself
(:data:`MAX_IDLE_DRAWS` trials in a row with nothing new), a prior sample is enqueued (tag
``<strategy>:explore``). All of it depends only on the seed and the sequence of asks and tells, so a
replay is exact. Trials carry the user attrs ``key``, ``tag``, ``status`` and, when evaluated, the
rates per group, the drop and the costs.
"""

from __future__ import annotations

import abc
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import ClassVar

import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import Trial, TrialState, create_trial

from hwsearch.errors import UserError
from hwsearch.search.prior import Prior
from hwsearch.search.results import Candidate, Result, candidate_key
from hwsearch.search.strategies._base import Problem, Strategy, register_strategy
from hwsearch.search.strategies._random import resolve_budget, unreachable_note

__all__ = ["MAX_IDLE_DRAWS", "RANDOM_TRIES", "OptunaSearch", "TPESearch", "warm_start_levels"]

log = logging.getLogger(__name__)

#: Consecutive Optuna trials without a new candidate (duplicates, projected, screened) before a prior
#: sample is enqueued instead (a converged sampler on a small discrete space repeats itself).
MAX_IDLE_DRAWS = 10
#: Prior draws looking for an unseen candidate before the strategy stops for lack of new candidates.
RANDOM_TRIES = 200
#: Finite stand-in for an infinite or NaN constraint value (Optuna rejects NaN).
_BIG = 1e12

#: What Optuna was told about a candidate: state, values, constraints, intermediate (step, value), status.
_Told = tuple[TrialState, "list[float] | None", dict[str, float], "tuple[int, float] | None", str]


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
    ``tell`` finishes every trial waiting on the candidate (any order). Finished once ``n_trials``
    candidates were asked, at once when the cost budgets are unreachable (the smallest model breaks
    one), or when no new candidate can be found (:data:`RANDOM_TRIES` prior draws fail) while nothing is
    in flight; :meth:`notes` say which. Subclasses set the attributes ``n_trials``, ``warm_start``,
    ``use_prior``, ``n_startup`` and ``seed`` and provide the sampler, directions and objective values.
    """

    tag: ClassVar[str] = "optuna"
    halving = True
    n_trials: int | None
    warm_start: Sequence[Candidate | Mapping[str, int]] | None
    use_prior: bool

    @abc.abstractmethod
    def _make_sampler(self) -> BaseSampler: ...

    @abc.abstractmethod
    def _directions(self) -> list[StudyDirection]: ...

    @abc.abstractmethod
    def _values(self, result: Result) -> list[float] | None:
        """Objective values of an evaluated result; None when they are not known exactly (stopped)."""

    def _startup_count(self) -> int:
        """Start-up trials drawn from the prior."""
        return 0

    def setup(self, problem: Problem) -> None:
        super().setup(problem)
        self._budget = resolve_budget(self.n_trials, problem)
        prior = problem.prior if self.use_prior and problem.prior is not None else None
        self._prior = prior or Prior(problem.space, None, problem.constraints, problem.predict, mode="none")
        self._allowed = {v.name: list(self._prior.allowed[v.name]) for v in problem.space.variables}
        self._dists: dict[str, BaseDistribution] = {
            n: IntDistribution(0, len(a) - 1) for n, a in self._allowed.items() if len(a) > 1}
        self._space_size = math.prod(len(a) for a in self._allowed.values())
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
        self._pending: dict[str, list[Trial]] = {}  # in flight: key -> trials waiting for its result
        self._told: dict[str, _Told] = {}  # key -> what Optuna was told
        self._results: dict[str, Result] = {}  # first result per key, in tell order
        self._asked = 0
        self._projected = 0
        self._screened = 0
        self._explored = 0
        self._notes: list[str] = []
        self._stopped = False
        for r in problem.history:  # known multi-group results (e.g. another strategy's answer)
            self._results.setdefault(r.candidate.key, r)
            if r.candidate.tag != "profile" and self._representable(r.candidate.levels):
                told = self._outcome(r)
                self._told[r.candidate.key] = told
                self._study.add_trial(self._frozen(r.candidate.levels, told))
        warm = [*problem.warm_start, *warm_start_levels(self.warm_start, problem)]
        for levels in warm:
            proj = self._prior.project(levels)
            if proj is not None and candidate_key(proj) not in self._told:
                self._enqueue(proj, "warm_start")
        self._fill = problem.objective != "accuracy"
        for _ in range(self._startup_count()):
            sampled = self._prior.sample(self.rng, fill=self._fill)
            if sampled is not None:
                self._enqueue(sampled, f"{self.tag}:prior")
        note = unreachable_note(problem)
        if note is not None:
            self._notes.append(note)
            self._stopped = True

    @property
    def study(self) -> optuna.Study:
        """The in-memory Optuna study (read it; do not ask or tell it directly)."""
        return self._study

    # ---- encoding ----------------------------------------------------------------------------
    def _representable(self, levels: Mapping[str, int]) -> bool:
        return all(int(levels.get(n, 0)) in a for n, a in self._allowed.items())

    def _params(self, levels: Mapping[str, int]) -> dict[str, int]:
        return {n: self._allowed[n].index(int(levels.get(n, 0))) for n in self._dists}

    def _levels(self, params: Mapping[str, int]) -> dict[str, int]:
        out = {n: a[0] for n, a in self._allowed.items() if len(a) == 1}
        out.update({n: self._allowed[n][int(params[n])] for n in self._dists})
        return out

    def _enqueue(self, levels: Mapping[str, int], tag: str) -> None:
        if self._representable(levels):
            self._study.enqueue_trial(self._params(levels), user_attrs={"tag": tag}, skip_if_exists=False)

    # ---- ask ---------------------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        out: list[Candidate] = []
        idle = 0
        while len(out) < n and not self.finished():
            if len(self._told) + len(self._pending) >= self._space_size:
                self._stop(f"every one of the {self._space_size} candidates of the space was tried")
                break
            if idle >= MAX_IDLE_DRAWS:
                levels = self._unseen_sample()
                if levels is None:
                    if not out and not self._pending:
                        self._stop(f"{RANDOM_TRIES} prior draws found no new candidate within the budgets")
                    break
                self._enqueue(levels, f"{self.tag}:explore")
                self._explored += 1
                idle = 0
            cand = self._draw()
            if cand is None:
                idle += 1
                continue
            idle = 0
            out.append(cand)
        return out

    def _unseen_sample(self) -> dict[str, int] | None:
        """A projected, plausible prior sample never asked nor told, or None."""
        for _ in range(RANDOM_TRIES):
            levels = self._prior.sample(self.rng, tries=1, fill=self._fill)
            if levels is None:
                continue
            key = candidate_key(levels)
            if key not in self._told and key not in self._pending:
                return levels
        return None

    def _close(self, trial: Trial, status: str, **attrs: object) -> None:
        trial.set_user_attr("status", status)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self._study.tell(trial, state=TrialState.FAIL)

    def _draw(self) -> Candidate | None:
        """One Optuna trial: a new candidate, or None when it was answered or closed internally."""
        trial = self._study.ask(fixed_distributions=self._dists)
        levels = self._levels(trial.params)
        key = candidate_key(levels)
        trial.set_user_attr("key", key)
        if key in self._told:
            self._finish(trial, self._told[key], duplicate=True)
            return None
        if key in self._pending:
            self._pending[key].append(trial)
            return None
        if not self._prior.cost_feasible(levels):
            proj = self._prior.project(levels)
            if proj is None:
                self._close(trial, "unreachable")
                return None
            self._projected += 1
            self._close(trial, "projected", projected_to=candidate_key(proj))
            self._enqueue(proj, f"{self.tag}:projected")
            return None
        if not self._prior.plausible(levels):
            self._screened += 1
            self._close(trial, "screened", predicted_drop=round(self._prior.predicted_drop(levels), 3))
            return None
        self._pending[key] = [trial]
        self._asked += 1
        tag = str(trial.user_attrs.get("tag", self.tag))
        trial.set_user_attr("tag", tag)
        return Candidate(levels={k: v for k, v in levels.items() if v}, tag=tag)

    # ---- tell --------------------------------------------------------------------------------
    def tell(self, candidate: Candidate, result: Result) -> None:
        key = candidate.key
        self._results.setdefault(key, result)
        self._prior.observe(result)
        trials = self._pending.pop(key, [])
        if key not in self._told:
            self._told[key] = self._outcome(result)
        for trial in trials:
            self._finish(trial, self._told[key])

    def _outcome(self, result: Result) -> _Told:
        """What Optuna is told about ``result`` (true values only; see the module docstring)."""
        cons = self._constraints(result)
        if result.ok and result.accuracy is not None:
            return TrialState.COMPLETE, self._values(result), cons, None, "ok"
        if result.partial and result.accuracy is not None:  # stopped or halved: an accuracy upper bound
            values = self._values(result)
            if values is not None:
                return TrialState.COMPLETE, values, cons, None, result.status
            return TrialState.PRUNED, None, cons, (int(result.samples), float(result.accuracy)), result.status
        return TrialState.FAIL, None, cons, None, "failed"

    def _finish(self, trial: Trial, told: _Told, *, duplicate: bool = False) -> None:
        state, values, constraints, intermediate, status = told
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        trial.set_user_attr("status", "duplicate" if duplicate else status)
        if state is TrialState.PRUNED and intermediate is not None and len(self._directions()) == 1:
            trial.report(intermediate[1], intermediate[0])  # Optuna keeps intermediate values single-objective
        if state is TrialState.COMPLETE:
            self._study.tell(trial, values[0] if values is not None and len(values) == 1 else values)
        else:
            self._study.tell(trial, state=state)

    def _frozen(self, levels: Mapping[str, int], told: _Told) -> optuna.trial.FrozenTrial:
        state, values, constraints, intermediate, status = told
        return create_trial(state=state, values=values if state is TrialState.COMPLETE else None,
                            params=self._params(levels), distributions=dict(self._dists),
                            user_attrs={"status": status, "tag": "known", "key": candidate_key(levels)},
                            intermediate_values=None if intermediate is None or len(self._directions()) > 1
                            else {intermediate[0]: intermediate[1]},
                            constraints=constraints)

    def _constraints(self, result: Result) -> dict[str, float]:
        """Constraint values relative to their limits (cost excess / budget, drop excess / max drop).

        Optuna ranks infeasible trials by their summed violation, so MB, GMACs and accuracy points are
        weighed alike. Costs are the exact prediction; the drop is measured (a lower bound when the
        evaluation stopped early); a failed evaluation has no drop constraint.
        """
        p = self.problem
        c = p.constraints
        out = {k: v / _limit(getattr(c, k)) for k, v in c.cost_violations(p.predict(result.candidate.levels)).items()}
        if c.max_acc_drop is not None and result.acc_drop is not None and (result.ok or result.partial):
            out["acc_drop"] = (float(result.acc_drop) - float(c.max_acc_drop)) / _limit(c.max_acc_drop)
        return {k: _finite(v) for k, v in out.items()}

    # ---- state -------------------------------------------------------------------------------
    def _stop(self, why: str) -> None:
        self._stopped = True
        self._notes.append(f"stopped after {self._asked} evaluations: {why}")

    def finished(self) -> bool:
        return self._stopped or self._asked >= self._budget

    def best(self) -> Result | None:
        """The strategy's answer among everything told so far (None if nothing feasible)."""
        return self.answer(list(self._results.values()))

    def results(self) -> list[Result]:
        """The first result told for each candidate, in tell order."""
        return list(self._results.values())

    def notes(self) -> list[str]:
        extra = []
        if self._projected:
            extra.append(f"{self._projected} sampled candidates broke a cost budget and were projected onto it")
        if self._screened:
            extra.append(f"{self._screened} sampled candidates were not evaluated: predicted drop far beyond the limit")
        if self._explored:
            extra.append(f"{self._explored} prior samples were enqueued when the sampler kept repeating itself")
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
        use_prior: search only the levels the shared prior allows and draw start-up trials from it.
        seed: seed of the sampler.

    Objective: top-1 (maximised) when ``problem.objective`` is ``accuracy``, else that cost
    (minimised, with the drop limit as a constraint).

    >>> TPESearch(seed=1, multivariate=True).get_params()["multivariate"]
    True
    """

    tag = "tpe"

    def __init__(self, *, n_trials: int | None = None, n_startup_trials: int = 10, multivariate: bool = False,
                 constant_liar: bool = True, warm_start: Sequence[Candidate | Mapping[str, int]] | None = None,
                 use_prior: bool = True, seed: int = 0) -> None:
        self.n_trials = n_trials
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.constant_liar = constant_liar
        self.warm_start = warm_start
        self.use_prior = use_prior
        self.seed = seed

    def _startup_count(self) -> int:
        return int(self.n_startup_trials) if self.use_prior and self.problem.prior is not None else 0

    def _make_sampler(self) -> BaseSampler:
        return TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate,
                          constant_liar=self.constant_liar)

    def _directions(self) -> list[StudyDirection]:
        return [StudyDirection.MAXIMIZE if self.problem.objective == "accuracy" else StudyDirection.MINIMIZE]

    def _values(self, result: Result) -> list[float] | None:
        obj = self.problem.objective
        if obj == "accuracy":
            return [float(result.accuracy)] if result.ok and result.accuracy is not None else None
        return [float(self.problem.predict(result.candidate.levels)[obj])]
