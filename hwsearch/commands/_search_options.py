"""Options shared by ``run``, ``compare`` and ``sensitivity``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hwsearch.errors import UserError
from hwsearch.space import ALL_AXES, DEFAULT_AXES, DEFAULT_RATES

__all__ = ["add_search_options", "constraints_from_args", "rates_from_args", "axes_from_args"]


def add_search_options(p: argparse.ArgumentParser, *, budgets: bool = True) -> None:
    if budgets:
        p.add_argument("--budget-mb", type=float, default=None, metavar="X",
                       help="parameter-memory budget in MB (10^6 bytes) at --dtype (default: the study's)")
        p.add_argument("--budget-macs", type=float, default=None, metavar="G", help="dense-MAC budget, G per image")
        p.add_argument("--budget-act-mb", type=float, default=None, metavar="Y",
                       help="spike-activation memory budget in MB (1-bit spikes)")
        p.add_argument("--max-acc-drop", type=float, default=None, metavar="D",
                       help="largest allowed top-1 drop in percentage points (default: the study's)")
        p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16", "int8", "int4"],
                       help="deployment dtype of the weights for --budget-mb (default: the study's)")
    p.add_argument("--rates", default=None, metavar="R1,R2,...",
                   help=f"pruning-rate grid (default: {','.join(f'{r:g}' for r in DEFAULT_RATES[1:])})")
    p.add_argument("--axes", default=None, metavar="KINDS",
                   help=f"group kinds to search, comma-separated from {','.join(ALL_AXES)} "
                        f"(default: {','.join(DEFAULT_AXES)})")
    p.add_argument("--criterion", default="l2", choices=["l2", "l1", "random"], help="channel ranking (default l2)")
    p.add_argument("--eval-subset", type=int, default=None, metavar="N",
                   help="evaluate candidates on N seeded samples of the eval split (default: the study's, all)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="parallel evaluations on Ray (default 1: serial)")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="join an existing Ray cluster (e.g. auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the strategies (default 0)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="run directory (default runs/<study>-<command>)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage URL (default: a journal file in the run directory)")
    p.add_argument("--resume", action="store_true", help="continue the run stored in --out / --storage")
    p.add_argument("--sensitivity", type=Path, default=None, metavar="FILE",
                   help="reuse this sensitivity table (default: computed once and cached in the run directory)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def rates_from_args(args: argparse.Namespace) -> tuple[float, ...]:
    if not args.rates:
        return DEFAULT_RATES
    try:
        return tuple(float(r) for r in args.rates.split(",") if r.strip())
    except ValueError:
        raise UserError(f"--rates must be comma-separated numbers in [0, 1), got {args.rates!r}") from None


def axes_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    if not args.axes:
        return DEFAULT_AXES
    axes = tuple(a.strip() for a in args.axes.split(",") if a.strip())
    bad = [a for a in axes if a not in ALL_AXES]
    if bad:
        raise UserError(f"unknown axis '{bad[0]}' in --axes; choose from {','.join(ALL_AXES)}")
    return axes


def constraints_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"param_mb": getattr(args, "budget_mb", None), "macs_g": getattr(args, "budget_macs", None),
            "act_mb": getattr(args, "budget_act_mb", None), "max_acc_drop": getattr(args, "max_acc_drop", None),
            "dtype": getattr(args, "dtype", None)}
