"""Several strategies on one study under one evaluation budget: the comparison table and plot.

:func:`compare` is ``hwsearch compare``: the shared profile once, the warm-start sources first, then
each strategy through :func:`hwsearch.runs.run`'s loop and :func:`~hwsearch.runs.finish`; writes
``comparison.csv`` and ``comparison.png`` next to each strategy's run directory.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hwsearch.errors import UserError
from hwsearch.reports.report import work_columns
from hwsearch.runs import SearchResult, finish, latency_notes, merge_results, strategy_notes
from hwsearch.search.encoding import DEFAULT_AXES, DEFAULT_RATES
from hwsearch.search.loop import check_stored_runs, run_strategy
from hwsearch.search.results import MEASURED_BUDGETS, Result
from hwsearch.search.runners import make_runner
from hwsearch.search.session import CONFIRM_TOP, SearchSetup, prepare
from hwsearch.search.strategies import create_strategy
from hwsearch.study import Study, load_study

__all__ = ["WARM_SOURCES", "compare"]


def _finetune_columns(setup: SearchSetup, res: SearchResult, epochs: int, *, resume: bool,
                      progress: bool) -> dict[str, Any]:
    """Fine-tune a strategy's answer (``best-finetuned/`` next to ``best/``) and return its table columns."""
    from hwsearch.finetune import finetune_run_answer

    ft = finetune_run_answer(setup.study, res.run_dir, epochs, resume=resume, progress=progress)
    test_base, confirm_base = setup.baseline_test, setup.baseline_confirm
    return {"finetuned_top1": ft.eval_after,
            "finetuned_confirm_drop": None if confirm_base is None or ft.confirm_after is None
            else confirm_base - ft.confirm_after,
            "finetuned_test_drop": None if test_base is None else test_base - ft.test_after,
            "finetune_epochs": ft.epochs, "finetune_s": round(ft.seconds, 1)}

#: Strategies whose answers warm-start the global ones in ``compare`` (run first when present).
WARM_SOURCES: tuple[str, ...] = ("prioritized", "knapsack", "analytic")


def compare(study: Study | str | Path | None = None, *, strategies: Sequence[str], eval_budget: int,
            constraints: Mapping[str, Any] | None = None, workers: int = 1, ray_address: str | None = None,
            seed: int = 0, out: str | Path | None = None, resume: bool = False, axes: Sequence[str] = DEFAULT_AXES,
            rates: Sequence[float] = DEFAULT_RATES, criterion: str = "l2", eval_subset: int | None = None,
            sensitivity_file: str | Path | None = None, progress: bool = True, bn_recalibrate: int | None = None,
            prior: str | None = None, objective: str | None = None, early_stop: bool | None = None,
            warm_start: bool = True, setup: SearchSetup | None = None,
            confirm_top: int = CONFIRM_TOP, halving: float | None = None, threads: int | None = None,
            device: str | None = None, finetune_epochs: int | None = None,
            cost_models: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[SearchResult]]:
    """Run several strategies on one study under the same evaluation budget and seed.

    Every strategy gets ``eval_budget`` new accuracy evaluations and the same shared profile (computed or
    reused once, reported in its own row and counted once). With ``warm_start`` the answers of the
    greedy, knapsack and analytic strategies (run first) are the first candidates the global strategies
    evaluate (``Problem.warm_start``). Each strategy writes its own run directory ``<out>/<strategy>/``; all trials go to one
    storage ``<out>/optuna.journal``. Returns the comparison table (also ``comparison.csv`` and
    ``comparison.png`` in ``out``). ``finetune_epochs``: each strategy's answer is also fine-tuned
    (:func:`~hwsearch.finetune.finetune`, distillation) and the table gains its top-1 with fine-tuning.
    """
    from hwsearch.reports.pareto import plot_pareto
    from hwsearch.search.profiling import ensure_profile
    from hwsearch.search.strategies import STRATEGIES
    from hwsearch.study import default_study_path

    if eval_budget < 1:
        raise UserError(f"--eval-budget must be at least 1, got {eval_budget}")
    for name in strategies:
        STRATEGIES.get(name)
    if setup is None:
        study_obj = study if isinstance(study, Study) else load_study(study if study is not None else default_study_path())
        out_dir = Path(out) if out is not None else Path("runs") / f"{study_obj.name}-compare"
        setup = prepare(study_obj, constraints=constraints, axes=axes, rates=rates, criterion=criterion,
                        eval_subset=eval_subset, run_dir=out_dir, storage=str(out_dir / "optuna.journal"),
                        progress=progress, bn_recalibrate=bn_recalibrate, prior=prior, objective=objective,
                        early_stop=early_stop, confirm_top=confirm_top, halving=halving, threads=threads,
                        device=device, cost_models=cost_models)
    out_dir = setup.run_dir
    order = [n for n in WARM_SOURCES if n in strategies] + [n for n in strategies if n not in WARM_SOURCES]
    rows, runs = [], []
    warm: list[dict[str, int]] = []
    if resume:
        check_stored_runs(setup, order)  # a mismatch is reported before the profile, not after
    runner = make_runner(workers, ray_address, threads=setup.threads)
    with runner:
        runner.start(setup.spec)
        try:
            profile = ensure_profile(setup, runner, file=sensitivity_file, progress=progress)
        except KeyboardInterrupt:  # the finished profile evaluations are stored: a resumed compare reuses them
            out_dir.mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame([{"strategy": "(shared profile)", "interrupted": True}])
            frame.to_csv(out_dir / "comparison.csv", index=False)
            frame.attrs["interrupted"] = True
            return frame, []
        base = setup.baseline.costs
        rows.append({"strategy": "(shared profile)", "best_top1": None, "acc_drop": None, "confirm_drop": None,
                     "test_drop": None, "param_mb": None, "memory_saving_%": None, "macs_saving_%": None,
                     "feasible": sum(r.feasible for r in profile.results), "evaluations": profile.new_evaluations,
                     "wall_s": round(profile.seconds, 1)})
        for name in order:
            t0 = time.perf_counter()
            strat = create_strategy(name, seed=seed)
            problem = setup.problem(eval_budget=eval_budget, profile=profile, warm_start=warm if warm_start else (),
                                    importance=strat.needs_importance)
            outcome = run_strategy(setup, strat, runner, study_name=name, problem=problem, eval_budget=eval_budget,
                                   resume=resume, progress=progress, history=profile.results)
            every = merge_results(profile.results, outcome.results)
            best = strat.answer(every) if not outcome.interrupted else None
            if best is not None and name in WARM_SOURCES:
                warm.append(dict(best.candidate.levels))
            res = finish(setup, strategy=name, results=every, best=best, seconds=time.perf_counter() - t0,
                         notes=strategy_notes(setup, problem, strat, profile, outcome) + latency_notes(setup, workers),
                         evaluations=outcome.new_evaluations,
                         interrupted=outcome.interrupted, run_dir=out_dir / name, profile=profile)
            runs.append(res)
            rows.append({"strategy": name, "best_top1": best.accuracy if best else None,
                         "acc_drop": best.acc_drop if best else None, "confirm_drop": res.confirm_drop,
                         "test_drop": res.test_drop, "param_mb": best.costs["param_mb"] if best else None,
                         "memory_saving_%": 100 * (1 - best.costs["param_mb"] / base["param_mb"]) if best else None,
                         "macs_saving_%": 100 * (1 - best.costs["macs_g"] / base["macs_g"]) if best else None,
                         "feasible": sum(r.feasible for r in outcome.results), "evaluations": outcome.new_evaluations,
                         "wall_s": round(res.seconds, 1)})
            rows[-1].update({k: best.costs.get(k) if best else None for k in setup.baseline.costs
                             if k in MEASURED_BUDGETS})  # SOPs, energy, latency when measured
            rows[-1].update(work_columns(setup.space, best))  # kept tokens per block and T, when searched
            if finetune_epochs and best is not None and not outcome.interrupted:
                rows[-1].update(_finetune_columns(setup, res, finetune_epochs, resume=resume, progress=progress))
            if outcome.interrupted:
                break
    frame = pd.DataFrame(rows)
    frame.attrs["interrupted"] = any(r.interrupted for r in runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "comparison.csv", index=False)
    shared = {r.candidate.key for r in profile.results}
    series: dict[str, list[Result]] = {"profile": list(profile.results)}
    series.update({r.strategy: [x for x in r.results if x.candidate.key not in shared] for r in runs})
    plot_pareto(series, str(out_dir / "comparison.png"), baseline=setup.baseline,
                budgets={"param_mb": setup.constraints.param_mb, "macs_g": setup.constraints.macs_g},
                title=f"{setup.study.name}: strategies at {eval_budget} evaluations")
    return frame, runs
