"""``hwsearch finetune RUN_DIR``: recovery fine-tuning of a run's pruned model, with distillation."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwsearch.commands._base import Command, add_study_argument, study_from_args
from hwsearch.commands._values import fraction, positive_float, positive_int


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a run directory of `hwsearch run` (its best/ model is fine-tuned), or a pruned-model folder")
    add_study_argument(p)
    p.add_argument("--epochs", type=positive_int, default=3, help="training epochs (default 3)")
    p.add_argument("--loss", choices=["kd", "ce"], default="kd",
                   help="kd: distillation from the unpruned model plus cross-entropy (default); ce: cross-entropy")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="AdamW learning rate, cosine schedule (default: a quarter of the study's [train] lr)")
    p.add_argument("--temperature", type=positive_float, default=4.0, help="distillation temperature (default 4)")
    p.add_argument("--alpha", type=fraction, default=0.5, help="weight of the distillation term, 0-1 (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffling and augmentation (default 0)")
    p.add_argument("--top", type=positive_int, default=1, metavar="K",
                   help="fine-tune the answer and the next K-1 plans of the run (its Pareto front in the objective's "
                        "order, then plans that miss only the drop limit); each pruned model is built in "
                        "RUN_DIR/pareto/<key>/ and fine-tuned into RUN_DIR/pareto/<key>-finetuned/ (default 1: the answer)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder of the answer's fine-tuned model (default: RUN_DIR/best-finetuned, next to "
                        "best/); not with --top K > 1")
    p.add_argument("--resume", action="store_true", help="continue a fine-tuning run stopped in --out")
    p.add_argument("--train-limit", type=positive_int, default=None, metavar="N",
                   help="train on the first N samples of the training split only (quick checks)")
    p.add_argument("--token-selector", choices=["as-pruned", "learned"], default="as-pruned",
                   help="learned: train SPViT's multi-head token selector with the model, with a computation-aware "
                        "keep-ratio loss (models that prune tokens; default: keep the model's token scores)")
    p.add_argument("--ratio-weight", type=positive_float, default=0.1,
                   help="weight of the keep-ratio loss of --token-selector learned (default 0.1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    from hwsearch.errors import UserError
    from hwsearch.reports.runplans import RANKING_FILE, runner_up_dirs

    run_dir: Path = args.run_dir
    is_run = (run_dir / "best").is_dir()
    model_dir = run_dir / "best" if is_run else run_dir
    if not (model_dir / "architecture.json").is_file():
        raise UserError(f"no pruned model in {run_dir}: expected {run_dir}/best/ (written by `hwsearch run`) or a "
                        "folder written by `hwsearch prune`")
    if args.top > 1:
        if not is_run:
            raise UserError(f"--top {args.top} needs a run directory (with best/ and pareto/), not the model folder {run_dir}")
        if args.out is not None:
            raise UserError("--out names one folder; with --top K each model is written next to its pruned one (drop --out)")
        if not (run_dir / "pareto" / RANKING_FILE).is_file():
            raise UserError(f"{run_dir} has no pareto/{RANKING_FILE} (the plans after the answer); rerun the search "
                            "with this version of hwsearch, or drop --top")
    study = study_from_args(args)
    from hwsearch.finetune import finetune, finetune_run

    settings = dict(epochs=args.epochs, loss=args.loss, lr=args.lr, temperature=args.temperature, alpha=args.alpha,
                    seed=args.seed, train_limit=args.train_limit, token_selector=args.token_selector,
                    ratio_weight=args.ratio_weight)
    if is_run:
        found = len(runner_up_dirs(run_dir)) if args.top > 1 else 0
        if args.top > 1 and found < args.top - 1:
            print(f"note           {run_dir} ranks {found} plan(s) after the answer: fine-tuning {found + 1} model(s), "
                  f"not {args.top}")
        results = finetune_run(study, run_dir, top=args.top, out=args.out, resume=args.resume,
                               progress=not args.quiet, **settings)
    else:
        results = [finetune(study, model_dir, out=args.out, resume=args.resume, progress=not args.quiet, **settings)[1]]
    for res in results:
        rows: list[tuple[str, float, float | None]] = [("eval", res.eval_before, res.eval_after),
                                                       ("test", res.test_before, res.test_after)]
        if res.confirm_before is not None:
            rows.insert(1, ("confirm", res.confirm_before, res.confirm_after))
        print(f"fine-tuned     {res.out_dir} ({res.loss}, {res.epochs} epochs, kept epoch {res.best_epoch}, "
              f"{res.seconds:.1f} s)")
        for name, before, after in rows:
            print(f"top-1 {name:<8} {before:.2f} % -> {after:.2f} %")
    return 0


FINETUNE = Command(name="finetune", help="fine-tune a run's pruned model (knowledge distillation from the unpruned one)",
                   add_arguments=_add, run=_run)
