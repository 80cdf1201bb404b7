"""``hwsearch prune``: apply a plan to the study's checkpoint and write the pruned model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwsearch.commands._base import Command, add_study_argument, study_from_args
from hwsearch.commands._preflight import check_out_dir
from hwsearch.commands._values import positive_int


def _add(p: argparse.ArgumentParser) -> None:
    add_study_argument(p)
    p.add_argument("--plan", type=Path, required=True, help="plan.json: group -> kept count or kept indices")
    p.add_argument("--out", type=Path, required=True, help="folder to write model.pth, architecture.json, plan.json, cost.json")
    p.add_argument("--criterion", default=None, help="ranking for groups given as counts (default: the plan's, l2)")
    p.add_argument("--calib-batches", type=positive_int, default=2, metavar="N",
                   help="calibration batches of the eval split for the taylor criterion (default 2)")


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from hwsearch.loading import load_study_model
    from hwsearch.pruning import (
        PlanError,
        PruningPlan,
        create_criterion,
        prune,
        save_pruned,
    )

    study = study_from_args(args)
    check_out_dir(args.out)
    plan = PruningPlan.load(args.plan)
    if plan.model and plan.model != study.model:
        raise PlanError(f"plan {args.plan} is for '{plan.model}' but the study's model is '{study.model}'; use the matching study")
    loaded = load_study_model(study)
    if plan.checkpoint_sha256 and plan.resolved and plan.checkpoint_sha256 != loaded.checkpoint.sha256:
        raise PlanError(f"plan {args.plan} was made on checkpoint {plan.checkpoint_sha256[:12]}, not "
                        f"{loaded.checkpoint.sha256[:12]}; re-rank it (give counts) or use the original checkpoint")
    plan = dataclasses.replace(plan, checkpoint_sha256=loaded.checkpoint.sha256, criterion=args.criterion or plan.criterion,
                               model_kwargs={})
    criterion = None
    if plan.criterion == "taylor" and not plan.resolved:
        from itertools import islice

        from hwsearch.data import make_loader
        from hwsearch.loading import study_dataset

        batches = list(islice(make_loader(study_dataset(study, study.data.eval_split), study.data.batch_size),
                              args.calib_batches))
        criterion = create_criterion("taylor", batches=batches)
    pruned = prune(loaded.model, plan, criterion=criterion)
    out = save_pruned(pruned, args.out)
    before = sum(p.numel() for p in loaded.model.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    summary = {"model": study.model, "params_before": before, "params_after": after,
               "param_ratio": after / before}
    (out / "cost.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {out}: params {before:,} -> {after:,} ({100 * after / before:.1f} %)")
    return 0


PRUNE = Command(name="prune", help="apply a pruning plan to the study's checkpoint and save the pruned model",
                add_arguments=_add, run=_run)
