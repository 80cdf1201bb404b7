"""NSGA2Search: accuracy against costs with Optuna's NSGA-II; the Pareto set and the driver's best."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from optuna.study import StudyDirection

from hwsearch.errors import UserError
from hwsearch.search.strategies import NSGA2Search, create_strategy
from hwsearch.testing.strategy_contract import best_of, drive, toy_problem


def _point(r, objectives):  # type: ignore[no-untyped-def]
    return (-r.accuracy, *(r.costs[k] for k in objectives))


def _dominates(a, b) -> bool:  # type: ignore[no-untyped-def]
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def test_registered_as_nsga2() -> None:
    assert type(create_strategy("nsga2", population_size=8)) is NSGA2Search


@pytest.mark.parametrize("objectives", [("param_mb",), ("param_mb", "macs_g")])
def test_pareto_is_the_non_dominated_feasible_set(objectives: tuple[str, ...]) -> None:
    problem = toy_problem(objectives=objectives)
    strategy = NSGA2Search(population_size=8, seed=0)
    results = drive(strategy, problem)
    front = strategy.pareto()
    feasible = [r for r in results if r.feasible]
    assert front and all(r.feasible for r in front)
    pts = {r.candidate.key: _point(r, objectives) for r in feasible}
    front_keys = {r.candidate.key for r in front}
    for key, p in pts.items():
        dominated = any(_dominates(q, p) for other, q in pts.items() if other != key)
        assert dominated == (key not in front_keys), key
    # Optuna's own constrained Pareto front (feasible trials only) agrees
    assert {t.user_attrs["key"] for t in strategy.study.best_trials} == front_keys
    assert strategy.study.directions == [StudyDirection.MAXIMIZE, *[StudyDirection.MINIMIZE] * len(objectives)]
    assert all(len(t.values) == 1 + len(objectives) for t in strategy.study.trials if t.state == TrialState.COMPLETE)


def test_best_is_the_most_accurate_feasible_result() -> None:
    strategy = NSGA2Search(population_size=8, seed=0)
    results = drive(strategy, toy_problem())
    best = strategy.best()
    assert best is not None and best.candidate.key == best_of(results).candidate.key  # type: ignore[union-attr]
    assert best.candidate.key in {r.candidate.key for r in strategy.pareto()}


def test_trial_values_and_constraints() -> None:
    problem = toy_problem()
    strategy = NSGA2Search(population_size=8, seed=0)
    results = {r.candidate.key: r for r in drive(strategy, problem)}
    for t in strategy.study.trials:
        if t.user_attrs["status"] != "ok":
            continue
        r = results[t.user_attrs["key"]]
        assert t.values == [r.accuracy, r.costs["param_mb"]]
        # violations relative to their limits (budget 0.34 MB, max drop 3 points)
        assert t.constraints == pytest.approx({"param_mb": (r.costs["param_mb"] - 0.34) / 0.34,
                                               "acc_drop": (80.0 - r.accuracy - 3.0) / 3.0})  # type: ignore[operator]


@pytest.mark.parametrize(("kwargs", "objectives", "message"), [
    ({"population_size": 1}, ("param_mb",), "population_size must be at least 2"),
    ({}, ("latency_ms",), "unknown cost objective 'latency_ms'"),
    ({}, (), "needs at least one cost objective"),
])
def test_bad_settings_are_user_errors(kwargs: dict[str, int], objectives: tuple[str, ...], message: str) -> None:
    with pytest.raises(UserError, match=message):
        NSGA2Search(**kwargs).setup(toy_problem(objectives=objectives))
