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
budget is known by enumeration (:func:`feasible_region`). :func:`drive` runs a strategy through the
loop the CLI runs (:func:`hwsearch.search.loop.run_strategy`, with its Optuna journal and resume), the
evaluations done by a :class:`FunctionRunner` on the closed-form accuracy.
"""

from __future__ import annotations

import inspect
import itertools
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from hwsearch.search.results import Candidate, Constraints, Result, select_best
from hwsearch.search.encoding import PlanEncoding, Variable
from hwsearch.search.runners import Runner
from hwsearch.search.strategies import Problem, Strategy

__all__ = [
    "TOY_BASELINE_ACCURACY", "AccuracyFn", "ContractSetup", "FunctionRunner", "StrategyContract", "all_levels", "best_of", "check_candidate", "drive",
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


def toy_space() -> PlanEncoding:
    """The toy search space: 4 variables, 4 levels each (0 = unpruned), 256 candidates."""
    variables = [
        Variable(name=name, kind=kind, width=levels[0], levels=levels,
                 rates=tuple(1.0 - c / levels[0] for c in levels), params=per_unit * levels[0], order=i)
        for i, (name, kind, levels, per_unit, _, _) in enumerate(_TOY)
    ]
    return PlanEncoding(model="toy", variables=variables, checkpoint_sha256="toy")


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


def all_levels(space: PlanEncoding) -> list[dict[str, int]]:
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


def check_candidate(space: PlanEncoding, candidate: object) -> None:
    """Assert that ``candidate`` is a Candidate of ``space``: known variables, levels in range."""
    assert isinstance(candidate, Candidate), f"ask returned {type(candidate).__name__}, not Candidate"
    for name, lv in candidate.levels.items():
        assert name in space.names(), f"candidate names unknown variable {name!r}"
        assert isinstance(lv, int), f"level of {name} is {type(lv).__name__}, not int"
        assert 0 <= lv < len(space[name].levels), f"level {lv} of {name} is outside 0..{len(space[name].levels) - 1}"


@dataclass(kw_only=True)
class ContractSetup:
    """What :func:`~hwsearch.search.loop.run_strategy` reads of a run's setup, for a closed-form problem."""

    space: PlanEncoding
    run_dir: Path
    storage_url: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    halving_eta: float = 0.0


class FunctionRunner(Runner):
    """A runner whose evaluator is a closed-form accuracy function (:func:`evaluate`): results are handed
    back in submission order, ``capacity`` candidates in flight, as the serial and Ray runners do."""

    def __init__(self, problem: Problem, accuracy_fn: AccuracyFn, *, capacity: int = 1) -> None:
        self.problem, self.accuracy_fn, self.capacity = problem, accuracy_fn, capacity
        self._queue: deque[Candidate] = deque()
        self.evaluations = 0

    def start(self, spec: Any) -> None:
        """Nothing to ship: the accuracy function is local."""

    def submit(self, candidate: Candidate) -> None:
        self._queue.append(candidate)

    def in_flight(self) -> int:
        return len(self._queue)

    def next_result(self) -> Result:
        self.evaluations += 1
        return evaluate(self.problem, self._queue.popleft(), self.accuracy_fn)


def drive(strategy: Strategy, problem: Problem, accuracy_fn: AccuracyFn = toy_accuracy, *, batch: int = 1,
          budget: int | None = None, run_dir: str | Path | None = None, resume: bool = False,
          stop_after: int | None = None, max_results: int = 5000) -> list[Result]:
    """Run ``strategy`` on ``problem`` through the loop every command uses; its results, in the order told.

    This is :func:`hwsearch.search.loop.run_strategy` (asks up to the free slots, queues every asked
    candidate, tells results in ask order, answers known candidates from the shared history and earlier
    results, writes every result to an Optuna journal before the strategy hears of it) with a
    :class:`FunctionRunner` evaluating ``accuracy_fn``.

    Args:
        batch: evaluation slots: ``ask`` is called with the free ones (several candidates in flight).
        budget: the loop's evaluation budget (``--trials``); None: the strategy decides.
        run_dir: where the run's journal goes (None: a temporary folder, removed afterwards); the same
            folder with ``resume=True`` continues a stored run, replayed exactly as ``--resume`` does.
        stop_after: interrupt (as Ctrl-C would) right after this many results are stored.
        max_results: told results before the strategy is declared not to finish (AssertionError).
    """
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix="hwsearch-contract-") as tmp:
            return drive(strategy, problem, accuracy_fn, batch=batch, budget=budget, run_dir=tmp, resume=resume,
                         stop_after=stop_after, max_results=max_results)
    from hwsearch.search.loop import run_strategy

    told = 0

    def watch(result: Result) -> None:
        nonlocal told
        told += 1
        check_candidate(problem.space, result.candidate)
        if stop_after is not None and told >= stop_after:
            raise KeyboardInterrupt  # as a signal would: the result is stored, the strategy not told
        if told > max_results:
            raise AssertionError(f"{type(strategy).__name__} did not finish within {max_results} results")

    setup = ContractSetup(space=problem.space, run_dir=Path(run_dir))
    runner = FunctionRunner(problem, accuracy_fn, capacity=batch)
    outcome = run_strategy(setup, strategy, runner, study_name=strategy.name, problem=problem, eval_budget=budget,
                           resume=resume, progress=False, history=problem.history, on_result=watch)
    return outcome.results


def best_of(results: Iterable[Result]) -> Result | None:
    """The most accurate feasible result (None if none), as the driver picks it (:func:`select_best`)."""
    return select_best(results)


def _trace(results: Sequence[Result]) -> list[tuple[str, str, str]]:
    return [(r.candidate.key, r.candidate.tag, r.status) for r in results]


def with_sensitivity(problem: Problem, accuracy_fn: AccuracyFn = toy_accuracy, *, prior: str = "exclude") -> Problem:
    """``problem`` as the driver hands it to strategies: the shared profile (each variable alone at each
    level) as sensitivity table, as the :class:`~hwsearch.search.prior.Prior` and as known history."""
    from hwsearch.search.prior import Prior
    from hwsearch.search.profiling import SensitivityMeta, SensitivityTable
    from hwsearch.search.profiling import ProfileAll

    profile = drive(ProfileAll(), replace(problem, eval_budget=None), accuracy_fn)
    meta = SensitivityMeta(model=problem.space.model, checkpoint_sha256=problem.space.checkpoint_sha256,
                           rates=tuple(sorted({r for v in problem.space.variables for r in v.rates if r > 0})))
    table = SensitivityTable.from_results(problem.space, profile, problem.baseline_accuracy, meta,
                                          baseline_costs=problem.baseline_costs)
    pri = Prior(problem.space, table, problem.constraints, problem.predict, mode=prior)
    pri.observe_all(profile)
    return replace(problem, sensitivity=table, prior=pri, history=tuple(profile))


# ---- a problem shaped like the demo ---------------------------------------------------------------
DEMO_BASELINE_ACCURACY = 99.0
# name, kind, width, parameters per kept unit, single-group drop at rate r (points)
#: (group, kind, width, parameters per unit, top-1 drop in points at pruning rate r)
_DEMO: tuple[tuple[str, str, int, int, Callable[[float], float]], ...] = (
    ("patch_embed.c1", "sps", 8, 155, lambda r: 6.0 + 40.0 * r),
    ("patch_embed.c2", "sps", 16, 362, lambda r: 10.0 * r ** 2 if r < 0.25 else 4.0 + 30.0 * r),
    ("patch_embed.c3", "sps", 32, 722, lambda r: 5.0 * r ** 2 if r < 0.35 else 3.5 + 20.0 * r),
    ("block.0.attn.qk", "qk", 64, 134, lambda r: 3.0 * r ** 3),
    ("block.0.attn.v", "v", 64, 131, lambda r: 2.5 * r ** 3),
    ("block.0.mlp.hidden", "mlp", 256, 131, lambda r: 1.0 * r ** 4),
    ("block.1.attn.qk", "qk", 64, 134, lambda r: 2.5 * r ** 3),
    ("block.1.attn.v", "v", 64, 131, lambda r: 4.0 * r ** 3),
    ("block.1.mlp.hidden", "mlp", 256, 131, lambda r: 1.2 * r ** 4),
)
_DEMO_FIXED_PARAMS = 33_000
_DEMO_RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def demo_like_space() -> PlanEncoding:
    """Nine groups like the demo Spikformer: three cheap, catastrophic SPS groups, six block groups."""
    variables = []
    for i, (name, kind, width, per_unit, _) in enumerate(_DEMO):
        levels: list[int] = []
        for r in _DEMO_RATES:
            kept = max(1, round(width * (1 - r)))
            if not levels or kept < levels[-1]:
                levels.append(kept)
        variables.append(Variable(name=name, kind=kind, width=width, levels=tuple(levels),
                                  rates=tuple(1.0 - c / width for c in levels), params=per_unit * width, order=i))
    return PlanEncoding(model="demo-like", variables=variables, checkpoint_sha256="demo-like")


def _demo_costs(levels: Mapping[str, int]) -> dict[str, float]:
    space = _DEMO_SPACE
    params, macs = _DEMO_FIXED_PARAMS, 10_000_000
    for name, _, _, per_unit, _ in _DEMO:
        kept = space[name].levels[int(levels.get(name, 0))]
        params += per_unit * kept
        macs += 64 * per_unit * kept
    return {"params": float(params), "param_mb": params * 4 / 1e6, "macs_g": macs / 1e9, "act_mb": 0.0}


def demo_like_accuracy(levels: Mapping[str, int]) -> float:
    """Top-1 of the demo-like model: the single-group drops, compounded (pruned together they hurt more)."""
    space = _DEMO_SPACE
    drops = [fn(space[name].rates[int(levels.get(name, 0))]) if levels.get(name, 0) else 0.0
             for name, *_, fn in _DEMO]
    total = sum(drops)
    return max(0.0, DEMO_BASELINE_ACCURACY - total * (1.0 + 0.15 * sum(d > 0 for d in drops)))


_DEMO_SPACE = demo_like_space()


def demo_like_problem(*, param_mb: float | None = 0.48, max_acc_drop: float | None = 3.0,
                      eval_budget: int | None = 40) -> Problem:
    """The demo-like :class:`Problem`: baseline 99 % at 0.657 MB; by default <= 0.48 MB within 3 points.

    About 7e-4 of uniform random candidates are feasible (the first SPS group must stay unpruned, the
    other two tolerate mild rates only, and the block groups must share the pruning), as on the demo.
    """
    cons = Constraints(param_mb=param_mb, max_acc_drop=max_acc_drop)
    objective = "accuracy" if param_mb is not None or max_acc_drop is None else "param_mb"
    return Problem(space=_DEMO_SPACE, constraints=cons, baseline_accuracy=DEMO_BASELINE_ACCURACY,
                   baseline_costs=_demo_costs({}), predict=_demo_costs, eval_budget=eval_budget, objective=objective)


def level_importance_of(problem: Problem, accuracy_fn: AccuracyFn) -> dict[str, list[float]]:
    """A stand-in for the Fisher importance: each level's single-group drop (what the driver estimates)."""
    out = {}
    for v in problem.space.variables:
        row = [0.0]
        for lv in range(1, len(v.levels)):
            acc = accuracy_fn({v.name: lv})
            row.append(problem.baseline_accuracy - float(acc) if acc is not None else 1e6)
        out[v.name] = row
    return out


class StrategyContract:
    """What every strategy guarantees.

    The tests need a ``make_strategy`` fixture returning a factory of fresh, identically configured
    strategies; define it in the test module (it may be parametrised over the registry) or on the
    subclass. The class defines none itself, since a class fixture would hide the module's.
    """

    eval_budget: int = 30

    def problem(self, make_strategy: Callable[..., Strategy], **budgets: Any) -> Problem:
        """The toy problem as the driver hands it over: the shared profile as prior and history."""
        budgets.setdefault("eval_budget", self.eval_budget)
        problem = with_sensitivity(toy_problem(**budgets))
        if make_strategy().needs_importance:
            problem = replace(problem, importance=level_importance_of(problem, toy_accuracy))
        return problem

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
    def test_resume_replays_exactly(self, make_strategy: Callable[..., Strategy], batch: int, tmp_path: Path) -> None:
        """Interrupted halfway (after a result is stored), ``--resume`` replays the stored results through
        a fresh strategy and finishes exactly as the uninterrupted run did."""
        problem = self.problem(make_strategy)
        full = drive(make_strategy(), problem, batch=batch)
        k = max(1, len(full) // 2)
        partial = drive(make_strategy(), problem, batch=batch, run_dir=tmp_path, stop_after=k)
        assert _trace(partial) == _trace(full[:k])
        resumed = drive(make_strategy(), problem, batch=batch, run_dir=tmp_path, resume=True)
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

    def test_parallel_asks(self, make_strategy: Callable[..., Strategy]) -> None:
        problem = self.problem(make_strategy)
        results = drive(make_strategy(), problem, batch=4)
        assert results and len({r.candidate.key for r in results}) <= problem.eval_budget  # type: ignore[operator]
        assert _trace(results) == _trace(drive(make_strategy(), problem, batch=4))

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_demo_like_problem_feasible(self, make_strategy: Callable[..., Strategy], seed: int) -> None:
        """On a problem shaped like the demo (about 1e-3 of uniform draws feasible) every strategy finds a
        feasible plan within its evaluation budget, for every seed."""
        problem = with_sensitivity(demo_like_problem(), demo_like_accuracy)
        strategy = make_strategy(seed=seed)
        if strategy.needs_importance:
            problem = replace(problem, importance=level_importance_of(problem, demo_like_accuracy))
        results = drive(strategy, problem, demo_like_accuracy)
        own = [r for r in results if r.candidate.key not in {h.candidate.key for h in problem.history}]
        assert len({r.candidate.key for r in own}) <= problem.eval_budget  # type: ignore[operator]
        answer = strategy.answer([*problem.history, *results])
        assert answer is not None, f"no feasible plan in {len(own)} evaluations (seed {seed})"
        assert answer.feasible and problem.cost_feasible(answer.candidate.levels)
        assert answer.costs["param_mb"] <= problem.constraints.param_mb  # type: ignore[operator]
        assert problem.baseline_accuracy - demo_like_accuracy(answer.candidate.levels) <= 3.0

    @pytest.mark.parametrize("budgets", [{"param_mb": 0.05}, {"max_acc_drop": -1.0}, {"param_mb": 0.05, "macs_g": 1e-4}],
                             ids=["param_mb", "acc_drop", "both"])
    def test_unreachable_budget_finishes(self, make_strategy: Callable[..., Strategy], budgets: dict[str, float]) -> None:
        problem = self.problem(make_strategy, eval_budget=12, **budgets)
        assert feasible_region(problem) == []
        strategy = make_strategy()
        results = drive(strategy, problem)
        assert best_of(results) is None
        assert all(isinstance(line, str) for line in strategy.notes())
