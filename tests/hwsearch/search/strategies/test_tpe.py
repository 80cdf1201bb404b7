"""TPESearch: Optuna TPE via ask/tell; warm start, set_constraint values, duplicates, skipped trials."""

from __future__ import annotations

import warnings

import pytest
from optuna.trial import TrialState

from dataclasses import replace

from optuna.study import StudyDirection

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate, Result
from hwsearch.search.strategies import TPESearch, create_strategy
from hwsearch.testing.strategy_contract import drive, evaluate, toy_accuracy, toy_problem

GOOD = {"blocks.0.mlp.hidden": 3, "blocks.1.mlp.hidden": 1}  # 78.85 %, 0.3165 MB: the best feasible
OTHER = {"blocks.0.mlp.hidden": 2, "blocks.1.mlp.hidden": 2}  # 78.6 %


def test_registered_as_tpe() -> None:
    assert type(create_strategy("tpe", multivariate=True)) is TPESearch


def test_warm_start_is_asked_first_in_order() -> None:
    strategy = TPESearch(warm_start=[Candidate(levels=GOOD, tag="greedy"), OTHER], seed=0)
    results = drive(strategy, toy_problem(eval_budget=12))
    assert [dict(r.candidate.levels) for r in results[:2]] == [GOOD, OTHER]
    assert [r.candidate.tag for r in results[:3]] == ["warm_start", "warm_start", "tpe"]
    assert strategy.best().accuracy == pytest.approx(78.85)  # type: ignore[union-attr]


@pytest.mark.parametrize(("warm", "message"), [
    ({"blocks.9.mlp.hidden": 1}, "unknown search variable 'blocks.9.mlp.hidden'"),
    ({"blocks.0.attn.qk": 4}, "level 4 of blocks.0.attn.qk is outside 0..3"),
])
def test_bad_warm_start_is_a_user_error(warm: dict[str, int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        TPESearch(warm_start=[warm]).setup(toy_problem())


def test_optuna_only_hears_true_values() -> None:
    """Evaluated trials carry their measured accuracy and exact constraints; over-budget samples are never
    given a value: they are closed as FAIL and their projection onto the budget is asked instead."""
    problem = toy_problem()
    strategy = TPESearch(seed=0)
    told = drive(strategy, problem)
    results = {r.candidate.key: r for r in told}
    assert len(results) == len(told) == 30  # distinct candidates, although TPE repeats itself
    assert all(problem.cost_feasible(r.candidate.levels) for r in told)  # never an over-budget evaluation
    trials = strategy.study.trials
    evaluated = [t for t in trials if t.user_attrs["status"] == "ok"]
    assert {t.user_attrs["key"] for t in evaluated} == set(results)
    for t in evaluated:
        assert t.state == TrialState.COMPLETE
        r = results[t.user_attrs["key"]]
        assert t.value == r.accuracy
        # violations relative to their limits (budget 0.34 MB, max drop 3 points)
        assert t.constraints == pytest.approx({"param_mb": (r.costs["param_mb"] - 0.34) / 0.34,
                                               "acc_drop": (80.0 - r.accuracy - 3.0) / 3.0})  # type: ignore[operator]
    projected = [t for t in trials if t.user_attrs["status"] == "projected"]
    assert projected, "the toy budget rules out a third of the space: TPE must sample some of it"
    for t in projected:
        assert t.state == TrialState.FAIL and t.value is None and not t.constraints
        assert t.user_attrs["projected_to"] in results or t.user_attrs["projected_to"] in {
            x.user_attrs.get("key") for x in trials}


def test_optuna_sees_the_constraints() -> None:
    strategy = TPESearch(seed=0)
    drive(strategy, toy_problem())
    best = strategy.best()
    assert best is not None
    # Optuna's best_trial only considers feasible trials: it agrees with the strategy's best
    assert strategy.study.best_trial.value == best.accuracy
    assert strategy.study.best_trial.user_attrs["key"] == best.candidate.key


def test_failed_result_is_a_fail_trial() -> None:
    strategy = TPESearch(warm_start=[GOOD], seed=0)
    drive(strategy, toy_problem(eval_budget=3), lambda lv: None if dict(lv) == GOOD else toy_accuracy(lv))
    first = strategy.study.trials[0]
    assert first.user_attrs["status"] == "failed" and first.state == TrialState.FAIL and first.value is None


def test_stopped_result_is_pruned_with_its_bound() -> None:
    strategy = TPESearch(warm_start=[GOOD], seed=0)
    strategy.setup(toy_problem(eval_budget=3))
    (cand,) = strategy.ask(1)
    strategy.tell(cand, Result(candidate=cand, status="stopped", accuracy=70.0, acc_drop=10.0, samples=40,
                               costs=toy_problem().predict(cand.levels)))
    t = strategy.study.trials[0]
    assert t.state == TrialState.PRUNED and t.intermediate_values == {40: 70.0}
    assert t.constraints["acc_drop"] == pytest.approx((10.0 - 3.0) / 3.0)


def test_cost_objective_minimises_the_memory() -> None:
    problem = replace(toy_problem(param_mb=None), objective="param_mb")
    strategy = TPESearch(seed=0)
    results = drive(strategy, problem)
    assert strategy.study.direction == StudyDirection.MINIMIZE
    best = strategy.best()
    assert best is not None and best.acc_drop <= 3.0  # type: ignore[operator]
    feasible = [r for r in results if r.feasible]
    assert best.costs["param_mb"] == min(r.costs["param_mb"] for r in feasible)
    assert strategy.study.best_trial.value == pytest.approx(best.costs["param_mb"])


def test_duplicates_are_told_without_being_asked_again() -> None:
    strategy = TPESearch(warm_start=[GOOD, GOOD], seed=0)
    strategy.setup(toy_problem(eval_budget=5))
    asked = strategy.ask(2)
    assert dict(asked[0].levels) == GOOD and dict(asked[1].levels) != GOOD  # the second GOOD waits
    assert strategy.study.trials[1].state == TrialState.RUNNING
    for cand in asked:
        strategy.tell(cand, evaluate(toy_problem(), cand, toy_accuracy))
    first, second = strategy.study.trials[:2]
    assert first.state == second.state == TrialState.COMPLETE and first.value == second.value == 78.85
    assert second.user_attrs["status"] == "ok" and second.user_attrs["key"] == asked[0].key


def test_n_trials_and_multivariate() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's ExperimentalWarning must not leak
        strategy = TPESearch(n_trials=8, multivariate=True, seed=0)
        results = drive(strategy, toy_problem(eval_budget=None), batch=2)
    assert len(results) == 8 and strategy.finished()
