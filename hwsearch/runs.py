"""One search, start to end: set up, profile once, run a strategy, select honestly, write outputs.

``hwsearch.run(study, strategy="tpe", constraints={"param_mb": 1.5, "max_acc_drop": 3})`` is the
whole ``hwsearch run`` in one call; it returns a :class:`SearchResult` with the best pruned model, the
trials and the Pareto front as pandas DataFrames. The flow:

1. :func:`prepare`: load the model and data, build the search space, measure the baseline, check the
   budget is reachable (before any evaluation).
2. The shared profile (:func:`~hwsearch.search.profiling.ensure_profile`): reused from the cache, or computed
   once; it becomes every strategy's prior (:class:`~hwsearch.search.prior.Prior`) and known history.
3. :func:`~hwsearch.search.loop.run_strategy`: the ask/tell loop; every evaluation is durable first.
4. Honest selection: the strategy's answer is chosen on the eval split, then re-measured (with the top
   entries of the Pareto front) on the confirmation split and on the test split.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch.nn as nn

from hwsearch.reports.pareto import pareto_front, trials_frame
from hwsearch.search.encoding import DEFAULT_AXES, DEFAULT_RATES
from hwsearch.search.loop import check_stored_runs, run_strategy
from hwsearch.search.results import Result
from hwsearch.search.runners import make_runner
from hwsearch.search.session import CONFIRM_TOP, SearchSetup, prepare
from hwsearch.search.strategies import Problem, create_strategy
from hwsearch.study import Study, load_study

__all__ = ["Confirmation", "SearchResult", "finish", "merge_results", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirmation:
    """A candidate re-measured on the confirmation and test splits (percent; None: split not set)."""

    key: str
    eval_accuracy: float
    confirm_accuracy: float | None
    test_accuracy: float | None


@dataclass(kw_only=True)
class SearchResult:
    """What a search returns (also written to its run directory).

    ``best`` is the strategy's answer (selected on the eval split); ``confirmations`` holds it and the
    Pareto front's top entries re-measured on the confirmation and test splits.
    """

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
    objective: str = "accuracy"
    best_confirm_accuracy: float | None = None
    baseline_confirm_accuracy: float | None = None
    confirmations: list[Confirmation] = field(default_factory=list)
    profile_evaluations: int = 0
    profile_source: str = ""
    profile_seconds: float = 0.0

    @property
    def test_drop(self) -> float | None:
        if self.best_test_accuracy is None or self.baseline_test_accuracy is None:
            return None
        return self.baseline_test_accuracy - self.best_test_accuracy

    @property
    def confirm_drop(self) -> float | None:
        if self.best_confirm_accuracy is None or self.baseline_confirm_accuracy is None:
            return None
        return self.baseline_confirm_accuracy - self.best_confirm_accuracy

def _confirm(setup: SearchSetup, results: Sequence[Result], best: Result | None) -> list[Confirmation]:
    """The answer and the Pareto front's top entries, re-measured on the confirmation and test splits."""
    from hwsearch.search.results import objective_value

    front = pareto_front(results)
    front.sort(key=lambda r: -objective_value(r, setup.objective))
    chosen = ([best] if best is not None else []) + [r for r in front if best is None or r.candidate.key != best.candidate.key]
    log.info("re-measuring %d candidate(s) on the confirmation and test splits", len(chosen[: setup.confirm_top]))
    out = []
    for r in chosen[: setup.confirm_top]:
        model = setup.local.pruned_model(r.candidate)
        out.append(Confirmation(
            key=r.candidate.key, eval_accuracy=float(r.accuracy or 0.0),
            confirm_accuracy=setup.local.accuracy(model, setup.confirm_batches) if setup.confirm_batches else None,
            test_accuracy=setup.local.accuracy(model, setup.test_batches) if setup.test_batches else None))
    return out


def finish(setup: SearchSetup, *, strategy: str, results: list[Result], best: Result | None, notes: list[str],
           seconds: float, evaluations: int, interrupted: bool, run_dir: Path | None = None, profile: Any = None,
           write: bool = True) -> SearchResult:
    """Re-measure the answer (unless interrupted), build the :class:`SearchResult`, write the run directory.

    A SIGINT / SIGTERM while re-measuring stops it and the outputs are written as interrupted; one while
    writing is held until every file is written, then the report is marked interrupted.
    """
    from hwsearch import interrupts
    from hwsearch.reports.report import write_outputs

    every = [replace(r, number=i) for i, r in enumerate(results)]
    confirmations: list[Confirmation] = []
    best_model = None
    if not interrupted:
        try:
            confirmations = _confirm(setup, every, best)
            if best is not None:
                best_model = setup.local.pruned_model(best.candidate).cpu()
        except KeyboardInterrupt:
            interrupted, confirmations, best_model = True, [], None
            notes = [*notes, "interrupted while re-measuring the answer on the confirmation and test splits"]
    with interrupts.deferred():  # from here on a signal is held until every output is written
        res = _result(setup, strategy=strategy, every=every, best=best, best_model=best_model,
                      confirmations=confirmations, notes=notes, seconds=seconds, evaluations=evaluations,
                      interrupted=interrupted, run_dir=run_dir, profile=profile)
        if write:
            log.info("writing the outputs to %s", res.run_dir)
            write_outputs(replace(setup, run_dir=res.run_dir), res)
        if interrupts.pending() is not None and not res.interrupted:
            res.interrupted = True
            res.notes.append("interrupted while writing the outputs (every file was completed)")
            if write:
                write_outputs(replace(setup, run_dir=res.run_dir), res, report_only=True)
    return res


def _result(setup: SearchSetup, *, strategy: str, every: list[Result], best: Result | None, best_model: Any,
            confirmations: list[Confirmation], notes: list[str], seconds: float, evaluations: int,
            interrupted: bool, run_dir: Path | None, profile: Any) -> SearchResult:
    """The :class:`SearchResult` of a finished (or interrupted) search, its Pareto table re-measured columns filled."""
    first = confirmations[0] if confirmations and best is not None else None
    pareto = trials_frame(pareto_front(every), setup.space)
    by_key = {cf.key: cf for cf in confirmations}
    pareto["confirm_accuracy"] = [by_key[k].confirm_accuracy if k in by_key else None for k in pareto["key"]]
    pareto["test_accuracy"] = [by_key[k].test_accuracy if k in by_key else None for k in pareto["key"]]
    res = SearchResult(strategy=strategy, run_dir=run_dir or setup.run_dir, baseline=setup.baseline, results=every,
                       best=best, best_model=best_model, best_test_accuracy=first.test_accuracy if first else None,
                       baseline_test_accuracy=setup.baseline_test, trials=trials_frame(every, setup.space),
                       pareto=pareto, seconds=seconds, evaluations=evaluations,
                       notes=notes, interrupted=interrupted, objective=setup.objective,
                       best_confirm_accuracy=first.confirm_accuracy if first else None,
                       baseline_confirm_accuracy=setup.baseline_confirm, confirmations=confirmations,
                       profile_evaluations=profile.new_evaluations if profile is not None else 0,
                       profile_source=profile.source if profile is not None else "",
                       profile_seconds=profile.seconds if profile is not None else 0.0)
    return res


def latency_notes(setup: SearchSetup, workers: int) -> list[str]:
    """A warning when candidates were timed while other evaluations shared the machine."""
    if workers > 1 and "latency_ms" in setup.baseline.costs:
        return [f"latency was timed with {workers} evaluations running at once: on one machine they compete "
                "for its cores (use --workers 1 for latency budgets there)"]
    return []


def strategy_notes(setup: SearchSetup, problem: Problem, strat: Any, profile: Any, outcome: Any = None) -> list[str]:
    notes = []
    if outcome is not None and outcome.halved:
        notes.append(f"successive halving (eta {setup.halving_eta:g}): {outcome.halved} of {outcome.new_evaluations} "
                     "candidates stopped below their stage's bar (status halved; their top-1 is an upper bound)")
    if profile is not None:
        notes.append(f"shared profile: {len(profile.results)} single-group candidates, "
                     + (f"{profile.new_evaluations} new evaluations in {profile.seconds:.1f} s" if profile.new_evaluations
                        else f"reused ({profile.source}), 0 new evaluations"))
    if problem.prior is not None:
        notes.append(problem.prior.describe())
    return notes + list(strat.notes())


def run(study: Study | str | Path | None = None, *, strategy: str = "prioritized", constraints: Mapping[str, Any] | None = None,
           trials: int | None = None, workers: int = 1, ray_address: str | None = None, seed: int = 0,
           out: str | Path | None = None, storage: str | None = None, resume: bool = False,
           axes: Sequence[str] = DEFAULT_AXES, rates: Sequence[float] = DEFAULT_RATES, criterion: str = "l2",
           eval_subset: int | None = None, sensitivity_file: str | Path | None = None, progress: bool = True,
           strategy_params: Mapping[str, Any] | None = None, setup: SearchSetup | None = None,
           bn_recalibrate: int | None = None, prior: str | None = None, objective: str | None = None,
           early_stop: bool | None = None, warm_start: Sequence[Mapping[str, int]] = (),
           confirm_top: int = CONFIRM_TOP, halving: float | None = None, threads: int | None = None,
           device: str | None = None, cost_models: Sequence[str] | None = None) -> SearchResult:
    """Search pruning plans of ``study``'s model with one strategy; write and return the results.

    Args:
        study: a Study, or the path of a study TOML (None: the demo study).
        strategy: registered strategy name (``hwsearch strategies``).
        constraints: overrides of the study's constraints: ``param_mb``, ``macs_g``, ``act_mb``, ``sops_g``,
            ``energy_mj``, ``latency_ms`` (with ``latency_batch``), ``max_acc_drop`` (percentage points),
            ``dtype``; ``"none"`` switches one off. The measured budgets (SOPs, energy, latency) are checked
            on each evaluated candidate after its evaluation (strategies plan on the analytic ones).
        trials: the most new accuracy evaluations (the strategy's own default when None); the shared
            profile is not counted.
        workers / ray_address: parallel evaluation on Ray (local, or an existing cluster).
        seed: the strategy's seed. out: run directory (default ``runs/<study>-<strategy>``).
        storage: Optuna storage URL (default: a journal file in the run directory).
        resume: continue a run from its storage (refused when its fingerprint differs).
        axes / rates / criterion: the searched group kinds, the rate grid and the channel ranking.
        eval_subset: evaluate on this many seeded samples of the study's eval split.
        sensitivity_file: a sensitivity table to use as the profile (JSON, or the wide / long CSV).
        bn_recalibrate / prior / objective / early_stop / halving: override the study's ``[search]``
            settings (``halving``: successive-halving factor, 0 off; :mod:`hwsearch.search.halving`).
        warm_start: level maps evaluated first by the global strategies.
        threads / device: torch threads (per process, per Ray worker) and ``cpu``/``cuda``/``auto``
            (see :func:`prepare`).
        cost_models: the cost models candidates are costed with (None: the study's; see :func:`prepare`).
    """
    from hwsearch.search.profiling import ensure_profile
    from hwsearch.study import default_study_path

    t0 = time.perf_counter()
    if setup is None:
        study_obj = study if isinstance(study, Study) else load_study(study if study is not None else default_study_path())
        run_dir = Path(out) if out is not None else Path("runs") / f"{study_obj.name}-{strategy}"
        setup = prepare(study_obj, constraints=constraints, axes=axes, rates=rates, criterion=criterion,
                        eval_subset=eval_subset, run_dir=run_dir, storage=storage, progress=progress,
                        bn_recalibrate=bn_recalibrate, prior=prior, objective=objective, early_stop=early_stop,
                        confirm_top=confirm_top, halving=halving, threads=threads, device=device,
                        cost_models=cost_models)
    strat = create_strategy(strategy, seed=seed, **dict(strategy_params or {}))
    if resume:
        check_stored_runs(setup, [strategy])  # a mismatch is reported before the profile, not after
    runner = make_runner(workers, ray_address, threads=setup.threads)
    profile = None
    outcome = None
    interrupted = False
    with runner:
        runner.start(setup.spec)
        try:
            profile = ensure_profile(setup, runner, file=sensitivity_file, progress=progress)
        except KeyboardInterrupt:
            interrupted = True
        if profile is not None:  # set unless interrupted while profiling
            problem = setup.problem(eval_budget=trials, profile=profile, warm_start=warm_start,
                                    importance=strat.needs_importance)
            outcome = run_strategy(setup, strat, runner, study_name=strategy, problem=problem, eval_budget=trials,
                                   resume=resume, progress=progress, history=profile.results)
            interrupted = outcome.interrupted
    if profile is None or outcome is None:  # interrupted while profiling: keep what was measured
        from hwsearch.search.storage import ResultStore, open_storage

        done = ResultStore(open_storage(setup.run_dir, setup.storage_url), "profile", setup.space).results()
        return finish(setup, strategy=strategy, results=done, best=None, notes=["interrupted while profiling"],
                      seconds=time.perf_counter() - t0, evaluations=len(done), interrupted=True)
    every = merge_results(profile.results, outcome.results)
    best = strat.answer(every) if not interrupted else None
    notes = strategy_notes(setup, problem, strat, profile, outcome) + latency_notes(setup, workers)
    return finish(setup, strategy=strategy, results=every, best=best, notes=notes, seconds=time.perf_counter() - t0,
                  evaluations=outcome.new_evaluations, interrupted=interrupted, profile=profile)

def merge_results(history: Sequence[Result], results: Sequence[Result]) -> list[Result]:
    """The shared profile first, then the strategy's own results (each candidate once)."""
    seen: set[str] = set()
    out = []
    for r in [*history, *results]:
        if r.candidate.key not in seen:
            seen.add(r.candidate.key)
            out.append(r)
    return out
