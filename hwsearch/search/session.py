"""A search session's setup: the model, its plan encoding, the evaluation data, the baseline, the budgets.

:func:`prepare` loads the study's model and data, builds the :class:`~hwsearch.search.encoding.PlanEncoding`,
measures the baseline and checks the budget is reachable before any evaluation; the
:class:`SearchSetup` it returns is what every strategy of a run (and every command that evaluates) shares.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from hwsearch.data import EvalBatches, count_samples, stream_batches
from hwsearch.errors import UserError
from hwsearch.pruning import ChannelGroup, TimeGroup, TokenGroup
from hwsearch.search.encoding import ALL_AXES, DEFAULT_AXES, DEFAULT_RATES, PlanEncoding
from hwsearch.search.evaluation import Evaluator, EvaluatorSpec
from hwsearch.search.results import Candidate, Constraints, Result
from hwsearch.search.strategies import Problem
from hwsearch.study import PRIORS, Study, load_study

__all__ = ["CONFIRM_TOP", "SearchSetup", "UNREACHABLE", "prepare", "resolve_objective"]

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
    space: PlanEncoding
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
    #: successive-halving factor (0: off; see :mod:`hwsearch.search.halving`).
    halving_eta: float = 0.0
    threads: int | None = None
    _importance: dict[str, list[float]] | None = None

    def importance(self) -> dict[str, list[float]]:
        """Fisher importance of every variable's levels (computed once, on the calibration split)."""
        if self._importance is None:
            from hwsearch.data import make_loader
            from hwsearch.search.fisher import level_importance
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
        from hwsearch.search.prior import Prior

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
    from hwsearch.search.results import OBJECTIVES

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
    :func:`hwsearch.search.costing.resolve_cost_models`).
    """
    from hwsearch.search.costing import resolve_cost_models
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
    log.info("model %s from %s (sha256 %s...)", loaded.config, study.checkpoint, loaded.checkpoint.sha256[:12])
    space = PlanEncoding.from_model(loaded.model, axes=axes, rates=rates,
                                   checkpoint_sha256=loaded.checkpoint.sha256, criterion=criterion)
    subset = eval_subset if eval_subset is not None else study.data.eval_subset
    eval_ds = study_dataset(study, study.data.eval_split, subset=subset)
    batches = _batches(eval_ds, study.data.batch_size, staged=True)
    calib: list[tuple[torch.Tensor, torch.Tensor]] = []
    calib_digest = None
    if bn or criterion == "taylor":
        from hwsearch.search.evaluation import TAYLOR_BATCHES

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
    log.info("baseline: top-1 %.2f %% on %d eval samples; %s", acc, count_samples(batches),
             ", ".join(f"{k} {v:.4g}" for k, v in base_costs.items() if k in ("param_mb", "macs_g", "act_mb")))
    log.info("plan encoding: %d variable(s) of kinds %s, %.3g candidates", len(space.variables), ",".join(axes),
             math.prod(len(v.levels) for v in space.variables))
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
