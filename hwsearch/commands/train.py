"""``hwsearch train``: surrogate-gradient training of the study's model (used to make the demo model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwsearch.commands._base import Command, add_study_argument, study_from_args
from hwsearch.commands._preflight import check_out_file
from hwsearch.commands._values import positive_int
from hwsearch.commands._compute import add_compute_options, compute_from_args


def _add(p: argparse.ArgumentParser) -> None:
    add_study_argument(p)
    p.add_argument("--epochs", type=positive_int, default=None, help="number of epochs, at least 1 (default: the study's [train] epochs)")
    p.add_argument("--out", type=Path, default=None,
                   help="checkpoint to write (default: the study's `checkpoint` path)")
    p.add_argument("--train-limit", type=positive_int, default=None, metavar="N", help="train on the first N samples only")
    add_compute_options(p)


def _run(args: argparse.Namespace) -> int:
    from hwsearch.train import train_model

    study = study_from_args(args)
    compute = compute_from_args(args)
    out = args.out if args.out is not None else study.checkpoint
    check_out_file(out, "--out" if args.out is not None else "the study's checkpoint")
    _, res = train_model(study, epochs=args.epochs, out=out, train_limit=args.train_limit, device=compute.device)
    print(f"saved {res.checkpoint} (best epoch {res.best_epoch}, {res.seconds:.0f} s)")
    print(f"top-1 {study.data.eval_split} {res.val_top1:.2f} %, {study.data.test_split} {res.test_top1:.2f} %")
    return 0


TRAIN = Command(name="train", help="train the study's model from scratch with surrogate gradients (seeded)",
                add_arguments=_add, run=_run)
