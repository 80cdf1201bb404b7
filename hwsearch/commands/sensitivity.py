"""``hwsearch sensitivity``: each searched group alone at each rate: accuracy and size (NNI/Distiller CSVs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwsearch.commands._base import Command, add_study_argument, study_from_args
from hwsearch.commands._preflight import check_search_args
from hwsearch.commands._compute import add_compute_options, compute_settings
from hwsearch.commands._search_options import add_search_options, axes_from_args, rates_from_args


def _add(p: argparse.ArgumentParser) -> None:
    add_study_argument(p)
    add_search_options(p, budgets=False)
    add_compute_options(p)


def _run(args: argparse.Namespace) -> int:
    study = study_from_args(args)
    out = args.out if args.out is not None else Path("runs") / f"{study.name}-sensitivity"
    check_search_args(args, out)
    import pandas as pd

    from hwsearch.search.session import prepare  # torch and the models: only once the input is known to be good
    from hwsearch.search.profiling import ensure_profile
    from hwsearch.search.results import BUDGET_KEYS
    from hwsearch.search.runners import make_runner

    no_budget = {k: "none" for k in BUDGET_KEYS}  # a profile has no cost budget
    setup = prepare(study, constraints=no_budget, axes=axes_from_args(args), rates=rates_from_args(args), criterion=args.criterion,
                    eval_subset=args.eval_subset, run_dir=out, storage=args.storage, progress=not args.quiet,
                    bn_recalibrate=args.bn_recalibrate, prior=args.prior,
                    early_stop=False if args.no_early_stop else None, cost_models=(), **compute_settings(args))
    with make_runner(args.workers, args.ray_address, threads=setup.threads) as runner:
        runner.start(setup.spec)
        profile = ensure_profile(setup, runner, file=args.sensitivity, progress=not args.quiet)
    table = profile.table
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.float_format", "{:.2f}".format):
        print(f"baseline top-1 {setup.baseline.accuracy:.2f} % on {setup.study.data.eval_split}; profile "
              + (f"{profile.new_evaluations} new evaluations" if profile.new_evaluations else f"reused ({profile.source})"))
        print(table.to_wide_frame().to_string())
    print(f"\nwrote {out / 'sensitivity.csv'} (layer x rate), {out / 'sensitivity_long.csv'}, {out / 'sensitivity.png'}")
    return 0


SENSITIVITY = Command(name="sensitivity", help="per-group sensitivity: accuracy and size at each pruning rate",
                      add_arguments=_add, run=_run)
