"""``hwsearch compare``: several strategies, same budget, same evaluations, one table and one plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwsearch.commands._base import Command, add_study_argument, study_from_args
from hwsearch.commands._preflight import check_search_args
from hwsearch.commands._values import positive_int
from hwsearch.commands._compute import add_compute_options, compute_settings
from hwsearch.commands._search_options import (
    add_search_options,
    axes_from_args,
    constraints_from_args,
    rates_from_args,
    search_settings,
)

DEFAULT = "prioritized,sensitivity,knapsack,analytic,local,tpe,nsga2,random"


def _add(p: argparse.ArgumentParser) -> None:
    add_study_argument(p)
    p.add_argument("--strategies", default=DEFAULT, help=f"comma-separated strategy names (default {DEFAULT})")
    p.add_argument("--eval-budget", type=positive_int, default=120, metavar="N",
                   help="new accuracy evaluations per strategy; the shared profile is computed (or reused) once and "
                        "not counted (default 120)")
    p.add_argument("--no-warm-start", action="store_true",
                   help="do not hand the greedy, knapsack and analytic answers to the global strategies")
    p.add_argument("--finetune-epochs", type=positive_int, default=None, metavar="N",
                   help="also fine-tune each strategy's answer for N epochs (distillation from the unpruned model) and "
                        "add its top-1 with fine-tuning to the table (default: no fine-tuning)")
    add_search_options(p)
    add_compute_options(p)


def _run(args: argparse.Namespace) -> int:
    study = study_from_args(args)
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    out = args.out if args.out is not None else Path("runs") / f"{study.name}-compare"
    if not names:
        from hwsearch.errors import UserError

        raise UserError(f"--strategies {args.strategies!r} names no strategy; e.g. --strategies prioritized,tpe")
    from hwsearch.search.strategies import STRATEGIES

    for name in names:
        STRATEGIES.get(name)  # unknown names fail before any work, with close matches
    check_search_args(args, out)
    import pandas as pd

    from hwsearch.comparison import compare  # torch and the models: only once the input is known to be good

    frame, runs = compare(study, strategies=names, eval_budget=args.eval_budget, constraints=constraints_from_args(args),
                          workers=args.workers, ray_address=args.ray_address, seed=args.seed, out=out,
                          resume=args.resume, axes=axes_from_args(args), rates=rates_from_args(args),
                          criterion=args.criterion, eval_subset=args.eval_subset, sensitivity_file=args.sensitivity,
                          progress=not args.quiet, warm_start=not args.no_warm_start, **search_settings(args),
                          **compute_settings(args), finetune_epochs=args.finetune_epochs)
    if frame.attrs.get("interrupted"):
        import sys

        from hwsearch import interrupts
        from hwsearch.commands.run import resume_command

        if runs:
            with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
                print(frame.to_string(index=False))
        print(f"interrupted: finished evaluations are stored in {out}; continue with:\n  "
              f"{resume_command(out, getattr(args, '_argv', sys.argv[1:]))}", file=sys.stderr)
        return interrupts.exit_code()
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(frame.to_string(index=False))
    print(f"\nwrote {out / 'comparison.csv'}, {out / 'comparison.png'} and one run directory per strategy")
    return 0


COMPARE = Command(name="compare", help="compare strategies under the same budget and number of evaluations",
                  add_arguments=_add, run=_run)
