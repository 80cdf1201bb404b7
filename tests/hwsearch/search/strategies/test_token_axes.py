"""Every registered strategy searches the token keep ratios and T next to the channel widths.

The space is the demo Spikformer's (channel axes + ``tokens`` + ``time``), costs are the exact analytic
ones (MACs shrink with kept tokens and T), the accuracy is a closed form in which tokens and T are
cheap and the SPS stem is not, and the budget is 60 % of the unpruned MACs, which channel pruning
alone cannot meet within the drop limit. Every strategy must answer with a feasible plan that the
pruning engine applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest

from costmodels import AnalyticCostModel
from hwsearch.search.evaluation import cost_metrics
from hwsearch.pruning import groups_of, validate_plan
from hwsearch.search.results import Constraints
from hwsearch.search.encoding import DEFAULT_AXES, PlanEncoding
from hwsearch.search.strategies import Problem, create_strategy, list_strategies
from hwsearch.testing.strategy_contract import drive, level_importance_of, with_sensitivity
from search_spaces import create_model

NAME = "spikformer-digits-2-64"
BASE_ACC = 99.0
#: single-variable drop per unit rate^2, by kind (tokens and T cheap, the stem expensive)
SENS = {"sps": 30.0, "qk": 4.0, "v": 4.0, "mlp": 2.0, "tokens": 0.8, "time": 1.5}


@pytest.fixture(scope="module")
def problem() -> Problem:
    model = create_model(NAME)
    space = PlanEncoding.from_model(model, axes=(*DEFAULT_AXES, "tokens", "time"), rates=(0.25, 0.5, 0.75))
    compiled = AnalyticCostModel().compile(NAME)

    def predict(levels: Mapping[str, int]) -> dict[str, float]:
        return cost_metrics(compiled.cost(space.widths(levels), per_layer=False))

    base = predict({})
    cons = Constraints(macs_g=0.6 * base["macs_g"], max_acc_drop=3.0)
    return Problem(space=space, constraints=cons, baseline_accuracy=BASE_ACC, baseline_costs=base, predict=predict,
                   eval_budget=12, objective="accuracy")


def accuracy(space: PlanEncoding, levels: Mapping[str, int]) -> float:
    return BASE_ACC - sum(SENS[space[n].kind] * space[n].rates[lv] ** 2 for n, lv in levels.items())


def test_space_has_token_and_time_variables(problem: Problem) -> None:
    kinds = {v.kind for v in problem.space.variables}
    assert {"tokens", "time", "sps", "mlp"} <= kinds
    assert problem.space["T"].levels == (4, 3, 2, 1)


@pytest.mark.parametrize("name", list_strategies())
def test_strategy_meets_the_mac_budget_with_token_and_time_levels(problem: Problem, name: str) -> None:
    space = problem.space
    acc = lambda levels: accuracy(space, levels)  # noqa: E731
    prepared = with_sensitivity(problem, acc)
    strategy = create_strategy(name, seed=0)
    if strategy.needs_importance:
        prepared = replace(prepared, importance=level_importance_of(prepared, acc))
    results = drive(strategy, prepared, acc, budget=12)
    feasible = [r for r in [*prepared.history, *results] if r.feasible]
    assert feasible, name
    best = max(feasible, key=lambda r: r.accuracy)
    assert best.costs["macs_g"] <= problem.constraints.macs_g
    work = {n for n, lv in best.candidate.levels.items() if lv and space[n].kind in ("tokens", "time")}
    assert work, f"{name}: the best plan uses no token or T level ({best.candidate.levels})"
    groups = groups_of(create_model(NAME))
    for r in results:
        validate_plan(space.plan(r.candidate.levels), groups)
