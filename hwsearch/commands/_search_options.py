"""Options shared by ``run``, ``compare`` and ``sensitivity``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from hwsearch.commands._values import count, positive_int, rate_list
from hwsearch.errors import UserError
from hwsearch.search.results import OBJECTIVES
from hwsearch.search.encoding import ALL_AXES, DEFAULT_AXES, DEFAULT_RATES
from hwsearch.study import PRIORS

__all__ = ["add_search_options", "constraints_from_args", "rates_from_args", "axes_from_args", "search_settings"]


def _budget(text: str) -> float | str:
    """A positive finite number, or ``none`` (switch the study's budget off)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'none', got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number or 'none', got {text!r}")
    return value


def _cost_models(text: str) -> tuple[str, ...]:
    """Comma-separated registered cost-model names (an unknown one fails at parse time, with close matches)."""
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names such as analytic,latency, got {text!r}")
    from costmodels import COST_MODELS

    for name in names:
        if name not in COST_MODELS:
            raise argparse.ArgumentTypeError(COST_MODELS.unknown_message(name))
    return names


def _drop(text: str) -> float | str:
    """Percentage points in [0, 100], or ``none``."""
    if text.strip().lower() == "none":
        return "none"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected percentage points in [0, 100] or 'none', got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected percentage points in [0, 100] or 'none', got {text!r}")
    return value


def _eta(text: str) -> float:
    """0 (off) or a successive-halving factor >= 2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0 (off) or a number >= 2, got {text!r}") from None
    if not math.isfinite(value) or not (value == 0 or value >= 2):
        raise argparse.ArgumentTypeError(f"expected 0 (off) or a number >= 2, got {text!r}")
    return value


def add_search_options(p: argparse.ArgumentParser, *, budgets: bool = True) -> None:
    if budgets:
        p.add_argument("--budget-mb", type=_budget, default=None, metavar="X",
                       help="parameter-memory budget in MB (10^6 bytes) at --dtype; 'none' switches the study's off "
                            "(default: the study's)")
        p.add_argument("--budget-macs", type=_budget, default=None, metavar="G",
                       help="dense-MAC budget, G per image ('none': off)")
        p.add_argument("--budget-act-mb", type=_budget, default=None, metavar="Y",
                       help="spike-activation memory budget in MB (1-bit spikes; 'none': off)")
        p.add_argument("--budget-sops", type=_budget, default=None, metavar="G",
                       help="synaptic-operation budget, G per image, from each candidate's own firing rates on the "
                            "eval split (measured after its evaluation; 'none': off)")
        p.add_argument("--budget-energy-mj", type=_budget, default=None, metavar="E",
                       help="energy-estimate budget in mJ per image (4.6 pJ per MAC on non-binary inputs + 0.9 pJ per "
                            "SOP; measured firing rates; 'none': off)")
        p.add_argument("--budget-latency-ms", type=_budget, default=None, metavar="T",
                       help="latency budget in ms per forward of --latency-batch images, the median of timed "
                            "forwards of each candidate on the machine that evaluates it ('none': off)")
        p.add_argument("--latency-batch", type=positive_int, default=None, metavar="N",
                       help="images per timed forward for --budget-latency-ms and the latency cost model "
                            "(default: the study's [constraints] latency_batch, 1)")
        p.add_argument("--cost-models", type=_cost_models, default=None, metavar="A,B",
                       help="cost models every candidate is costed with, from `hwsearch costmodels` (analytic is "
                            "always on; measured: SOPs and energy; latency: timed); a budget adds its own "
                            "(default: the study's [search] cost_models)")
        p.add_argument("--max-acc-drop", type=_drop, default=None, metavar="D",
                       help="largest allowed top-1 drop in percentage points, 0-100 (default: the study's)")
        p.add_argument("--objective", default=None, choices=["auto", *OBJECTIVES],
                       help="what the answer optimises: auto (default: top-1 when a cost budget is set, else the "
                            "parameter memory under --max-acc-drop), accuracy, or a cost to minimise")
        p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16", "int8", "int4"],
                       help="deployment dtype of the weights for --budget-mb (default: the study's)")
    p.add_argument("--rates", type=rate_list, default=None, metavar="R1,R2,...",
                   help=f"pruning-rate grid (default: {','.join(f'{r:g}' for r in DEFAULT_RATES[1:])})")
    p.add_argument("--axes", default=None, metavar="KINDS",
                   help=f"group kinds to search, comma-separated from {','.join(ALL_AXES)} "
                        f"(default: {','.join(DEFAULT_AXES)})")
    p.add_argument("--criterion", default="l2", choices=["l2", "l1", "taylor", "random"],
                   help="channel ranking (default l2; taylor uses surrogate gradients on training batches; "
                        "see `hwsearch criteria`)")
    p.add_argument("--eval-subset", type=positive_int, default=None, metavar="N",
                   help="evaluate candidates on N seeded samples of the eval split (default: the study's, all)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="parallel evaluations on Ray actors, at most the CPU cores of this machine (or of the "
                        "cluster with --ray-address); default 1: serial, in this process")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join an existing Ray cluster (HOST:PORT of its head, ray://HOST:10001 or auto; token "
                        "authentication needs RAY_AUTH_MODE=token and the cluster's token); default: a private "
                        "local instance on 127.0.0.1, stopped at the end")
    p.add_argument("--seed", type=int, default=0, help="seed of the strategies (default 0)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="run directory (default runs/<study>-<command>)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage URL (default: a journal file in the run directory)")
    p.add_argument("--resume", action="store_true", help="continue the run stored in --out / --storage")
    p.add_argument("--sensitivity", type=Path, default=None, metavar="FILE",
                   help="use this sensitivity table as the shared profile: sensitivity.json, or the wide or long CSV "
                        "(default: computed once and cached in the user cache, $HWSEARCH_CACHE_DIR or ~/.cache/hwsearch)")
    p.add_argument("--prior", default=None, choices=list(PRIORS),
                   help="how strategies use the shared sensitivity profile: exclude (default: levels a group cannot "
                        "tolerate alone are left out), weight (drawn less often), none")
    p.add_argument("--bn-recalibrate", type=count, default=None, metavar="N",
                   help="re-estimate each candidate's batch-norm statistics on N training batches before scoring "
                        "(0: off; default: the study's [search] bn_recalibrate)")
    p.add_argument("--no-early-stop", action="store_true",
                   help="measure every candidate on the whole eval split (default: stop once the drop limit is "
                        "out of reach, an exact bound)")
    if budgets:  # a profile measures every candidate: halving is for searches
        p.add_argument("--halving", type=_eta, default=None, metavar="ETA",
                       help="successive halving for the sampling strategies (tpe, nsga2, random) when top-1 is the "
                            "objective: at each stage of the eval split only the top 1/ETA of the candidates "
                            "measured there go on (0: off; 3 is usual; default: the study's [search] halving, 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def rates_from_args(args: argparse.Namespace) -> tuple[float, ...]:
    if args.rates is None:
        return DEFAULT_RATES
    if isinstance(args.rates, str):  # a Namespace built by hand (tests, scripts)
        try:
            return rate_list(args.rates)
        except argparse.ArgumentTypeError as e:
            raise UserError(f"--rates: {e}") from None
    return tuple(args.rates)


def axes_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    if not args.axes:
        return DEFAULT_AXES
    axes = tuple(a.strip() for a in args.axes.split(",") if a.strip())
    bad = [a for a in axes if a not in ALL_AXES]
    if bad:
        import difflib

        close = difflib.get_close_matches(bad[0], ALL_AXES, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"unknown axis '{bad[0]}' in --axes{hint}; choose from {','.join(ALL_AXES)}")
    return axes


def constraints_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"param_mb": getattr(args, "budget_mb", None), "macs_g": getattr(args, "budget_macs", None),
            "act_mb": getattr(args, "budget_act_mb", None), "sops_g": getattr(args, "budget_sops", None),
            "energy_mj": getattr(args, "budget_energy_mj", None), "latency_ms": getattr(args, "budget_latency_ms", None),
            "latency_batch": getattr(args, "latency_batch", None), "max_acc_drop": getattr(args, "max_acc_drop", None),
            "dtype": getattr(args, "dtype", None)}


def search_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``[search]`` overrides a command line gives (None: the study's)."""
    return {"bn_recalibrate": getattr(args, "bn_recalibrate", None), "prior": getattr(args, "prior", None),
            "objective": getattr(args, "objective", None),
            "early_stop": False if getattr(args, "no_early_stop", False) else None,
            "halving": getattr(args, "halving", None), "cost_models": getattr(args, "cost_models", None)}
