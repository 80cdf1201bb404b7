"""PSViT (``sensitivity``): uniform curve, then per-layer rates from a threshold schedule, on a hand example.

Three variables, levels (10, 8, 6, 4) of 10 units (rates 0, 0.2, 0.4, 0.6); sizes A 1M, B 0.6M, C 0.6M,
plus 0.4M fixed (2.6M params). Single drops at levels 1/2/3: A 0.4/0.9/2.5, B 0.2/0.5/1.2, C 0.8/1.6/3.0.
Combined drop = sum + 1.0 when two or more variables are at level >= 2. Max drop 2.0, budget 2.2M params.

The thresholds are the distinct single drops <= 2.0, strongest first; each variable takes its largest
level whose drop is <= t; choices over the budget are left out (t = 0.4 and 0.2 give 2.28M, 2.48M):

===  ======  =============  ===========  ======
idx  thresh  levels         drop         params
===  ======  =============  ===========  ======
0    1.6     A2 B3 C2       4.7  fail    1.60M
1    1.2     A2 B3 C1       3.9          1.72M
2    0.9     A2 B2 C1       3.2  fail    1.84M
3    0.8     A1 B2 C1       1.7  pass    2.04M
4    0.5     A1 B2          0.9  pass    2.16M
===  ======  =============  ===========  ======

Bisection: 0 fails, 4 (mildest) passes, 2 fails, 3 passes: the strongest passing choice is index 3.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate, Constraints, Result
from hwsearch.search.profiling import SensitivityMeta, SensitivityTable, sensitivity_candidates
from hwsearch.search.encoding import PlanEncoding, Variable
from hwsearch.search.strategies import Problem, PSViTSensitivity, create_strategy

BASE_ACC = 80.0
SINGLE = {"A": (0.4, 0.9, 2.5), "B": (0.2, 0.5, 1.2), "C": (0.8, 1.6, 3.0)}


def _var(name: str, params: int, order: int) -> Variable:
    levels = (10, 8, 6, 4)
    return Variable(name=name, kind="mlp", width=10, levels=levels, rates=tuple(1 - k / 10 for k in levels),
                    params=params, order=order)


SPACE = PlanEncoding(model="toy", variables=[_var("A", 1_000_000, 0), _var("B", 600_000, 1), _var("C", 600_000, 2)])


def predict(levels: Mapping[str, int]) -> dict[str, float]:
    params = 400_000 + sum(v.params * v.levels[levels.get(v.name, 0)] // v.width for v in SPACE.variables)
    return {"params": params, "param_mb": params * 4 / 1e6, "macs_g": params * 196 / 1e9, "act_mb": 1.0}


def drop_of(levels: Mapping[str, int]) -> float:
    d = sum(SINGLE[n][lv - 1] for n, lv in levels.items() if lv)
    return d + (1.0 if sum(lv >= 2 for lv in levels.values()) >= 2 else 0.0)


def make_result(p: Problem, c: Candidate) -> Result:
    costs, d = predict(c.levels), drop_of(c.levels)
    return Result(candidate=c, status="ok", accuracy=BASE_ACC - d, acc_drop=d, costs=costs,
                  violations=p.constraints.violations(costs, d))


def table() -> SensitivityTable:
    results = [Result(candidate=c, status="ok", accuracy=BASE_ACC - drop_of(c.levels), acc_drop=drop_of(c.levels),
                      costs=predict(c.levels)) for c in sensitivity_candidates(SPACE)]
    return SensitivityTable.from_results(SPACE, results, BASE_ACC, SensitivityMeta(model="toy", rates=(0.2, 0.4, 0.6)),
                                         baseline_costs=predict({}))


def problem(params_budget: int, *, sensitivity: SensitivityTable | None = None, max_drop: float | None = 2.0) -> Problem:
    return Problem(space=SPACE, constraints=Constraints(param_mb=params_budget * 4 / 1e6, max_acc_drop=max_drop),
                   baseline_accuracy=BASE_ACC, baseline_costs=predict({}), predict=predict, sensitivity=sensitivity)


def drive(s: PSViTSensitivity, p: Problem) -> list[Candidate]:
    s.setup(p)
    asked = []
    while cands := s.ask(1):
        for c in cands:
            asked.append(c)
            s.tell(c, make_result(p, c))
    return asked


def test_uniform_then_bisection_over_per_layer_thresholds() -> None:
    p = problem(2_200_000, sensitivity=table())
    s = PSViTSensitivity()
    asked = drive(s, p)
    assert [(c.tag, dict(c.levels)) for c in asked] == [
        ("uniform", {"A": 1, "B": 1, "C": 1}), ("uniform", {"A": 2, "B": 2, "C": 2}), ("uniform", {"A": 3, "B": 3, "C": 3}),
        ("fine", {"A": 2, "B": 3, "C": 2}), ("fine", {"A": 1, "B": 2}), ("fine", {"A": 2, "B": 2, "C": 1}),
        ("fine", {"A": 1, "B": 2, "C": 1})]
    # t = 0.4 and 0.2 miss the budget, and so does every rate cap at t = 0.2 ({B1} -> {})
    assert [(o.threshold, o.cap) for o in s.options(s.table)] == [(1.6, 1.0), (1.2, 1.0), (0.9, 1.0), (0.8, 1.0),
                                                                  (0.5, 1.0)]
    assert [(st.threshold, st.feasible) for st in s.fine_steps] == [(1.6, False), (0.5, True), (0.9, False), (0.8, True)]
    assert s.fine_steps[0].measured_drop == pytest.approx(4.7)
    assert s.fine_levels == {"A": 1, "B": 2, "C": 1} and s.finished()
    assert any(n.startswith("fine-grained: per-layer threshold 0.8 is the strongest of 5 options") for n in s.notes())
    # the uniform curve: rate 0.2 is feasible (drop 1.4, 2.16M params)
    assert [(pt.rate, pt.feasible) for pt in s.uniform_curve] == [(0.2, True), (0.4, False), (0.6, False)]
    assert s.uniform_curve[0].mem_saving == pytest.approx(1 - 2.16 / 2.6)
    # the most accurate feasible measurement is the mildest threshold's choice
    assert dict(s.best().candidate.levels) == {"A": 1, "B": 2}
    assert s.best().accuracy == pytest.approx(79.1)


def test_bisection_with_a_looser_drop_limit() -> None:
    # max drop 5: options t = 3.0 A3B3C3 (7.7), 2.5 A3B3C2 (6.3), 1.6 A2B3C2 (4.7), 1.2 A2B3C1 (3.9),
    # 0.9 A2B2C1, 0.8 A1B2C1, 0.5 A1B2 (0.9). Bisection: 0 fails, 6 passes, 3 passes, 1 fails, 2 passes.
    p = problem(2_200_000, sensitivity=table(), max_drop=5.0)
    s = PSViTSensitivity()
    fine = [dict(c.levels) for c in drive(s, p) if c.tag == "fine"]
    assert [st.threshold for st in s.fine_steps] == [3.0, 0.5, 1.2, 2.5, 1.6]
    # index 0 is the uniform 0.6 candidate: answered by its result, not asked again
    assert fine == [{"A": 1, "B": 2}, {"A": 2, "B": 3, "C": 1}, {"A": 3, "B": 3, "C": 2}, {"A": 2, "B": 3, "C": 2}]
    assert s.fine_levels == {"A": 2, "B": 3, "C": 2}


def test_no_choice_within_the_drop_leaves_the_uniform_result_or_nothing() -> None:
    p = problem(1_700_000, sensitivity=table())
    s = PSViTSensitivity()
    asked = drive(s, p)
    # only t = 1.6 (A2 B3 C2, 1.6M) meets the budget; it fails and there is nothing milder to relax to
    assert [dict(c.levels) for c in asked if c.tag == "fine"] == [{"A": 2, "B": 3, "C": 2}]
    assert s.fine_levels is None and s.best() is None
    assert any("no feasible plan found" in n for n in s.notes())


def test_rate_cap_relaxes_layers_the_profile_calls_free() -> None:
    # The profile (a small, noisy subset) calls A free at every level; really A at level 3 costs 2.5 points.
    single = {"A": (0.0, 0.0, 0.0), "B": SINGLE["B"], "C": SINGLE["C"]}

    def drop_profile(levels: Mapping[str, int]) -> float:
        d = sum(single[n][lv - 1] for n, lv in levels.items() if lv)
        return d + (1.0 if sum(lv >= 2 for lv in levels.values()) >= 2 else 0.0)

    def drop_cap(levels: Mapping[str, int]) -> float:
        return drop_profile(levels) + (2.5 if levels.get("A", 0) >= 3 else 0.0)

    results = [Result(candidate=c, status="ok", accuracy=BASE_ACC - drop_profile(c.levels),
                      acc_drop=drop_profile(c.levels), costs=predict(c.levels)) for c in sensitivity_candidates(SPACE)]
    t = SensitivityTable.from_results(SPACE, results, BASE_ACC, SensitivityMeta(model="toy", rates=(0.2, 0.4, 0.6)),
                                      baseline_costs=predict({}))
    p = problem(2_200_000, sensitivity=t)
    s = PSViTSensitivity()
    s.setup(p)
    asked = []
    while cands := s.ask(1):
        for c in cands:
            asked.append(c)
            d = drop_cap(c.levels)
            s.tell(c, Result(candidate=c, status="ok", accuracy=BASE_ACC - d, acc_drop=d, costs=predict(c.levels),
                             violations=p.constraints.violations(predict(c.levels), d)))
    # thresholds 1.6 .. 0.0 all keep A at level 3 (drops 6.3, 5.5, 4.8, 4.0, 2.7, 2.5); capping the rate at
    # 0.4 at t = 0 gives {A2} (2.2M params, drop 0); the cap 0.2 ({A1}, 2.4M) misses the budget.
    assert [(o.threshold, o.cap, o.levels) for o in s.options(t)][-2:] == [(0.0, 1.0, {"A": 3}), (0.0, 0.4, {"A": 2})]
    assert [(st.threshold, st.cap, st.feasible) for st in s.fine_steps] == [
        (1.6, 1.0, False), (0.0, 0.4, True), (0.5, 1.0, False), (0.2, 1.0, False), (0.0, 1.0, False)]
    assert s.fine_levels == {"A": 2}
    assert any("rate cap 0.4 is the strongest of 7 options" in n for n in s.notes())


def test_profiles_between_uniform_and_fine_without_a_table() -> None:
    p = problem(2_200_000)
    s = PSViTSensitivity(rates=(0.2, 0.4, 0.6))
    tags = [c.tag for c in drive(s, p)]
    assert tags == ["uniform"] * 3 + ["profile"] * 9 + ["fine"] * 4
    assert s.fine_levels == {"A": 1, "B": 2, "C": 1}


def test_without_a_max_drop_the_base_threshold_is_the_largest_single_drop() -> None:
    p = problem(1_300_000, sensitivity=table(), max_drop=None)
    s = PSViTSensitivity()
    asked = drive(s, p)
    # every variable at level 3 is the uniform 0.6 candidate: answered by its result, not asked again
    assert [c.tag for c in asked] == ["uniform"] * 3
    assert s.fine_steps[0].threshold == 3.0 and s.fine_steps[0].levels == {"A": 3, "B": 3, "C": 3}
    assert s.fine_levels == {"A": 3, "B": 3, "C": 3}


def test_bad_parameters_are_user_errors() -> None:
    with pytest.raises(UserError, match="rates must lie in"):
        create_strategy("sensitivity", rates=(0.5, 1.0)).setup(problem(2_000_000))
