"""The search driver: strategy asks, runner evaluates, storage keeps, strategy is told.

``hwsearch.search(study, strategy="tpe", constraints={"param_mb": 1.5, "max_acc_drop": 3})`` is the
whole ``hwsearch run`` in one call; it returns a :class:`SearchResult` with the best pruned model, the
trials and the Pareto front as pandas DataFrames. Everything computed is kept: each evaluation is
written to the Optuna storage before the strategy hears of it, and a killed or interrupted run continues
with ``resume=True`` by replaying the stored results through a fresh strategy of the same seed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn
from hwsearch.progress import progress_bar

from hwsearch.errors import UserError
from hwsearch.evaluation import Evaluator, EvaluatorSpec
from hwsearch.pareto import pareto_front, trials_frame
from hwsearch.results import Candidate, Constraints, Result
from hwsearch.runners import Runner, make_runner
from hwsearch.space import DEFAULT_AXES, DEFAULT_RATES, SearchSpace
from hwsearch.storage import ResultStore, open_storage
from hwsearch.strategies import Problem, Strategy, create_strategy
from hwsearch.study import Study, load_study

__all__ = ["SearchSetup", "SearchResult", "prepare", "search", "compare", "run_strategy", "UNREACHABLE"]

log = logging.getLogger(__name__)

UNREACHABLE = ("budget {what} {limit:g} {unit} is below the smallest reachable model ({best:.4g} {unit} at the "
               "maximum rates of the searched groups); raise {flag} or search more groups with --axes {axes}")
_FLAGS = {"param_mb": ("--budget-mb", "MB"), "macs_g": ("--budget-macs", "GMACs"), "act_mb": ("--budget-act-mb", "MB")}


@dataclass(kw_only=True)
class SearchSetup:
    """What every strategy of a run shares: model, space, evaluation data, baseline, constraints."""

    study: Study
    space: SearchSpace
    spec: EvaluatorSpec
    local: Evaluator
    constraints: Constraints
    baseline: Result
    run_dir: Path
    storage_url: str | None = None
    test_batches: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def problem(self, *, eval_budget: int | None, sensitivity: Any = None,
                objectives: Sequence[str] = ("param_mb",)) -> Problem:
        return Problem(space=self.space, constraints=self.constraints, baseline_accuracy=float(self.baseline.accuracy or 0),
                       baseline_costs=dict(self.baseline.costs), predict=self.local.costs, eval_budget=eval_budget,
                       sensitivity=sensitivity, objectives=tuple(objectives))


@dataclass(kw_only=True)
class SearchResult:
    """What a search returns (also written to its run directory)."""

    strategy: str
    run_dir: Path
    baseline: Result
    results: list[Result]
    best: Result | None
    best_model: nn.Module | None
    best_test_accuracy: float | None
    baseline_test_accuracy: float | None
    trials: pd.DataFrame
    pareto: pd.DataFrame
    seconds: float
    evaluations: int
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False


def _batches(ds: torch.utils.data.Dataset, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from hwsearch.data import make_loader

    return [(x, y) for x, y in make_loader(ds, batch_size=batch_size)]


def prepare(study: Study | str | Path, *, constraints: Mapping[str, Any] | None = None,
            axes: Sequence[str] = DEFAULT_AXES, rates: Sequence[float] = DEFAULT_RATES, criterion: str = "l2",
            eval_subset: int | None = None, run_dir: str | Path = "runs/latest", storage: str | None = None,
            progress: bool = True) -> SearchSetup:
    """Load the model and data, build the space, measure the baseline, check the budget is reachable."""
    from hwsearch.loading import load_study_model, study_dataset

    if not isinstance(study, Study):
        study = load_study(study)
    cons = replace(study.constraints, **{k: v for k, v in (constraints or {}).items() if v is not None})
    loaded = load_study_model(study)
    space = SearchSpace.from_model(loaded.model, axes=axes, rates=rates,
                                   checkpoint_sha256=loaded.checkpoint.sha256, criterion=criterion)
    subset = eval_subset if eval_subset is not None else study.data.eval_subset
    batches = _batches(study_dataset(study, study.data.eval_split, subset=subset), study.data.batch_size)
    spec = EvaluatorSpec(config=loaded.config, model_kwargs=dict(loaded.model.hwsearch_kwargs),
                         state_dict={k: v.clone() for k, v in loaded.model.state_dict().items()}, space=space,
                         batches=batches, constraints=cons)
    local = Evaluator(spec)
    base_costs = local.costs({})
    for key, (flag, unit) in _FLAGS.items():  # before any evaluation: is the budget reachable at all?
        limit = getattr(cons, key)
        if limit is not None:
            best = local.costs(space.max_levels())[key]
            if best > limit:
                more = ",".join(sorted(set(axes) | {"embed", "heads"}))
                raise UserError(UNREACHABLE.format(what=key, limit=limit, unit=unit, best=best, flag=flag, axes=more))
    acc = local.accuracy(local.model)
    spec.baseline_accuracy = acc
    baseline = Result(candidate=Candidate(levels={}, tag="baseline"), status="ok", accuracy=acc, acc_drop=0.0,
                      costs=base_costs, violations=cons.violations(base_costs, 0.0))
    test = _batches(study_dataset(study, study.data.test_split), study.data.batch_size)
    return SearchSetup(study=study, space=space, spec=spec, local=local, constraints=cons, baseline=baseline,
                       run_dir=Path(run_dir), storage_url=storage, test_batches=test)


def _best(results: Sequence[Result]) -> Result | None:
    feasible = [r for r in results if r.feasible]
    return max(feasible, key=lambda r: (r.accuracy, -r.costs["param_mb"])) if feasible else None


def run_strategy(setup: SearchSetup, strategy: Strategy, runner: Runner, *, study_name: str,
                 eval_budget: int | None = None, resume: bool = False, progress: bool = True,
                 sensitivity: Any = None, on_result: Callable[[Result], None] | None = None) -> tuple[list[Result], bool]:
    """Drive one strategy to the end; returns its results (evaluation order) and whether it was interrupted.

    Candidates already in the store (resume, or shared between strategies) are told without evaluating.
    """
    store = ResultStore(open_storage(setup.run_dir, setup.storage_url), study_name, setup.space,
                        meta={"strategy": strategy.name, "params": strategy.get_params(), "space": setup.space.names(),
                              "model": setup.space.model, "checkpoint": setup.space.checkpoint_sha256})
    stored = store.results()
    if stored and not resume:
        raise UserError(f"run '{study_name}' in {setup.run_dir} already has {len(stored)} results; "
                        "pass --resume to continue it or --out to start a new run")
    cache = {r.candidate.key: r for r in stored}
    durable = set(cache)  # keys already written to the store
    strategy.setup(setup.problem(eval_budget=eval_budget, sensitivity=sensitivity))
    results: list[Result] = []
    queue: list[Candidate] = []  # asked, in order; evaluated (or cached) results are told in this order
    submitted: dict[str, int] = {}
    bar = progress_bar(total=eval_budget, desc=strategy.name, enabled=progress, unit="eval", leave=False)
    best: Result | None = None
    interrupted = False

    def record(res: Result) -> None:
        nonlocal best
        res = replace(res, number=len(results))
        if res.candidate.key not in durable:
            store.append(res)
            durable.add(res.candidate.key)
        cache.setdefault(res.candidate.key, res)
        results.append(res)
        if res.feasible and (best is None or (res.accuracy or 0) > (best.accuracy or 0)):
            best = res
        bar.update(1)
        bar.set_postfix(best=f"{best.accuracy:.2f}" if best else "-", feasible=sum(r.feasible for r in results), refresh=False)
        if on_result:
            on_result(res)

    try:
        while True:
            # Occupancy counts every asked-but-untold candidate, cached or not, so a resumed run asks
            # and tells in exactly the same order as the original one.
            room = runner.capacity - len(queue)
            if eval_budget is not None:
                room = min(room, eval_budget - len(results) - len(queue))
            asked = strategy.ask(room) if room > 0 else []
            for cand in asked:
                queue.append(cand)
                if cand.key not in cache and cand.key not in submitted:
                    submitted[cand.key] = 1
                    runner.submit(cand)
            if not queue:
                break
            cand = queue.pop(0)
            if cand.key in cache:
                res = cache[cand.key]
            else:
                for early in runner.poll_finished():  # durable as soon as finished
                    if early.candidate.key not in durable:
                        store.append(early)
                        durable.add(early.candidate.key)
                res = runner.next_result()
                submitted.pop(cand.key, None)
            record(replace(res, candidate=cand))
            strategy.tell(cand, res)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    return results, interrupted


def search(study: Study | str | Path | None = None, *, strategy: str = "prioritized", constraints: Mapping[str, Any] | None = None,
           trials: int | None = None, workers: int = 1, ray_address: str | None = None, seed: int = 0,
           out: str | Path | None = None, storage: str | None = None, resume: bool = False,
           axes: Sequence[str] = DEFAULT_AXES, rates: Sequence[float] = DEFAULT_RATES, criterion: str = "l2",
           eval_subset: int | None = None, sensitivity_file: str | Path | None = None, progress: bool = True,
           strategy_params: Mapping[str, Any] | None = None, setup: SearchSetup | None = None) -> SearchResult:
    """Search pruning plans of ``study``'s model with one strategy; write and return the results.

    Args:
        study: a Study, or the path of a study TOML (None: the demo study).
        strategy: registered strategy name (``hwsearch strategies``).
        constraints: overrides of the study's constraints: ``param_mb``, ``macs_g``, ``act_mb``,
            ``max_acc_drop`` (percentage points), ``dtype``.
        trials: the most accuracy evaluations (the strategy's own default when None).
        workers / ray_address: parallel evaluation on Ray (local, or an existing cluster).
        seed: the strategy's seed. out: run directory (default ``runs/<study>-<strategy>``).
        storage: Optuna storage URL (default: a journal file in the run directory).
        resume: continue a run from its storage.
        axes / rates / criterion: the searched group kinds, the rate grid and the channel ranking.
        eval_subset: evaluate on this many seeded samples of the study's eval split.
        sensitivity_file: a sensitivity table to reuse (else computed once and cached in the run dir).
    """
    from hwsearch.report import write_outputs
    from hwsearch.study import default_study_path

    t0 = time.perf_counter()
    if setup is None:
        study_obj = study if isinstance(study, Study) else load_study(study if study is not None else default_study_path())
        run_dir = Path(out) if out is not None else Path("runs") / f"{study_obj.name}-{strategy}"
        setup = prepare(study_obj, constraints=constraints, axes=axes, rates=rates, criterion=criterion,
                        eval_subset=eval_subset, run_dir=run_dir, storage=storage, progress=progress)
    strat = create_strategy(strategy, seed=seed, **dict(strategy_params or {}))
    table = None
    runner = make_runner(workers, ray_address)
    with runner:
        runner.start(setup.spec)
        if strat.needs_sensitivity:
            from hwsearch.sensitivity_run import ensure_sensitivity

            table = ensure_sensitivity(setup, runner, file=sensitivity_file, resume=True, progress=progress)
        results, interrupted = run_strategy(setup, strat, runner, study_name=strategy, eval_budget=trials,
                                            resume=resume, progress=progress, sensitivity=table)
    every = _with_profile(setup, results, table)
    best = _best(every)  # the best feasible candidate of everything this run evaluated
    best_model, best_test = None, None
    if best is not None and not interrupted:
        best_model = setup.local.pruned_model(best.candidate)
        best_test = setup.local.accuracy(best_model, setup.test_batches)
    base_test = setup.local.accuracy(setup.local.model, setup.test_batches) if not interrupted else None
    profile = _profile_size(setup) if table is not None else 0
    res = SearchResult(strategy=strategy, run_dir=setup.run_dir, baseline=setup.baseline, results=every, best=best,
                       best_model=best_model, best_test_accuracy=best_test, baseline_test_accuracy=base_test,
                       trials=trials_frame(every, setup.space), pareto=trials_frame(pareto_front(every), setup.space),
                       seconds=time.perf_counter() - t0, evaluations=len(results) + profile, notes=strat.notes(),
                       interrupted=interrupted)
    write_outputs(setup, res)
    return res


def _profile_results(setup: SearchSetup) -> list[Result]:
    """The sensitivity-profile evaluations stored in this run (none when the table came from a file)."""
    store = ResultStore(open_storage(setup.run_dir, setup.storage_url), "profile", setup.space)
    return store.results()


def _with_profile(setup: SearchSetup, results: list[Result], table: Any) -> list[Result]:
    """Profile evaluations first, then the strategy's, renumbered: every evaluated candidate of the run."""
    if table is None:
        return results
    merged = [*_profile_results(setup), *results]
    return [replace(r, number=i) for i, r in enumerate(merged)]


def _profile_size(setup: SearchSetup) -> int:
    from hwsearch.sensitivity import sensitivity_candidates

    return len(sensitivity_candidates(setup.space))


def compare(study: Study | str | Path | None = None, *, strategies: Sequence[str], eval_budget: int,
            constraints: Mapping[str, Any] | None = None, workers: int = 1, ray_address: str | None = None,
            seed: int = 0, out: str | Path | None = None, resume: bool = False, axes: Sequence[str] = DEFAULT_AXES,
            rates: Sequence[float] = DEFAULT_RATES, criterion: str = "l2", eval_subset: int | None = None,
            sensitivity_file: str | Path | None = None, progress: bool = True) -> tuple[pd.DataFrame, list[SearchResult]]:
    """Run several strategies on one study under the same evaluation budget and seed.

    Every strategy gets ``eval_budget`` accuracy evaluations in total; for strategies that need the
    sensitivity table, its profile (computed once, shared) counts against their budget. Each strategy
    writes its own run directory ``<out>/<strategy>/``; all trials go to one storage ``<out>/optuna.journal``.
    Returns the comparison table (also ``comparison.csv`` and ``comparison.png`` in ``out``).
    """
    from hwsearch.pareto import plot_pareto
    from hwsearch.report import write_outputs
    from hwsearch.sensitivity_run import ensure_sensitivity
    from hwsearch.strategies import STRATEGIES
    from hwsearch.study import default_study_path

    for name in strategies:
        STRATEGIES.get(name)
    study_obj = study if isinstance(study, Study) else load_study(study if study is not None else default_study_path())
    out_dir = Path(out) if out is not None else Path("runs") / f"{study_obj.name}-compare"
    journal = str(out_dir / "optuna.journal")
    setup = prepare(study_obj, constraints=constraints, axes=axes, rates=rates, criterion=criterion,
                    eval_subset=eval_subset, run_dir=out_dir, storage=journal, progress=progress)
    needs = [n for n in strategies if STRATEGIES.get(n).needs_sensitivity]
    profile = _profile_size(setup) if needs else 0
    if needs and profile >= eval_budget:
        raise UserError(f"--eval-budget {eval_budget} does not cover the sensitivity profile ({profile} evaluations) "
                        f"that {', '.join(needs)} need; raise --eval-budget above {profile}")
    rows, runs = [], []
    runner = make_runner(workers, ray_address)
    with runner:
        runner.start(setup.spec)
        table = None
        if needs:
            t_prof = time.perf_counter()
            table = ensure_sensitivity(setup, runner, file=sensitivity_file, progress=progress)
            prof_seconds = time.perf_counter() - t_prof
        for name in strategies:
            t0 = time.perf_counter()
            strat = create_strategy(name, seed=seed)
            uses = strat.needs_sensitivity
            budget = eval_budget - (profile if uses else 0)
            results, interrupted = run_strategy(setup, strat, runner, study_name=name, eval_budget=budget,
                                                resume=resume, progress=progress, sensitivity=table if uses else None)
            seconds = time.perf_counter() - t0 + (prof_seconds if uses else 0.0)
            every = _with_profile(setup, results, table if uses else None)
            best = _best(every)
            sub = replace(setup, run_dir=out_dir / name)
            best_model = setup.local.pruned_model(best.candidate) if best is not None else None
            best_test = setup.local.accuracy(best_model, setup.test_batches) if best_model is not None else None
            res = SearchResult(strategy=name, run_dir=sub.run_dir, baseline=setup.baseline, results=every, best=best,
                               best_model=best_model, best_test_accuracy=best_test, baseline_test_accuracy=None,
                               trials=trials_frame(every, setup.space),
                               pareto=trials_frame(pareto_front(every), setup.space), seconds=seconds,
                               evaluations=len(results) + (profile if uses else 0), notes=strat.notes(),
                               interrupted=interrupted)
            write_outputs(sub, res)
            runs.append(res)
            base = setup.baseline.costs
            rows.append({"strategy": name, "best_top1": best.accuracy if best else None,
                         "acc_drop": best.acc_drop if best else None,
                         "test_top1": best_test,
                         "param_mb": best.costs["param_mb"] if best else None,
                         "memory_saving_%": 100 * (1 - best.costs["param_mb"] / base["param_mb"]) if best else None,
                         "macs_saving_%": 100 * (1 - best.costs["macs_g"] / base["macs_g"]) if best else None,
                         "feasible": sum(r.feasible for r in results), "evaluations": res.evaluations,
                         "wall_s": round(seconds, 1)})
            if interrupted:
                break
    frame = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "comparison.csv", index=False)
    plot_pareto({r.strategy: r.results for r in runs}, str(out_dir / "comparison.png"), baseline=setup.baseline,
                budgets={"param_mb": setup.constraints.param_mb, "macs_g": setup.constraints.macs_g},
                title=f"{study_obj.name}: strategies at {eval_budget} evaluations")
    return frame, runs
