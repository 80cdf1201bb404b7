"""``hwsearch costmodels [PATTERN]``: the registered cost models, their parameters and what each gives a search."""

from __future__ import annotations

import argparse
import inspect

from hwsearch.commands._base import Command


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch wildcard, e.g. 'meas*' (default: all)")


def _run(args: argparse.Namespace) -> int:
    from costmodels import COST_MODELS

    names = COST_MODELS.list_or_raise(args.pattern)
    width = max(len(n) for n in names)
    for name in names:
        cls = COST_MODELS.get(name)
        summary = (inspect.getdoc(cls) or "").splitlines()[0] if inspect.getdoc(cls) else ""
        params = ", ".join(p for p in inspect.signature(cls).parameters)
        print(f"{name:<{width}}  {summary}")
        print(f"{'':<{width}}  parameters: {params}")
        provides = getattr(cls, "provides", ())
        if provides:  # what a search asks it for (hwsearch.search.costing)
            how = "measured on each candidate's own forward" if getattr(cls, "needs_forward", False) else "predicted"
            print(f"{'':<{width}}  in a search: {', '.join(provides)} ({how})")
    return 0


COSTMODELS_COMMAND = Command(name="costmodels", help="list the registered cost models and their parameters",
                             add_arguments=_add, run=_run)
