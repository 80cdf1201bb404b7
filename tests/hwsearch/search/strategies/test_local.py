"""LocalSearch on the demo-like problem: it improves on the plan it starts from, in both objectives."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hwsearch.search.results import Candidate
from hwsearch.search.strategies import create_strategy
from hwsearch.testing.strategy_contract import demo_like_accuracy, demo_like_problem, drive, with_sensitivity


def _answer(name: str, problem, **kw):
    s = create_strategy(name, seed=0, **kw)
    results = drive(s, problem, demo_like_accuracy)
    return s, results, s.answer([*problem.history, *results])


@pytest.mark.parametrize("param_mb", [None, 0.48], ids=["min-memory", "budget"])
def test_improves_on_the_greedy_answer_it_starts_from(param_mb: float | None) -> None:
    p = with_sensitivity(demo_like_problem(param_mb=param_mb, eval_budget=40), demo_like_accuracy)
    _, _, greedy = _answer("prioritized", p)
    s, results, local = _answer("local", replace(p, warm_start=[dict(greedy.candidate.levels)]))
    assert results[0].candidate.key == greedy.candidate.key and results[0].candidate.tag == "local:warm"
    assert local is not None and local.feasible and p.cost_feasible(local.candidate.levels)
    if param_mb is None:  # smaller memory within the drop limit
        assert local.costs["param_mb"] < greedy.costs["param_mb"]
    else:  # more accurate within the budget
        assert local.accuracy > greedy.accuracy
    assert any(n.startswith("local search:") for n in s.notes())


def test_neighbours_move_one_or_two_levels_and_are_ranked_by_the_prior() -> None:
    p = with_sensitivity(demo_like_problem(param_mb=None, eval_budget=10), demo_like_accuracy)
    s = create_strategy("local")
    s.setup(p)
    start = {"block.0.mlp.hidden": 5, "block.1.mlp.hidden": 5}
    moves = s.neighbours(start)
    assert moves and all(m != start for m in moves)
    cost = lambda lv: p.predict(lv)["param_mb"]  # noqa: E731
    assert all(cost(m) < cost(start) for m in moves)  # minimising memory: every move saves
    for m in moves:
        changed = {n for n in set(m) | set(start) if m.get(n, 0) != start.get(n, 0)}
        assert 1 <= len(changed) <= 2
        assert all(lv in p.prior.allowed[n] for n, lv in m.items())
    ratio = [max(p.prior.additive_drop(m) - p.prior.additive_drop(start), 0) / (cost(start) - cost(m)) for m in moves]
    assert ratio == sorted(ratio)
    assert len({Candidate(levels=m).key for m in moves}) == len(moves)
