"""``hwsearch run``: search pruning plans with one strategy; write trials, Pareto front, best model, report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
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


def _add(p: argparse.ArgumentParser) -> None:
    add_study_argument(p)
    p.add_argument("--strategy", default=None,
                   help="search strategy (default: the study's [search] strategy, prioritized; see `hwsearch strategies`)")
    p.add_argument("--trials", type=positive_int, default=None, metavar="N",
                   help="most new accuracy evaluations, the shared profile not counted (default: the strategy's own "
                        "stopping rule)")
    p.add_argument("--warm-start", type=Path, default=None, metavar="RUN_DIR",
                   help="tpe/nsga2: evaluate the best feasible candidate of an earlier run first (Optuna enqueue_trial), "
                        "e.g. the prioritized run's directory")
    p.add_argument("--finetune-epochs", type=positive_int, default=None, metavar="N",
                   help="after the search, fine-tune the best model for N epochs with distillation from the unpruned "
                        "one (what `hwsearch finetune RUN_DIR --epochs N` does; default: no fine-tuning)")
    p.add_argument("--finetune-top", type=positive_int, default=1, metavar="K",
                   help="with --finetune-epochs: also fine-tune the next K-1 plans after the answer (what "
                        "`hwsearch finetune RUN_DIR --top K` does; default 1: the answer only)")
    add_search_options(p)
    add_compute_options(p)


def warm_start_levels(run_dir: Path, space) -> list[dict[str, int]]:  # type: ignore[no-untyped-def]
    """The best feasible candidate of an earlier run (its trials.csv), as levels of ``space``."""
    import pandas as pd

    from hwsearch.errors import UserError

    path = run_dir / "trials.csv"
    if not path.is_file():
        raise UserError(f"--warm-start {run_dir}: no trials.csv there; pass the directory of a finished run")
    trials = pd.read_csv(path)
    ok = trials[trials["feasible"].astype(bool)]
    if ok.empty:
        raise UserError(f"--warm-start {run_dir}: that run has no feasible candidate to start from")
    row = ok.sort_values("accuracy", ascending=False).iloc[0]
    levels = {}
    for v in space.variables:
        col = f"rate:{v.name}"
        if col not in row:
            raise UserError(f"--warm-start {run_dir}: it searched other groups (no {col}); use a run of the same space")
        levels[v.name] = min(range(len(v.rates)), key=lambda i: abs(v.rates[i] - float(row[col])))
    return [levels]


def measured_line(costs: Mapping[str, float], where: str) -> str:
    """The measured costs of a result in one line ('' when none were measured)."""
    parts = []
    if "sops_g" in costs:
        parts.append(f"SOPs {costs['sops_g']:.4g} G/image")
    if "energy_mj" in costs:
        parts.append(f"energy {costs['energy_mj']:.4g} mJ/image (estimate)")
    if "latency_ms" in costs:
        parts.append(f"latency {costs['latency_ms']:.2f} ms ({where})")
    return ", ".join(parts)


def resume_command(run_dir: Path, argv: list[str]) -> str:
    """The command line ``argv`` with ``--resume`` and the run directory (what continues an interrupted run)."""
    import shlex

    argv = list(argv)
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", str(run_dir)]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(["hwsearch", *argv])


def _run(args: argparse.Namespace) -> int:
    from hwsearch.search.strategies import STRATEGIES

    study = study_from_args(args)
    strategy = args.strategy or study.search.strategy
    STRATEGIES.get(strategy)  # unknown names fail before any work
    out = args.out if args.out is not None else Path("runs") / f"{study.name}-{strategy}"
    check_search_args(args, out)
    if args.finetune_top > 1 and not args.finetune_epochs:
        from hwsearch.errors import UserError

        raise UserError(f"--finetune-top {args.finetune_top} needs --finetune-epochs N (how long to fine-tune)")
    if args.warm_start is not None and not (args.warm_start / "trials.csv").is_file():
        from hwsearch.errors import UserError

        raise UserError(f"--warm-start {args.warm_start}: no trials.csv there; pass the directory of a finished run")
    from hwsearch.runs import run  # torch and the models: only once the input is known to be good
    from hwsearch.search.session import prepare
    setup = prepare(study, constraints=constraints_from_args(args), axes=axes_from_args(args), rates=rates_from_args(args),
                    criterion=args.criterion, eval_subset=args.eval_subset, run_dir=out, storage=args.storage,
                    progress=not args.quiet, **search_settings(args), **compute_settings(args))
    params = {}
    if args.warm_start is not None:
        params["warm_start"] = warm_start_levels(args.warm_start, setup.space)
    res = run(study, strategy=strategy, trials=args.trials, workers=args.workers, ray_address=args.ray_address,
              seed=args.seed, resume=args.resume, sensitivity_file=args.sensitivity, progress=not args.quiet,
              strategy_params=params, setup=setup)
    base, best = res.baseline, res.best
    print(f"run directory  {res.run_dir}")
    print(f"evaluations    {res.evaluations} new in {res.seconds:.1f} s (shared profile: {res.profile_evaluations} new, "
          f"{'reused' if res.profile_evaluations == 0 else 'cached'})")
    base_measured = measured_line(base.costs, base.measured_on)
    print(f"baseline       top-1 {base.accuracy:.2f} %, {base.costs['param_mb']:.4f} MB, {base.costs['macs_g']:.4f} GMACs"
          + (f"; {base_measured}" if base_measured else ""))
    for note in res.notes:
        print(f"note           {note}")
    if res.interrupted:
        from hwsearch import interrupts

        print(f"interrupted: finished evaluations are stored in {res.run_dir}; continue with:\n  {resume_command(res.run_dir, getattr(args, '_argv', sys.argv[1:]))}",
              file=sys.stderr)
        return interrupts.exit_code()
    if best is None:
        from hwsearch.search.costing import METRICS

        given = [str(METRICS[k].flag) for k in setup.constraints.budgets()]
        print(f"no evaluated candidate met every constraint (see report.md); relax {' or '.join(given + ['--max-acc-drop'])}")
        return 3
    saving = 1 - best.costs["param_mb"] / base.costs["param_mb"]
    print(f"best           top-1 {best.accuracy:.2f} % (drop {best.acc_drop:.2f} pt), {best.costs['param_mb']:.4f} MB "
          f"({100 * saving:.1f} % saved), {best.costs['macs_g']:.4f} GMACs")
    measured = measured_line(best.costs, best.measured_on)
    if measured:
        print(f"measured       {measured}")
    if res.best_confirm_accuracy is not None:
        print(f"confirm split  baseline {res.baseline_confirm_accuracy:.2f} %, pruned {res.best_confirm_accuracy:.2f} % "
              f"(drop {res.confirm_drop:.2f} pt)")
    if res.best_test_accuracy is not None:
        print(f"test split     baseline {res.baseline_test_accuracy:.2f} %, pruned {res.best_test_accuracy:.2f} % "
              f"(drop {res.test_drop:.2f} pt)")
        limit = setup.constraints.max_acc_drop
        if limit is not None and res.test_drop is not None and res.test_drop > limit:
            print(f"warning        the test drop {res.test_drop:.2f} exceeds --max-acc-drop {limit:g} (see report.md)")
    if args.finetune_epochs:
        from hwsearch.finetune import finetune_run

        for ft in finetune_run(study, res.run_dir, top=args.finetune_top, epochs=args.finetune_epochs,
                               resume=args.resume, progress=not args.quiet):
            print(f"fine-tuned     {ft.out_dir} ({ft.epochs} epochs, kept epoch {ft.best_epoch}): top-1 eval "
                  f"{ft.eval_after:.2f} %, test {ft.test_after:.2f} % (without: {ft.eval_before:.2f} %, "
                  f"{ft.test_before:.2f} %)")
    print(f"report         {res.run_dir / 'report.md'}")
    return 0


RUN = Command(name="run", help="search pruning plans under a device budget and write the best pruned model",
              add_arguments=_add, run=_run)
