"""``hwsearch criteria``: the registered channel-importance criteria."""

from __future__ import annotations

import argparse
import inspect

from hwsearch.commands._base import Command


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch wildcard (default: all)")


def _run(args: argparse.Namespace) -> int:
    from hwsearch.pruning import CRITERIA

    for name in CRITERIA.list_or_raise(args.pattern):
        doc = inspect.getdoc(CRITERIA.get(name)) or ""
        print(f"{name:<8} {doc.splitlines()[0] if doc else ''}")
    return 0


CRITERIA_COMMAND = Command(name="criteria", help="list the channel-importance criteria (l2, l1, taylor, random)",
                           add_arguments=_add, run=_run)
