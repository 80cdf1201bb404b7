"""The knapsack MILP equals brute force; non-separable costs are enumerated exactly or refused."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping

import numpy as np
import pytest

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate, Constraints, Result
from hwsearch.search.profiling import SensitivityMeta, SensitivityTable, sensitivity_candidates
from hwsearch.search.encoding import PlanEncoding, Variable
from hwsearch.search.strategies import KnapsackMILP, Problem, solve_milp
from hwsearch.search.strategies._knapsack import NonSeparableError

BASE_ACC = 80.0
Predict = Callable[[Mapping[str, int]], dict[str, float]]


def _var(name: str, width: int, levels: tuple[int, ...], params: int, order: int, kind: str = "mlp") -> Variable:
    return Variable(name=name, kind=kind, width=width, levels=levels, rates=tuple(1 - k / width for k in levels),
                    params=params, order=order)


def _costs(params: float) -> dict[str, float]:
    return {"params": params, "param_mb": params * 4 / 1e6, "macs_g": params * 196 / 1e9, "act_mb": 1.0}


def _linear(space: PlanEncoding) -> Predict:
    return lambda lv: _costs(100_000 + sum(v.params * v.levels[lv.get(v.name, 0)] // v.width for v in space.variables))


def _table(space: PlanEncoding, single: Mapping[tuple[str, int], float], predict: Predict) -> SensitivityTable:
    results = [Result(candidate=c, status="ok", accuracy=BASE_ACC - single[next(iter(c.levels.items()))],
                      acc_drop=single[next(iter(c.levels.items()))], costs=predict(c.levels))
               for c in sensitivity_candidates(space)]
    return SensitivityTable.from_results(space, results, BASE_ACC, SensitivityMeta(model="toy"),
                                         baseline_costs=predict({}))


def _random_instance(seed: int) -> tuple[PlanEncoding, dict[tuple[str, int], float], Predict, float]:
    rng = np.random.default_rng(seed)
    variables = []
    for i in range(int(rng.integers(3, 5))):
        n_levels = int(rng.integers(2, 5))
        levels = tuple(10 - 2 * j for j in range(n_levels))
        variables.append(_var(f"v{i}", 10, levels, 10 * int(rng.integers(1_000, 100_000)), i))
    space = PlanEncoding(model="toy", variables=variables)
    single = {(v.name, lv): round(float(rng.uniform(-0.5, 3.0)), 3) for v in variables for lv in range(1, len(v.levels))}
    predict = _linear(space)
    lo, hi = predict(space.max_levels())["param_mb"], predict({})["param_mb"]
    return space, single, predict, float(lo + rng.uniform(0.05, 0.9) * (hi - lo))


def _brute(space: PlanEncoding, single: Mapping[tuple[str, int], float], predict: Predict,
           budget_mb: float) -> list[float]:
    objs = []
    for choice in itertools.product(*(range(len(v.levels)) for v in space.variables)):
        levels = {v.name: lv for v, lv in zip(space.variables, choice)}
        if predict(levels)["param_mb"] <= budget_mb + 1e-12:
            objs.append(sum(max(single[(n, lv)], 0.0) for n, lv in levels.items() if lv))
    return sorted(objs)


def _problem(space: PlanEncoding, predict: Predict, budget_mb: float, table: SensitivityTable | None,
             **kw: object) -> Problem:
    return Problem(space=space, constraints=Constraints(param_mb=budget_mb, max_acc_drop=2.0), baseline_accuracy=BASE_ACC,
                   baseline_costs=predict({}), predict=predict, sensitivity=table, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(8))
def test_k_best_equal_brute_force(seed: int) -> None:
    space, single, predict, budget = _random_instance(seed)
    s = KnapsackMILP(k=4)
    s.setup(_problem(space, predict, budget, _table(space, single, predict)))
    loss = {v.name: [0.0] + [max(single[(v.name, lv)], 0.0) for lv in range(1, len(v.levels))] for v in space.variables}
    plans = s.plan(loss)
    want = _brute(space, single, predict, budget)[:4]
    assert [obj for _, obj in plans] == pytest.approx(want, abs=1e-9)
    assert len({Candidate(levels=lv).key for lv, _ in plans}) == len(plans)
    assert all(predict(lv)["param_mb"] <= budget for lv, _ in plans)


def test_solve_milp_alone_matches_brute_force_and_forbids_infinite_loss() -> None:
    rng = np.random.default_rng(11)
    for _ in range(5):
        sizes = [int(rng.integers(2, 5)) for _ in range(4)]
        loss = [[0.0] + list(rng.uniform(0, 3, n - 1)) for n in sizes]
        loss[0][-1] = float("inf")
        cost = [[0.0] + list(-rng.uniform(0, 5, n - 1)) for n in sizes]
        limit = float(rng.uniform(-8, -1))
        feas = sorted(sum(loss[v][c] for v, c in enumerate(ch)) for ch in itertools.product(*map(range, sizes))
                      if sum(cost[v][c] for v, c in enumerate(ch)) <= limit and np.isfinite(loss[0][ch[0]]))
        sols = solve_milp(loss, {"mb": cost}, {"mb": limit}, k=3)
        assert [s.objective for s in sols] == pytest.approx(feas[:3])
        assert all(s.choice[0] != sizes[0] - 1 for s in sols)


def test_end_to_end_asks_k_and_records_predicted_vs_measured() -> None:
    space, single, predict, budget = _random_instance(3)

    def measure(c: Candidate) -> Result:  # additive drops plus 0.25 per pruned pair: predictions are optimistic
        d = sum(single[(n, lv)] for n, lv in c.levels.items()) + 0.25 * max(len(c.levels) - 1, 0)
        costs = predict(c.levels)
        return Result(candidate=c, status="ok", accuracy=BASE_ACC - d, acc_drop=d, costs=costs,
                      violations=p.constraints.violations(costs, d))

    p = _problem(space, predict, budget, None)
    s = KnapsackMILP(k=3)
    s.setup(p)
    asked = []
    while cands := s.ask(1):
        for c in cands:
            asked.append(c)
            s.tell(c, measure(c))
    n_profile = len(sensitivity_candidates(space))
    milp = [c for c in asked if c.tag == "milp"]
    assert [c.tag for c in asked[:n_profile]] == ["profile"] * n_profile and len(milp) <= 3
    assert len(s.solutions) == 3 and s.finished()
    for rec in s.solutions:
        assert rec.measured_drop == pytest.approx(rec.predicted_drop + 0.25 * max(len(rec.levels) - 1, 0))
        assert rec.costs["param_mb"] <= budget
    assert sum(n.startswith("milp #") for n in s.notes()) == 3
    best = s.best()
    assert best is None or (best.acc_drop <= 2.0 and predict(best.candidate.levels)["param_mb"] <= budget)


def test_unreachable_budget_asks_nothing_and_says_why() -> None:
    space, single, predict, _ = _random_instance(0)
    s = KnapsackMILP()
    s.setup(_problem(space, predict, 0.01, _table(space, single, predict)))
    assert s.ask(5) == [] and s.finished()
    assert "no choice of levels meets the budgets" in s.notes()[0]


def _embedded() -> tuple[PlanEncoding, Predict]:
    """An embedding width E multiplies both blocks' widths: params are pairwise in (E, h1) and (E, h2)."""
    e = _var("embed", 8, (8, 6, 4), 80_000, 0, kind="embed")
    h1 = _var("h1", 10, (10, 8, 6, 4), 500_000, 1)
    h2 = _var("h2", 10, (10, 7, 4), 300_000, 2)
    space = PlanEncoding(model="toy", variables=[e, h1, h2])

    def predict(lv: Mapping[str, int]) -> dict[str, float]:
        fe = e.levels[lv.get("embed", 0)] / 8
        blocks = sum(v.params * v.levels[lv.get(v.name, 0)] / v.width for v in (h1, h2))
        return _costs(100_000 + 80_000 * fe + blocks * fe)

    return space, predict


def _triple() -> tuple[PlanEncoding, Predict]:
    """A cost term a x b x c: not pairwise; the group {a, b, c} becomes one item of 3 x 3 x 4 options."""
    a = _var("a", 10, (10, 8, 6), 0, 0)
    b = _var("b", 10, (10, 7, 4), 0, 1)
    c = _var("c", 10, (10, 8, 6, 4), 400_000, 2)
    space = PlanEncoding(model="toy", variables=[a, b, c])

    def predict(lv: Mapping[str, int]) -> dict[str, float]:
        f = [v.levels[lv.get(v.name, 0)] / v.width for v in (a, b, c)]
        return _costs(50_000 + 600_000 * f[0] * f[1] * f[2] + 200_000 * f[2] + 100_000 * f[0])

    return space, predict


SINGLE_EMB = {("embed", 1): 1.0, ("embed", 2): 2.5, ("h1", 1): 0.1, ("h1", 2): 0.6, ("h1", 3): 1.4,
              ("h2", 1): 0.3, ("h2", 2): 0.9}
SINGLE_TRI = {("a", 1): 0.2, ("a", 2): 1.1, ("b", 1): 0.4, ("b", 2): 0.7, ("c", 1): 0.05, ("c", 2): 0.5,
              ("c", 3): 2.0}


@pytest.mark.parametrize("budget", [3.0, 2.2, 1.6, 1.1])
def test_pairwise_interactions_are_modelled_exactly(budget: float) -> None:
    space, predict = _embedded()
    s = KnapsackMILP(k=3)
    s.setup(_problem(space, predict, budget, _table(space, SINGLE_EMB, predict)))
    loss = {v.name: [0.0] + [SINGLE_EMB[(v.name, lv)] for lv in range(1, len(v.levels))] for v in space.variables}
    plans = s.plan(loss)
    assert s.interactions == [("embed", "h1"), ("embed", "h2")] and s.enumerated == []
    assert [obj for _, obj in plans] == pytest.approx(_brute(space, SINGLE_EMB, predict, budget)[:3])
    assert all(predict(lv)["param_mb"] <= budget for lv, _ in plans)


def test_solve_milp_pair_terms_match_brute_force() -> None:
    rng = np.random.default_rng(4)
    sizes = [3, 4, 3]
    loss = [[0.0] + list(rng.uniform(0, 2, n - 1)) for n in sizes]
    cost = [[0.0] + list(-rng.uniform(0, 3, n - 1)) for n in sizes]
    inter = [[float(rng.uniform(-1, 1)) if a and b else 0.0 for b in range(sizes[2])] for a in range(sizes[0])]
    for limit in (-1.0, -3.0, -5.0):
        feas = sorted(sum(loss[v][c] for v, c in enumerate(ch)) for ch in itertools.product(*map(range, sizes))
                      if sum(cost[v][c] for v, c in enumerate(ch)) + inter[ch[0]][ch[2]] <= limit)
        sols = solve_milp(loss, {"mb": cost}, {"mb": limit}, pairs={(0, 2): {"mb": inter}}, k=4)
        assert [s.objective for s in sols] == pytest.approx(feas[:4])


@pytest.mark.parametrize("budget", [2.2, 1.4, 0.9])
def test_higher_order_interaction_is_merged_into_a_joint_item_exactly(budget: float) -> None:
    space, predict = _triple()
    s = KnapsackMILP(k=3)
    s.setup(_problem(space, predict, budget, _table(space, SINGLE_TRI, predict)))
    loss = {v.name: [0.0] + [SINGLE_TRI[(v.name, lv)] for lv in range(1, len(v.levels))] for v in space.variables}
    plans = s.plan(loss)
    assert s.enumerated == ["a, b, c"]
    assert any("1 group(s) merged into joint items (largest: a, b, c, 36 combinations)" in n for n in s.notes())
    assert [obj for _, obj in plans] == pytest.approx(_brute(space, SINGLE_TRI, predict, budget)[:3])
    assert all(predict(lv)["param_mb"] <= budget for lv, _ in plans)


def test_higher_order_interaction_beyond_the_enumeration_limit_is_refused() -> None:
    space, predict = _triple()
    s = KnapsackMILP(max_enumeration=30)
    s.setup(_problem(space, predict, 1.4, _table(space, SINGLE_TRI, predict)))
    with pytest.raises(NonSeparableError, match="neither separable nor pairwise; the interacting group a, b, c has 36 "
                                                "level combinations > max_enumeration 30"):
        s.ask(1)
    assert issubclass(NonSeparableError, UserError)


def test_byte_rounding_in_the_cost_model_is_tolerated_and_reported() -> None:
    space, single, predict, _ = _random_instance(2)

    def rounded(lv: Mapping[str, int]) -> dict[str, float]:  # activation bytes rounded up once for the whole model
        costs = predict(lv)
        kept = sum(v.levels[lv.get(v.name, 0)] for v in space.variables)
        return {**costs, "act_mb": math.ceil(kept * 100_000 / 3) / 1e6}

    base, low = rounded({})["act_mb"], rounded(space.max_levels())["act_mb"]
    budget = (base + low) / 2
    p = Problem(space=space, constraints=Constraints(act_mb=budget), baseline_accuracy=BASE_ACC,
                baseline_costs=rounded({}), predict=rounded, sensitivity=_table(space, single, rounded))
    s = KnapsackMILP(k=3)
    s.setup(p)
    assert len(s.ask(10)) == 3
    assert 0 < s.model_error["act_mb"] <= 4e-6 and s.interactions == []
    assert any("act_mb model is within" in n for n in s.notes())
    assert all(rounded(r.levels)["act_mb"] <= budget for r in s.solutions)


def test_eval_budget_truncates_the_batch() -> None:
    space, single, predict, budget = _random_instance(5)
    s = KnapsackMILP(k=5)
    s.setup(_problem(space, predict, budget, _table(space, single, predict), eval_budget=2))
    assert len(s.ask(10)) == 2 and s.ask(10) == [] and s.finished()


def test_ties_in_predicted_loss_go_to_the_least_pruning() -> None:
    # every level is free (loss 0): without a tie-break any choice within the budget is optimal
    loss = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    cost = [[0.0, -1.0, -2.0], [0.0, -1.0, -2.0, -3.0]]
    rates = [[0.0, 0.3, 0.6], [0.0, 0.2, 0.4, 0.6]]
    sols = solve_milp(loss, {"mb": cost}, {"mb": -2.0}, tiebreak=rates, k=3)
    # total rate among choices saving >= 2: (0,2) 0.4, (1,1) 0.5, (2,0) 0.6, (0,3) 0.6, ...
    assert [s.choice for s in sols][:2] == [(0, 2), (1, 1)]
    assert all(s.objective == 0.0 for s in sols)
