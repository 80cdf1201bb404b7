"""PrimeSVT's prioritized greedy against a hand-worked example.

Four variables, each with levels (10, 8, 6, 4) kept of 10 units (rates 0, 0.2, 0.4, 0.6):

=====  ========  =====  =========================  ====================
name   params    order  single drops at lv 1/2/3   tolerated (max 2.0)
=====  ========  =====  =========================  ====================
A      1000000   2      0.5 / 1.0 / 3.0            1, 2
B       600000   0      0.2 / 0.6 / 1.5            1, 2, 3
C       600000   1      0.3 / 2.5 / 4.0            1
D       100000   3      3.0 / 5.0 / 9.0            none: skipped
=====  ========  =====  =========================  ====================

Combined drop = sum of single drops + 1.0 if A >= 2 and B >= 3 + 0.5 if B >= 2 and C >= 1.
Walk (largest first, B before C by network order):
  {A:2} 1.0 ok -> {A:2,B:3} 3.5 > 2, back off -> {A:2,B:2} 1.6 ok -> {A:2,B:2,C:1} 2.4 > 2, C's mildest
  tolerated level fails: C unpruned. Params: 2.7M -> 2.3M (A) -> 2.06M (B).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate, Constraints, Result
from hwsearch.search.profiling import SensitivityMeta, SensitivityTable, sensitivity_candidates
from hwsearch.search.encoding import PlanEncoding, Variable
from hwsearch.search.strategies import PrioritizedGreedy, Problem, create_strategy

BASE_ACC = 80.0
OTHER_PARAMS = 400_000
SINGLE = {"A": (0.5, 1.0, 3.0), "B": (0.2, 0.6, 1.5), "C": (0.3, 2.5, 4.0), "D": (3.0, 5.0, 9.0)}


def _var(name: str, params: int, order: int) -> Variable:
    levels = (10, 8, 6, 4)
    return Variable(name=name, kind="mlp", width=10, levels=levels, rates=tuple(1 - k / 10 for k in levels),
                    params=params, order=order)


SPACE = PlanEncoding(model="toy", variables=[_var("B", 600_000, 0), _var("C", 600_000, 1), _var("A", 1_000_000, 2),
                                            _var("D", 100_000, 3)])


def predict(levels: Mapping[str, int]) -> dict[str, float]:
    params = OTHER_PARAMS + sum(v.params * v.levels[levels.get(v.name, 0)] // v.width for v in SPACE.variables)
    return {"params": params, "param_mb": params * 4 / 1e6, "macs_g": params * 196 / 1e9, "act_mb": 1.0}


def drop_of(levels: Mapping[str, int]) -> float:
    d = sum(SINGLE[n][lv - 1] for n, lv in levels.items() if lv)
    if levels.get("A", 0) >= 2 and levels.get("B", 0) >= 3:
        d += 1.0
    if levels.get("B", 0) >= 2 and levels.get("C", 0) >= 1:
        d += 0.5
    return d


def make_result(problem: Problem, c: Candidate, *, fail: bool = False) -> Result:
    costs = predict(c.levels)
    if fail:
        return Result(candidate=c, status="failed", costs=costs, error="worker died")
    d = drop_of(c.levels)
    return Result(candidate=c, status="ok", accuracy=BASE_ACC - d, acc_drop=d, costs=costs,
                  violations=problem.constraints.violations(costs, d))


def table() -> SensitivityTable:
    results = [Result(candidate=c, status="ok", accuracy=BASE_ACC - drop_of(c.levels), acc_drop=drop_of(c.levels),
                      costs=predict(c.levels)) for c in sensitivity_candidates(SPACE)]
    return SensitivityTable.from_results(SPACE, results, BASE_ACC, SensitivityMeta(model="toy"),
                                         baseline_costs=predict({}))


def problem(*, params_budget: int | None, sensitivity: SensitivityTable | None = None,
            eval_budget: int | None = None, max_drop: float | None = 2.0) -> Problem:
    mb = None if params_budget is None else params_budget * 4 / 1e6
    return Problem(space=SPACE, constraints=Constraints(param_mb=mb, max_acc_drop=max_drop), baseline_accuracy=BASE_ACC,
                   baseline_costs=predict({}), predict=predict, sensitivity=sensitivity, eval_budget=eval_budget)


def drive(s: PrioritizedGreedy, p: Problem, fail: set[str] = frozenset()) -> list[Candidate]:
    s.setup(p)
    asked = []
    while cands := s.ask(1):
        for c in cands:
            asked.append(c)
            s.tell(c, make_result(p, c, fail=c.key in fail))
    return asked


def levels_of(cands: list[Candidate]) -> list[dict[str, int]]:
    return [dict(c.levels) for c in cands]


def test_walk_backs_off_and_stops_at_budget() -> None:
    p = problem(params_budget=2_100_000, sensitivity=table())
    s = PrioritizedGreedy()
    asked = drive(s, p)
    assert levels_of(asked) == [{"A": 2}, {"A": 2, "B": 3}, {"A": 2, "B": 2}]
    assert {c.tag for c in asked} == {"greedy"}
    assert s.final_levels == {"A": 2, "B": 2} and s.budget_met and s.finished()
    assert [(st.variable, st.level, st.accepted) for st in s.steps] == [("A", 2, True), ("B", 3, False), ("B", 2, True)]
    assert s.steps[1].measured_drop == pytest.approx(3.5) and s.steps[1].profile_drop == 1.5
    assert s.skipped == ["D"]
    assert any(n.startswith("budget met after 2") for n in s.notes())
    assert s.best() is not None and dict(s.best().candidate.levels) == {"A": 2, "B": 2}


def test_budget_not_met_walks_every_target_and_says_so() -> None:
    p = problem(params_budget=1_500_000, sensitivity=table())
    s = PrioritizedGreedy()
    asked = drive(s, p)
    # C's only tolerated level fails in combination: C stays unpruned; D was skipped.
    assert levels_of(asked) == [{"A": 2}, {"A": 2, "B": 3}, {"A": 2, "B": 2}, {"A": 2, "B": 2, "C": 1}]
    assert s.final_levels == {"A": 2, "B": 2} and not s.budget_met and s.finished()
    note = next(n for n in s.notes() if n.startswith("budget could not be met"))
    assert "param_mb 8.24 (budget 6)" in note and "memory saving 23.7%" in note and "1.6 points" in note
    assert "skipped 1 variable(s)" in s.notes()[0] and "D" in s.notes()[0]
    assert s.best() is None  # nothing met the budget: nothing infeasible is offered


def test_self_profiles_first_when_no_table_is_given() -> None:
    p = problem(params_budget=2_100_000)
    s = PrioritizedGreedy()
    asked = drive(s, p)
    n = len(sensitivity_candidates(SPACE))
    assert [c.tag for c in asked[:n]] == ["profile"] * n
    assert levels_of(asked[:n]) == levels_of(sensitivity_candidates(SPACE))
    # the first step {A:2} is the profile's own candidate: answered by its result, not asked again
    assert levels_of(asked[n:]) == [{"A": 2, "B": 3}, {"A": 2, "B": 2}]
    assert [(st.variable, st.level, st.accepted) for st in s.steps] == [("A", 2, True), ("B", 3, False), ("B", 2, True)]
    assert s.table is not None and s.table.drop("C", 2) == 2.5


def test_profile_batch_goes_out_at_once_then_the_ladder() -> None:
    p = problem(params_budget=2_100_000)
    s = PrioritizedGreedy()
    s.setup(p)
    batch = s.ask(100)
    assert len(batch) == 12 and s.ask(100) == []  # all in flight
    for c in reversed(batch):  # out of order
        s.tell(c, make_result(p, c))
    first = s.ask(5)  # {A:2} was profiled: the walk's first question is B's back-off ladder after {A:2}
    assert levels_of(first) == [{"A": 2, "B": 3}, {"A": 2, "B": 2}, {"A": 2, "B": 1}] and s.ask(5) == []
    s.tell(first[1], make_result(p, first[1]))  # rung 2 passes but rung 3 is still out: undecided
    assert s.ask(5) == [] and s.steps[-1].variable == "A"


def test_network_order_walks_by_position() -> None:
    p = problem(params_budget=None, sensitivity=table())
    s = PrioritizedGreedy(order="network")
    asked = drive(s, p)
    # B@3 1.5 ok; C@1: 1.5+0.3+0.5 = 2.3 fails; A@2: 1.5+1.0+1.0 = 3.5 fails, A@1: 2.0 ok.
    assert levels_of(asked) == [{"B": 3}, {"B": 3, "C": 1}, {"B": 3, "A": 2}, {"B": 3, "A": 1}]
    assert s.final_levels == {"A": 1, "B": 3}
    assert any(n.startswith("no cost budget") for n in s.notes())


def test_failed_evaluation_counts_as_too_large_a_drop() -> None:
    p = problem(params_budget=2_100_000, sensitivity=table())
    asked = drive(PrioritizedGreedy(), p, fail={Candidate(levels={"A": 2}).key})
    assert levels_of(asked)[:3] == [{"A": 2}, {"A": 1}, {"A": 1, "B": 3}]


def test_backoff_every_also_tries_levels_the_profile_rejected() -> None:
    # a non-monotone profile (noise): C alone fails at level 1 (3.0 > 2) but passes at level 2 (1.5)
    t = table()
    noisy = {("C", 1): 3.0, ("C", 2): 1.5}
    entries = tuple(type(e)(**{**e.to_dict(), "accuracy": BASE_ACC - noisy[(e.variable, e.level)],
                               "acc_drop": noisy[(e.variable, e.level)]}) if (e.variable, e.level) in noisy else e
                    for e in t.entries)
    t = SensitivityTable(meta=t.meta, baseline_accuracy=BASE_ACC, entries=entries, baseline_costs=t.baseline_costs)
    p = problem(params_budget=None, sensitivity=t)
    # both walk A@2 ok, B@3 fails, B@2 ok; then C: {A2,B2,C2} drops 4.6, {A2,B2,C1} 2.4
    tolerated = levels_of(drive(PrioritizedGreedy(), p))
    every = levels_of(drive(PrioritizedGreedy(backoff="every"), p))
    assert tolerated == [{"A": 2}, {"A": 2, "B": 3}, {"A": 2, "B": 2}, {"A": 2, "B": 2, "C": 2}]
    assert every == tolerated + [{"A": 2, "B": 2, "C": 1}]


def test_unpruned_model_meeting_the_budget_asks_only_it() -> None:
    p = problem(params_budget=3_000_000, sensitivity=table())
    s = PrioritizedGreedy()
    assert levels_of(drive(s, p)) == [{}]
    assert s.finished() and "already meets the budgets" in s.notes()[0]


def test_eval_budget_caps_the_walk() -> None:
    p = problem(params_budget=1_500_000, sensitivity=table(), eval_budget=2)
    s = PrioritizedGreedy()
    assert levels_of(drive(s, p)) == [{"A": 2}, {"A": 2, "B": 3}]
    assert s.finished() and any("evaluation budget of 2 spent" in n for n in s.notes())


def test_resume_by_replaying_tells_gives_the_same_state() -> None:
    p = problem(params_budget=1_500_000)
    first = PrioritizedGreedy(seed=3)
    asked = drive(first, p)
    again = PrioritizedGreedy(**first.get_params())
    again.setup(p)
    for c in asked[:14]:  # replayed without asking, as a resumed driver may do
        again.tell(c, make_result(p, c))
    rest = []
    while cands := again.ask(1):
        rest += cands
        for c in cands:
            again.tell(c, make_result(p, c))
    assert [c.key for c in rest] == [c.key for c in asked[14:]]
    assert again.final_levels == first.final_levels and again.notes() == first.notes()


def test_bad_parameters_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown order 'smallest'"):
        create_strategy("prioritized", order="smallest").setup(problem(params_budget=None))
    assert create_strategy("prioritized", seed=1).get_params() == {"seed": 1, "order": "largest_first",
                                                                   "backoff": "tolerated"}


def drive_parallel(s: PrioritizedGreedy, p: Problem, slots: int, *, lifo: bool = False) -> list[Candidate]:
    """Like the driver with ``slots`` workers: ask for the free slots, tell one result at a time."""
    s.setup(p)
    asked: list[Candidate] = []
    queue: list[Candidate] = []
    while True:
        for c in s.ask(slots - len(queue)):
            asked.append(c)
            queue.append(c)
        if not queue:
            return asked
        c = queue.pop(-1 if lifo else 0)
        s.tell(c, make_result(p, c))


@pytest.mark.parametrize("lifo", [False, True])
def test_parallel_workers_evaluate_the_back_off_ladder_speculatively(lifo: bool) -> None:
    p = problem(params_budget=1_500_000, sensitivity=table())
    serial = PrioritizedGreedy()
    serial_asked = drive(serial, p)
    s = PrioritizedGreedy()
    asked = drive_parallel(s, p, slots=3, lifo=lifo)
    # two free slots: B's rungs 3 and 2 go out together (and A's 2 and 1), so the ladder costs no extra
    # round-trip; the walk still accepts the first rung within the max drop: the same plan and steps
    assert {"A": 2, "B": 2} in levels_of(asked[:4]) and {"A": 2, "B": 3} in levels_of(asked[:4])
    assert s.final_levels == serial.final_levels == {"A": 2, "B": 2}
    assert [(st.variable, st.level, st.accepted) for st in s.steps] == \
        [(st.variable, st.level, st.accepted) for st in serial.steps]
    assert set(c.key for c in serial_asked) <= set(c.key for c in asked)
    assert s.notes() == serial.notes() and s.finished()
