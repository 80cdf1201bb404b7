"""RandomSearch: seeded uniform draws, cost-feasible by prediction, distinct, stopping at the budget."""

from __future__ import annotations

from hwsearch.search.strategies import RandomSearch, create_strategy
from hwsearch.search.strategies._random import DEFAULT_N_TRIALS
from hwsearch.testing.strategy_contract import all_levels, best_of, drive, toy_problem


def test_registered_as_random() -> None:
    assert type(create_strategy("random")) is RandomSearch


def test_feasible_only_asks_only_cost_feasible_candidates() -> None:
    problem = toy_problem()
    results = drive(RandomSearch(seed=1), problem)
    assert len(results) == 30
    assert all(problem.cost_feasible(r.candidate.levels) for r in results)


def test_draws_are_projected_onto_the_budget() -> None:
    problem = toy_problem()  # 88 of the 256 candidates break the 0.34 MB budget
    for use_prior in (False, True):
        results = drive(RandomSearch(use_prior=use_prior, seed=1), problem)
        assert len(results) == 30
        assert all(problem.cost_feasible(r.candidate.levels) for r in results)


def test_candidates_are_distinct() -> None:
    results = drive(RandomSearch(seed=2), toy_problem(eval_budget=100))
    keys = [r.candidate.key for r in results]
    assert len(keys) == 100 and len(set(keys)) == 100


def test_budget_resolution() -> None:
    assert len(drive(RandomSearch(n_trials=7), toy_problem(eval_budget=None))) == 7
    assert len(drive(RandomSearch(n_trials=7), toy_problem(eval_budget=5))) == 5  # the problem caps it
    assert len(drive(RandomSearch(), toy_problem(eval_budget=None))) == DEFAULT_N_TRIALS


def test_stops_when_no_new_feasible_candidate_exists() -> None:
    problem = toy_problem(param_mb=0.19)  # exactly 2 candidates meet the budget
    assert sum(problem.cost_feasible(lv) for lv in all_levels(problem.space)) == 2
    strategy = RandomSearch(seed=0, max_retries=500)
    results = drive(strategy, problem)
    assert len(results) == 2 and strategy.finished()
    assert "no new candidate" in strategy.notes()[-1]


def test_unreachable_budget_asks_nothing() -> None:
    strategy = RandomSearch(seed=0)
    assert drive(strategy, toy_problem(param_mb=0.1)) == []
    assert strategy.notes() == [("no candidate can meet the cost budgets: the smallest reachable model has "
                                 "param_mb 0.1742 > 0.1")]


def test_asks_do_not_depend_on_tells() -> None:
    problem = toy_problem()
    four = drive(RandomSearch(seed=3), problem, batch=4)
    sequential = drive(RandomSearch(seed=3), problem)
    assert [r.candidate.key for r in sequential] == [r.candidate.key for r in four]


def test_seed_changes_the_draws() -> None:
    problem = toy_problem()
    a = [r.candidate.key for r in drive(RandomSearch(seed=0), problem)]
    b = [r.candidate.key for r in drive(RandomSearch(seed=1), problem)]
    assert a != b


def test_best_is_the_most_accurate_feasible_result() -> None:
    problem = toy_problem()
    strategy = RandomSearch(seed=0)
    results = drive(strategy, problem)
    best = strategy.best()
    assert best is not None and best.candidate.key == best_of(results).candidate.key  # type: ignore[union-attr]
    assert best.accuracy == max(r.accuracy for r in results if r.feasible)
