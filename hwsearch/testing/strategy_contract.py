"""The strategy contract: tests every search strategy must pass, shipped for plug-ins outside hwsearch too.

Subclass :class:`StrategyContract` and provide a ``make_strategy`` fixture returning a factory of fresh,
identically configured strategies (like Optuna's ``optuna/testing/pytest_samplers.py``)::

    @pytest.fixture(params=list_strategies())
    def make_strategy(request):
        return lambda **kw: create_strategy(request.param, seed=0, **kw)

    class TestEveryStrategy(StrategyContract):
        pass

The tests run on :func:`toy_problem`, a 4-variable x 4-level space (256 candidates) with a closed-form
linear cost model and a closed-form accuracy (:func:`toy_accuracy`), so the feasible region under any
budget is known by enumeration (:func:`feasible_region`). :func:`drive` is the search driver's loop
(``hwsearch.driver.run_strategy``) without storage or runners: ask up to the free slots, answer a
repeated candidate at once, evaluate the rest one at a time (or take an earlier run's stored result, in
the same turn, which is how a resumed run replays) and tell each result.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from hwsearch.results import Candidate, Constraints, Result
from hwsearch.space import SearchSpace, Variable
from hwsearch.strategies import Problem, Strategy

__all__ = [
    "TOY_BASELINE_ACCURACY", "AccuracyFn", "StrategyContract", "all_levels", "best_of", "check_candidate", "drive",
    "evaluate", "feasible_region", "toy_accuracy", "toy_problem", "toy_space", "with_sensitivity",
]

#: levels (variable name -> level index) -> top-1 in percent, or None for a failed evaluation.
AccuracyFn = Callable[[Mapping[str, int]], "float | None"]

TOY_BASELINE_ACCURACY = 80.0
# name, kind, kept counts per level, parameters per kept unit, MACs per kept unit, accuracy drop per level^2
_TOY = (
    ("blocks.0.mlp.hidden", "mlp", (256, 192, 128, 64), 128, 8192, 0.10),
    ("blocks.1.mlp.hidden", "mlp", (256, 192, 128, 64), 128, 8192, 0.25),
    ("blocks.0.attn.qk", "qk", (64, 48, 32, 16), 256, 20480, 1.00),
    ("patch_embed.sps", "sps", (128, 96, 64, 32), 96, 24576, 0.40),
)
_TOY_FIXED_PARAMS = 20_000
_TOY_FIXED_MACS = 2_000_000
_TOY_ACT_BYTES_PER_UNIT = 4 * 64 // 8  # T=4 steps x 64 tokens, one bit per spike


def toy_space() -> SearchSpace:
    """The toy search space: 4 variables, 4 levels each (0 = unpruned), 256 candidates."""
    variables = [
        Variable(name=name, kind=kind, width=levels[0], levels=levels,
                 rates=tuple(1.0 - c / levels[0] for c in levels), params=per_unit * levels[0], order=i)
        for i, (name, kind, levels, per_unit, _, _) in enumerate(_TOY)
    ]
    return SearchSpace(model="toy", variables=variables, checkpoint_sha256="toy")


def _toy_costs(levels: Mapping[str, int]) -> dict[str, float]:
    params, macs, act = _TOY_FIXED_PARAMS, _TOY_FIXED_MACS, 0
    for name, _, counts, per_unit, macs_unit, _ in _TOY:
        kept = counts[int(levels.get(name, 0))]
        params += per_unit * kept
        macs += macs_unit * kept
        act += _TOY_ACT_BYTES_PER_UNIT * kept
    return {"params": float(params), "param_mb": params * 4 / 1e6, "macs_g": macs / 1e9, "act_mb": act / 1e6}


def toy_accuracy(levels: Mapping[str, int]) -> float:
    """Closed-form top-1 of the toy model: 80 minus each variable's sensitivity times its level squared.

    Sensitivities 0.1, 0.25, 1.0, 0.4: the big MLP groups are cheap to prune, the attention group is not.
    """
    return TOY_BASELINE_ACCURACY - sum(s * int(levels.get(name, 0)) ** 2 for name, *_, s in _TOY)


def toy_problem(*, param_mb: float | None = 0.34, macs_g: float | None = None, act_mb: float | None = None,
                max_acc_drop: float | None = 3.0, eval_budget: int | None = 30, sensitivity: Any = None,
                objectives: Sequence[str] = ("param_mb",)) -> Problem:
    """The toy :class:`Problem`: baseline 80 % at 0.456832 MB; by default <= 0.34 MB within 3 points.

    Under the default budgets 168 of the 256 candidates meet the memory budget and 22 are feasible
    (:func:`feasible_region`); the best reaches 78.85 %. The smallest model (every variable at level 3)
    has 0.174208 MB, 0.004162688 GMACs and 0.005632 activation MB, so budgets below those are unreachable.
    """
    cons = Constraints(param_mb=param_mb, macs_g=macs_g, act_mb=act_mb, max_acc_drop=max_acc_drop)
    return Problem(space=toy_space(), constraints=cons, baseline_accuracy=TOY_BASELINE_ACCURACY,
                   baseline_costs=_toy_costs({}), predict=_toy_costs, eval_budget=eval_budget,
                   sensitivity=sensitivity, objectives=tuple(objectives))


def all_levels(space: SearchSpace) -> list[dict[str, int]]:
    """Every candidate of a (small) space, as full level maps."""
    names = space.names()
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(range(len(v.levels)) for v in space.variables))]


def feasible_region(problem: Problem, accuracy_fn: AccuracyFn = toy_accuracy) -> list[dict[str, int]]:
    """The candidates meeting every budget and the accuracy-drop limit, by enumeration."""
    out = []
    for levels in all_levels(problem.space):
        acc = accuracy_fn(levels)
        if acc is None:
            continue
        viol = problem.constraints.violations(problem.predict(levels), problem.baseline_accuracy - acc)
        if all(v <= 1e-12 for v in viol.values()):
            out.append(levels)
    return out


def evaluate(problem: Problem, candidate: Candidate, accuracy_fn: AccuracyFn) -> Result:
    """The Result an evaluator would return: exact costs, accuracy from ``accuracy_fn``, violations."""
    costs = dict(problem.predict(candidate.levels))
    try:
        acc = accuracy_fn(candidate.levels)
        error = "" if acc is not None else "evaluation failed (injected)"
    except Exception as exc:  # noqa: BLE001 - an evaluation that raises is a failed result, as in the runners
        acc, error = None, f"{type(exc).__name__}: {exc}"
    if acc is None:
        return Result(candidate=candidate, status="failed", costs=costs,
                      violations=problem.constraints.violations(costs, None), error=error)
    drop = problem.baseline_accuracy - float(acc)
    return Result(candidate=candidate, status="ok", accuracy=float(acc), acc_drop=drop, costs=costs,
                  violations=problem.constraints.violations(costs, drop))


def check_candidate(space: SearchSpace, candidate: object) -> None:
    """Assert that ``candidate`` is a Candidate of ``space``: known variables, levels in range."""
    assert isinstance(candidate, Candidate), f"ask returned {type(candidate).__name__}, not Candidate"
    for name, lv in candidate.levels.items():
        assert name in space.names(), f"candidate names unknown variable {name!r}"
        assert isinstance(lv, int), f"level of {name} is {type(lv).__name__}, not int"
        assert 0 <= lv < len(space[name].levels), f"level {lv} of {name} is outside 0..{len(space[name].levels) - 1}"


def drive(strategy: Strategy, problem: Problem, accuracy_fn: AccuracyFn = toy_accuracy, *, batch: int = 1,
          budget: int | None = None, stored: Iterable[Result] = (), stop_after: int | None = None,
          order: str = "fifo", max_steps: int = 5000) -> list[Result]:
    """Run ``strategy`` on ``problem`` like the search driver; all results, in the order they were told.

    Args:
        batch: evaluation slots: ``ask`` is called with the free ones (several candidates in flight).
        budget: the driver's evaluation budget (``--trials``); None: the strategy decides.
        stored: results of an earlier, interrupted run: an asked candidate with a stored key is queued
            like an evaluation and, when its turn comes, told the stored result without evaluating. So
            the replay repeats the earlier run's interleaving of asks and tells exactly, also with
            several slots (telling stored results at once, right after the ask, would not).
        stop_after: stop (as if interrupted) once this many results were told; in-flight ones are lost.
        order: ``fifo`` tells in ask order; ``lifo`` tells the newest in-flight candidate first.
        max_steps: loop iterations before the strategy is declared not to finish (AssertionError).
    """
    assert order in ("fifo", "lifo"), order
    strategy.setup(problem)
    replay = {r.candidate.key: r for r in stored}
    cache: dict[str, Result] = {}  # results told in this run: a repeated ask is answered at once
    results: list[Result] = []
    queue: list[Candidate] = []

    def record(cand: Candidate, res: Result) -> None:
        res = replace(res, candidate=cand, number=len(results))
        cache.setdefault(cand.key, res)
        results.append(res)
        strategy.tell(cand, res)

    for _ in range(max_steps):
        if stop_after is not None and len(results) >= stop_after:
            return results
        room = batch - len(queue)
        if budget is not None:
            room = min(room, budget - len(results) - len(queue))
        asked = strategy.ask(room) if room > 0 else []
        assert isinstance(asked, list), f"ask returned {type(asked).__name__}, not list"
        assert len(asked) <= max(room, 0), f"ask({room}) returned {len(asked)} candidates"
        for cand in asked:
            check_candidate(problem.space, cand)
            if cand.key in cache:
                record(cand, cache[cand.key])
            else:
                queue.append(cand)
        if not queue:
            if not asked:
                return results
            continue
        cand = queue.pop(0 if order == "fifo" else -1)
        res = cache.get(cand.key) or replay.get(cand.key) or evaluate(problem, cand, accuracy_fn)
        record(cand, res)
    raise AssertionError(f"{type(strategy).__name__} did not finish within {max_steps} driver steps "
                         f"({len(results)} results)")


def best_of(results: Iterable[Result]) -> Result | None:
    """The most accurate feasible result (None if none), as the driver picks it."""
    feasible = [r for r in results if r.feasible]
    return max(feasible, key=lambda r: (r.accuracy, -r.costs["param_mb"])) if feasible else None


def _trace(results: Sequence[Result]) -> list[tuple[str, str, str]]:
    return [(r.candidate.key, r.candidate.tag, r.status) for r in results]


def with_sensitivity(problem: Problem, accuracy_fn: AccuracyFn = toy_accuracy) -> Problem:
    """``problem`` with the sensitivity table the driver would compute first (each variable alone at each level)."""
    from hwsearch.sensitivity import SensitivityMeta, SensitivityTable
    from hwsearch.strategies._profile import ProfileAll

    profile = drive(ProfileAll(), replace(problem, eval_budget=None), accuracy_fn)
    meta = SensitivityMeta(model=problem.space.model, checkpoint_sha256=problem.space.checkpoint_sha256,
                           rates=(0.25, 0.5, 0.75))
    table = SensitivityTable.from_results(problem.space, profile, problem.baseline_accuracy, meta,
                                          baseline_costs=problem.baseline_costs)
    return replace(problem, sensitivity=table)


class StrategyContract:
    """What every strategy guarantees.

    The tests need a ``make_strategy`` fixture returning a factory of fresh, identically configured
    strategies; define it in the test module (it may be parametrised over the registry) or on the
    subclass. The class defines none itself, since a class fixture would hide the module's.
    """

    eval_budget: int = 30

    def problem(self, make_strategy: Callable[..., Strategy], **budgets: Any) -> Problem:
        """The toy problem, with a sensitivity table when the strategy needs one."""
        budgets.setdefault("eval_budget", self.eval_budget)
        problem = toy_problem(**budgets)
        return with_sensitivity(problem) if make_strategy().needs_sensitivity else problem

    def test_constructor_is_keyword_only(self, make_strategy: Callable[..., Strategy]) -> None:
        sig = inspect.signature(type(make_strategy()).__init__)
        positional = [p.name for p in list(sig.parameters.values())[1:] if p.kind is not p.KEYWORD_ONLY]
        assert positional == [], f"constructor parameters must be keyword-only: {positional}"

    def test_finds_feasible_within_budget(self, make_strategy: Callable[..., Strategy]) -> None:
        problem = self.problem(make_strategy)
        results = drive(make_strategy(), problem)
        best = best_of(results)
        assert best is not None, f"no feasible result in {len(results)} evaluations"
        region = [Candidate(levels=lv).key for lv in feasible_region(problem)]
        assert best.candidate.key in region
        assert best.costs["param_mb"] <= problem.constraints.param_mb  # type: ignore[operator]
        assert best.acc_drop is not None and best.acc_drop <= problem.constraints.max_acc_drop  # type: ignore[operator]

    def test_respects_eval_budget(self, make_strategy: Callable[..., Strategy]) -> None:
        problem = self.problem(make_strategy, eval_budget=12)
        results = drive(make_strategy(), problem)
        assert 0 < len({r.candidate.key for r in results}) <= 12

    def test_candidates_stay_in_space(self, make_strategy: Callable[..., Strategy]) -> None:
        problem = self.problem(make_strategy)
        for r in drive(make_strategy(), problem, batch=3):  # drive checks every ask; check again here
            check_candidate(problem.space, r.candidate)
            problem.space.plan(r.candidate.levels)

    def test_same_seed_same_asks(self, make_strategy: Callable[..., Strategy]) -> None:
        problem = self.problem(make_strategy)
        first = drive(make_strategy(), problem, batch=2)
        second = drive(make_strategy(), problem, batch=2)
        assert _trace(first) == _trace(second)

    @pytest.mark.parametrize("batch", [1, 3])
    def test_resume_replays_exactly(self, make_strategy: Callable[..., Strategy], batch: int) -> None:
        problem = self.problem(make_strategy)
        full = drive(make_strategy(), problem, batch=batch)
        k = max(1, len(full) // 2)
        partial = drive(make_strategy(), problem, batch=batch, stop_after=k)
        assert _trace(partial) == _trace(full[:k])
        resumed = drive(make_strategy(), problem, batch=batch, stored=partial)
        assert _trace(resumed) == _trace(full)

    def test_failed_results_never_raise(self, make_strategy: Callable[..., Strategy]) -> None:
        problem = self.problem(make_strategy)
        calls = itertools.count(1)

        def flaky(levels: Mapping[str, int]) -> float | None:
            n = next(calls)
            if n % 3 == 0:
                raise RuntimeError("worker died")
            return None if n % 3 == 1 and n > 1 else toy_accuracy(levels)

        results = drive(make_strategy(), problem, flaky)
        assert results, "no candidate asked"
        assert all(not r.feasible for r in results if r.status == "failed")
        if len(results) >= 3:
            assert any(r.status == "failed" for r in results)

    def test_every_result_failed(self, make_strategy: Callable[..., Strategy]) -> None:
        problem = self.problem(make_strategy, eval_budget=10)
        results = drive(make_strategy(), problem, lambda levels: None)
        assert len(results) <= 10 and best_of(results) is None

    def test_clone_from_params(self, make_strategy: Callable[..., Strategy]) -> None:
        strategy = make_strategy()
        params = strategy.get_params()
        clone = type(strategy)(**params)
        assert clone.get_params() == params
        problem = self.problem(make_strategy)
        assert _trace(drive(clone, problem)) == _trace(drive(make_strategy(), problem))

    @pytest.mark.parametrize("order", ["fifo", "lifo"])
    def test_parallel_asks(self, make_strategy: Callable[..., Strategy], order: str) -> None:
        problem = self.problem(make_strategy)
        results = drive(make_strategy(), problem, batch=4, order=order)
        assert results and len({r.candidate.key for r in results}) <= problem.eval_budget  # type: ignore[operator]
        assert _trace(results) == _trace(drive(make_strategy(), problem, batch=4, order=order))

    @pytest.mark.parametrize("budgets", [{"param_mb": 0.05}, {"max_acc_drop": -1.0}, {"param_mb": 0.05, "macs_g": 1e-4}],
                             ids=["param_mb", "acc_drop", "both"])
    def test_unreachable_budget_finishes(self, make_strategy: Callable[..., Strategy], budgets: dict[str, float]) -> None:
        problem = self.problem(make_strategy, eval_budget=12, **budgets)
        assert feasible_region(problem) == []
        strategy = make_strategy()
        results = drive(strategy, problem)
        assert best_of(results) is None
        assert all(isinstance(line, str) for line in strategy.notes())
