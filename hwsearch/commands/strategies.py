"""``hwsearch strategies``: the registered search strategies."""

from __future__ import annotations

import argparse
import inspect

from hwsearch.commands._base import Command


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch wildcard (default: all)")


def _run(args: argparse.Namespace) -> int:
    from hwsearch.search.strategies import STRATEGIES

    for name in STRATEGIES.list_or_raise(args.pattern):
        cls = STRATEGIES.get(name)
        doc = (inspect.getdoc(cls) or "").splitlines()[0] if inspect.getdoc(cls) else ""
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        print(f"{name:<12} {doc}")
        print(f"{'':<12} parameters: {', '.join(params)}")
    return 0


STRATEGIES_COMMAND = Command(name="strategies", help="list the registered search strategies",
                             add_arguments=_add, run=_run)
