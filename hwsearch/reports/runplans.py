"""The answer's runners-up: their plans written with a run, their pruned models rebuilt on demand.

A run writes ``best/`` (the answer's pruned model) and, for ``finetune --top K``, the plans that come
next (:func:`hwsearch.reports.pareto.runner_ups`: the feasible Pareto front, then candidates that miss only
the drop limit) as ``pareto/<key>/plan.json`` (exact kept indices) with a ``summary.json``, in the order
of ``pareto/ranking.json``. Plans are a few kilobytes; the pruned model of one is built only when it is
fine-tuned (:func:`materialize`): the source checkpoint pruned to the plan's indices, batch norms
re-estimated exactly as the evaluator did when the run used ``--bn-recalibrate``, then written next
to the plan in the :func:`~hwsearch.pruning.load_pruned` format.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hwsearch.atomic import atomic_write_text
from hwsearch.errors import UserError

__all__ = ["PARETO_DIR", "RANKING_FILE", "MAX_RUNNER_UPS", "write_runner_ups", "runner_up_dirs", "materialize"]

log = logging.getLogger(__name__)

PARETO_DIR = "pareto"
RANKING_FILE = "ranking.json"
#: The most runner-up plans a run writes (the first of them are what ``finetune --top K`` can reach).
MAX_RUNNER_UPS = 20


def write_runner_ups(setup: Any, res: Any, out: Path) -> list[str]:
    """Write the runners-up of ``res`` (a :class:`~hwsearch.runs.SearchResult`) under ``out/pareto``."""
    from hwsearch.reports.pareto import runner_ups

    ranked = runner_ups(res.results, res.best, res.objective)[:MAX_RUNNER_UPS]
    confirmed = {cf.key: cf for cf in res.confirmations}
    folder = out / PARETO_DIR
    keys = []
    for rank, r in enumerate(ranked, start=1):
        key = r.candidate.key
        here = folder / key
        here.mkdir(parents=True, exist_ok=True)
        setup.local.plan(r.candidate).save(here / "plan.json")
        cf = confirmed.get(key)
        bn = int(setup.spec.bn_recalibrate) if r.candidate.levels else 0
        summary = {"key": key, "rank": rank, "feasible": r.feasible, "accuracy_eval": r.accuracy,
                   "accuracy_confirm": cf.confirm_accuracy if cf else None,
                   "accuracy_test": cf.test_accuracy if cf else None, **r.costs,
                   "bn_recalibrate": bn, "bn_after": setup.local.first_pruned_module(r.candidate) if bn else None,
                   "calib_split": setup.study.data.calib_split if bn else None}
        atomic_write_text(here / "summary.json", json.dumps(summary, indent=1) + "\n")
        keys.append(key)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / RANKING_FILE, json.dumps(keys, indent=1) + "\n")
    return keys


def runner_up_dirs(run_dir: Path) -> list[Path]:
    """The runners-up of a run directory, best first (empty when the run wrote none)."""
    path = run_dir / PARETO_DIR / RANKING_FILE
    if not path.is_file():
        return []
    try:
        keys = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is unreadable ({e}); rerun the search to rewrite it") from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UserError(f"{path} is not a list of candidate keys; rerun the search to rewrite it")
    return [run_dir / PARETO_DIR / k for k in keys]


def materialize(study: Any, folder: Path) -> Path:
    """The pruned model of the plan in ``folder``, built from ``study``'s checkpoint and saved there once."""
    from hwsearch.checkpoints import file_sha256
    from hwsearch.loading import load_study_model
    from hwsearch.pruning import PruningPlan, prune, save_pruned

    if (folder / "model.pth").is_file() and (folder / "architecture.json").is_file():
        return folder
    plan_path, summary_path = folder / "plan.json", folder / "summary.json"
    if not plan_path.is_file():
        raise UserError(f"no plan in {folder}; rerun the search to rewrite its pareto/ folder")
    plan = PruningPlan.load(plan_path)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if plan.model and plan.model != study.model:
        raise UserError(f"the plan in {folder} prunes '{plan.model}' but the study's model is '{study.model}'; "
                        "pass the study it was searched with (--study)")
    if plan.checkpoint_sha256 and plan.checkpoint_sha256 != file_sha256(study.require_checkpoint()):
        raise UserError(f"the plan in {folder} was searched on another checkpoint than {study.checkpoint}; "
                        "pass the study it was searched with (--study)")
    model = prune(load_study_model(study).model.eval(), plan)
    bn = int(summary.get("bn_recalibrate") or 0)
    if bn:  # the evaluator's batch-norm re-estimation, on the same training batches
        from hwsearch.data import stream_batches
        from hwsearch.search.evaluation import recalibrate_bn
        from hwsearch.loading import study_dataset

        calib = stream_batches(study_dataset(study, summary.get("calib_split") or study.data.calib_split),
                               study.data.batch_size)[:bn]
        recalibrate_bn(model, list(calib), after=summary.get("bn_after"))
    save_pruned(model.eval(), folder)
    log.info("built the pruned model of %s", folder)
    return folder
