"""The search driver: set up, profile once, run strategies, select honestly, write outputs.

``hwsearch.search(study, strategy="tpe", constraints={"param_mb": 1.5, "max_acc_drop": 3})`` is the
whole ``hwsearch run`` in one call; it returns a :class:`SearchResult` with the best pruned model, the
trials and the Pareto front as pandas DataFrames. The flow:

1. :func:`prepare`: load the model and data, build the search space, measure the baseline, check the
   budget is reachable (before any evaluation).
2. The shared profile (:func:`~hwsearch.profiling.ensure_profile`): reused from the cache, or computed
   once; it becomes every strategy's prior (:class:`~hwsearch.prior.Prior`) and known history.
3. :func:`~hwsearch.loop.run_strategy`: the ask/tell loop; every evaluation is durable first.
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
import torch
import torch.nn as nn

from hwsearch.data import EvalBatches, count_samples, stream_batches
from hwsearch.errors import UserError
from hwsearch.evaluation import Evaluator, EvaluatorSpec
from hwsearch.loop import check_stored_runs, run_strategy
from hwsearch.pareto import pareto_front, trials_frame
from hwsearch.results import MEASURED_BUDGETS, Candidate, Constraints, Result
from hwsearch.runners import make_runner
from hwsearch.pruning import ChannelGroup, TimeGroup, TokenGroup
from hwsearch.report import work_columns
from hwsearch.space import ALL_AXES, DEFAULT_AXES, DEFAULT_RATES, SearchSpace
from hwsearch.strategies import Problem, create_strategy
from hwsearch.study import PRIORS, Study, load_study

__all__ = ["SearchSetup", "SearchResult", "Confirmation", "prepare", "search", "compare", "UNREACHABLE",
           "CONFIRM_TOP"]

log = logging.getLogger(__name__)

UNREACHABLE = ("budget {what} {limit:g} {unit} is below the smallest reachable model ({best:.4g} {unit} at the "
               "maximum rates of the searched groups); raise {flag}{more}")
#: The second fix of UNREACHABLE, when the model has group kinds the search leaves out.
UNREACHABLE_AXES = " or search more groups with --axes {axes}"
_FLAGS = {"param_mb": ("--budget-mb", "MB"), "macs_g": ("--budget-macs", "GMACs"), "act_mb": ("--budget-act-mb", "MB")}
#: Pareto-front entries (best first under the objective) re-measured on the confirmation split.
CONFIRM_TOP = 5
#: Staged evaluation: the first batches are this fraction of the batch size, so a hopeless candidate is
#: stopped after a few images (1/4, 1/4, 1/2, then whole batches).
_STAGES = (0.25, 0.25, 0.5)
#: Batches (of the study's batch size) used for the Fisher importance of the ``analytic`` strategy.
FISHER_BATCHES = 8
FISHER_BATCH_SIZE = 32


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
    objective: str = "accuracy"
    prior_mode: str = "exclude"
    storage_url: str | None = None
    test_batches: Sequence[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    confirm_batches: Sequence[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    baseline_confirm: float | None = None
    baseline_test: float | None = None
    confirm_top: int = CONFIRM_TOP
    #: successive-halving factor (0: off; see :mod:`hwsearch.halving`).
    halving_eta: float = 0.0
    threads: int | None = None
    _importance: dict[str, list[float]] | None = None

    def importance(self) -> dict[str, list[float]]:
        """Fisher importance of every variable's levels (computed once, on the calibration split)."""
        if self._importance is None:
            from hwsearch.data import make_loader
            from hwsearch.fisher import level_importance
            from hwsearch.loading import study_dataset

            ds = study_dataset(self.study, self.study.data.calib_split)
            batches = []
            for i, (x, y) in enumerate(make_loader(ds, batch_size=FISHER_BATCH_SIZE, shuffle=True, seed=self.study.data.seed)):
                if i >= FISHER_BATCHES:
                    break
                batches.append((x, y))
            self._importance = level_importance(self.local, batches)
        return self._importance

    def problem(self, *, eval_budget: int | None, profile: Any = None, objectives: Sequence[str] = ("param_mb",),
                warm_start: Sequence[Mapping[str, int]] = (), importance: bool = False) -> Problem:
        """The :class:`Problem` strategies see (with the shared profile as prior and history)."""
        from hwsearch.prior import Prior

        table = profile.table if profile is not None else None
        prior = Prior(self.space, table, self.constraints, self.local.costs, mode=self.prior_mode) if table is not None else None
        history = list(profile.results) if profile is not None else []
        if prior is not None:
            prior.observe_all(history)
        return Problem(space=self.space, constraints=self.constraints, baseline_accuracy=float(self.baseline.accuracy or 0),
                       baseline_costs=dict(self.baseline.costs), predict=self.local.costs, eval_budget=eval_budget,
                       sensitivity=table, objectives=tuple(objectives), objective=self.objective, prior=prior,
                       history=history, importance=self.importance() if importance else None,
                       warm_start=list(warm_start))


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


def _definition(config: str) -> dict[str, Any] | None:
    """The definition a Ray worker needs to re-create a user-defined configuration (None: built-in)."""
    from search_spaces import get_config

    cfg = get_config(config)
    return cfg.to_dict() if cfg.user_defined else None


def _batches(ds: torch.utils.data.Dataset[Any], batch_size: int, *, staged: bool = False) -> EvalBatches:
    """Batches of ``ds`` in order, streamed (:class:`~hwsearch.data.EvalBatches`: read on demand, uint8
    until normalised); ``staged``: the first ones smaller (see :data:`_STAGES`)."""
    return stream_batches(ds, batch_size, stages=_STAGES if staged else ())


def resolve_objective(objective: str | None, cons: Constraints) -> str:
    """``auto``: top-1 when a cost budget is set, else the parameter memory under the drop limit."""
    from hwsearch.results import OBJECTIVES

    if objective in (None, "auto"):
        budgeted = bool(cons.budgets())
        return "accuracy" if budgeted or cons.max_acc_drop is None else "param_mb"
    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective '{objective}'; use auto or one of {', '.join(OBJECTIVES)}")
    if objective != "accuracy" and cons.max_acc_drop is None:
        raise UserError(f"objective {objective} minimises a cost under the drop limit; set --max-acc-drop")
    return objective


def prepare(study: Study | str | Path, *, constraints: Mapping[str, Any] | None = None,
            axes: Sequence[str] = DEFAULT_AXES, rates: Sequence[float] = DEFAULT_RATES, criterion: str = "l2",
            eval_subset: int | None = None, run_dir: str | Path = "runs/latest", storage: str | None = None,
            progress: bool = True, bn_recalibrate: int | None = None, prior: str | None = None,
            objective: str | None = None, early_stop: bool | None = None,
            confirm_top: int = CONFIRM_TOP, halving: float | None = None, threads: int | None = None,
            device: str | None = None, cost_models: Sequence[str] | None = None) -> SearchSetup:
    """Load the model and data, build the space, measure the baseline, check the budget is reachable.

    ``constraints`` override the study's; a value ``"none"`` switches a study's budget off. The other
    keyword arguments override the study's ``[search]`` settings (None: the study's); ``confirm_top``
    is how many results (the answer first, then the Pareto front) are re-measured on confirm and test.
    ``threads``: torch threads of this process and of each Ray worker (None: the measured default here,
    :func:`hwsearch.devices.default_threads`, and the cluster's CPUs shared out on Ray); ``device``:
    ``cpu`` (default), ``cuda[:N]`` or ``auto``. ``cost_models``: registry names the candidates are costed
    with (None: the study's ``[search] cost_models``; every budget adds its provider, see
    :func:`hwsearch.costing.resolve_cost_models`).
    """
    from hwsearch.costing import resolve_cost_models
    from hwsearch.devices import Compute
    from hwsearch.loading import load_study_model, split_indices_digest, study_dataset
    from search_spaces import config_kwargs

    compute = Compute.resolve(threads=threads, device=device)  # bad values fail before any loading

    if not isinstance(study, Study):
        study = load_study(study)
    over: dict[str, Any] = {k: (None if isinstance(v, str) and v.lower() == "none" else v)
            for k, v in (constraints or {}).items() if v is not None}
    cons = replace(study.constraints, **over)
    sspec = study.search
    bn = sspec.bn_recalibrate if bn_recalibrate is None else int(bn_recalibrate)
    prior_mode = sspec.prior if prior is None else prior
    if prior_mode not in PRIORS:
        raise UserError(f"unknown --prior '{prior_mode}'; use one of {', '.join(PRIORS)}")
    if bn < 0:
        raise UserError(f"--bn-recalibrate must be >= 0 batches, got {bn}")
    stop = sspec.early_stop if early_stop is None else bool(early_stop)
    eta = float(sspec.halving if halving is None else halving)
    if not (eta == 0 or eta >= 2):
        raise UserError(f"--halving must be 0 (off) or a factor >= 2, got {eta:g}")
    obj = resolve_objective(objective if objective is not None else sspec.objective, cons)
    models = resolve_cost_models(sspec.cost_models if cost_models is None else cost_models, budgets=cons.budgets())
    loaded = load_study_model(study)
    space = SearchSpace.from_model(loaded.model, axes=axes, rates=rates,
                                   checkpoint_sha256=loaded.checkpoint.sha256, criterion=criterion)
    subset = eval_subset if eval_subset is not None else study.data.eval_subset
    eval_ds = study_dataset(study, study.data.eval_split, subset=subset)
    batches = _batches(eval_ds, study.data.batch_size, staged=True)
    calib: list[tuple[torch.Tensor, torch.Tensor]] = []
    calib_digest = None
    if bn or criterion == "taylor":
        from hwsearch.evaluation import TAYLOR_BATCHES

        calib_ds = study_dataset(study, study.data.calib_split)
        calib = _batches(calib_ds, study.data.batch_size)[:max(bn, TAYLOR_BATCHES if criterion == "taylor" else 0)]
        calib_digest = split_indices_digest(calib_ds)
    spec = EvaluatorSpec(config=loaded.config, model_kwargs=dict(config_kwargs(loaded.model)),
                         state_dict={k: v.clone() for k, v in loaded.model.state_dict().items()}, space=space,
                         batches=batches, constraints=cons, calibration_batches=calib, bn_recalibrate=bn,
                         stop_drop=cons.max_acc_drop if stop else None,
                         config_def=_definition(loaded.config), threads=compute.threads, device=compute.device,
                         cost_models=models)
    local = Evaluator(spec)
    base_costs = local.costs({})
    for key, (flag, unit) in _FLAGS.items():  # before any evaluation: is the budget reachable at all?
        limit = getattr(cons, key)
        if limit is not None:
            best = local.costs(space.max_levels())[key]
            if best > limit:
                have = {g.kind for g in local.groups if isinstance(g, (ChannelGroup, TokenGroup, TimeGroup))} & set(ALL_AXES)
                extra = sorted(have - set(axes))  # only kinds this model has and the search leaves out
                more = UNREACHABLE_AXES.format(axes=",".join(sorted(have & set(axes)) + extra)) if extra else ""
                raise UserError(UNREACHABLE.format(what=key, limit=limit, unit=unit, best=best, flag=flag, more=more))
    acc = local.accuracy(local.model)
    spec.baseline_accuracy = acc
    measured, where = local.measured_costs(local.model)  # {} unless a forward-needing cost model is on
    base_costs = {**base_costs, **measured}
    baseline = Result(candidate=Candidate(levels={}, tag="baseline"), status="ok", accuracy=acc, acc_drop=0.0,
                      costs=base_costs, violations=cons.violations(base_costs, 0.0),
                      samples=count_samples(batches), measured_on=where)
    test = _batches(study_dataset(study, study.data.test_split), study.data.batch_size)
    confirm = (_batches(study_dataset(study, study.data.confirm_split), study.data.batch_size)
               if study.data.confirm_split else [])
    data = study.data
    fingerprint = {
        "model": space.model, "model_kwargs": dict(space.model_kwargs), "checkpoint": space.checkpoint_sha256,
        "data": {"dataset": data.dataset, "splits": {k: str(v) for k, v in data.splits.items()},
                 "transform": data.transform, "img_size": data.img_size, "seed": data.seed},
        "eval": {"split": data.eval_split, "samples": split_indices_digest(eval_ds)},
        "rates": [round(r, 6) for r in space.grid], "criterion": space.criterion,
        "variables": {v.name: list(v.levels) for v in space.variables},
        "bn_recalibrate": bn, "calibration": {"split": data.calib_split, "samples": calib_digest} if bn else None,
        "constraints": cons.to_dict(), "objective": obj, "prior": prior_mode, "early_stop": stop,
        "halving": eta,
    }
    if local.measurer:  # only then: older runs' fingerprints stay valid
        fingerprint["measurement"] = {"cost_models": list(models), "latency_batch": cons.latency_batch}
    setup = SearchSetup(study=study, space=space, spec=spec, local=local, constraints=cons, baseline=baseline,
                        run_dir=Path(run_dir), storage_url=storage, test_batches=test, confirm_batches=confirm,
                        fingerprint=fingerprint, objective=obj, prior_mode=prior_mode, confirm_top=confirm_top,
                        halving_eta=eta, threads=threads)
    setup.baseline_test = local.accuracy(local.model, test) if test else None
    setup.baseline_confirm = local.accuracy(local.model, confirm) if confirm else None
    return setup


def _confirm(setup: SearchSetup, results: Sequence[Result], best: Result | None) -> list[Confirmation]:
    """The answer and the Pareto front's top entries, re-measured on the confirmation and test splits."""
    from hwsearch.results import objective_value

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
    from hwsearch.report import write_outputs

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


def _latency_notes(setup: SearchSetup, workers: int) -> list[str]:
    """A warning when candidates were timed while other evaluations shared the machine."""
    if workers > 1 and "latency_ms" in setup.baseline.costs:
        return [f"latency was timed with {workers} evaluations running at once: on one machine they compete "
                "for its cores (use --workers 1 for latency budgets there)"]
    return []


def _strategy_notes(setup: SearchSetup, problem: Problem, strat: Any, profile: Any, outcome: Any = None) -> list[str]:
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


def search(study: Study | str | Path | None = None, *, strategy: str = "prioritized", constraints: Mapping[str, Any] | None = None,
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
            settings (``halving``: successive-halving factor, 0 off; :mod:`hwsearch.halving`).
        warm_start: level maps evaluated first by the global strategies.
        threads / device: torch threads (per process, per Ray worker) and ``cpu``/``cuda``/``auto``
            (see :func:`prepare`).
        cost_models: the cost models candidates are costed with (None: the study's; see :func:`prepare`).
    """
    from hwsearch.profiling import ensure_profile
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
        from hwsearch.storage import ResultStore, open_storage

        done = ResultStore(open_storage(setup.run_dir, setup.storage_url), "profile", setup.space).results()
        return finish(setup, strategy=strategy, results=done, best=None, notes=["interrupted while profiling"],
                      seconds=time.perf_counter() - t0, evaluations=len(done), interrupted=True)
    every = _merge(profile.results, outcome.results)
    best = strat.answer(every) if not interrupted else None
    notes = _strategy_notes(setup, problem, strat, profile, outcome) + _latency_notes(setup, workers)
    return finish(setup, strategy=strategy, results=every, best=best, notes=notes, seconds=time.perf_counter() - t0,
                  evaluations=outcome.new_evaluations, interrupted=interrupted, profile=profile)


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


def _merge(history: Sequence[Result], results: Sequence[Result]) -> list[Result]:
    """The shared profile first, then the strategy's own results (each candidate once)."""
    seen: set[str] = set()
    out = []
    for r in [*history, *results]:
        if r.candidate.key not in seen:
            seen.add(r.candidate.key)
            out.append(r)
    return out


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
    from hwsearch.pareto import plot_pareto
    from hwsearch.profiling import ensure_profile
    from hwsearch.strategies import STRATEGIES
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
            every = _merge(profile.results, outcome.results)
            best = strat.answer(every) if not outcome.interrupted else None
            if best is not None and name in WARM_SOURCES:
                warm.append(dict(best.candidate.levels))
            res = finish(setup, strategy=name, results=every, best=best, seconds=time.perf_counter() - t0,
                         notes=_strategy_notes(setup, problem, strat, profile, outcome) + _latency_notes(setup, workers),
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
