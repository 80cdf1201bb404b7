"""What a CLI sub-command is, and the options several of them share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hwsearch.study import Study, default_study_path, load_study

__all__ = ["Command", "add_study_argument", "study_from_args"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_study_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--study", type=Path, default=None, metavar="TOML",
        help="study spec (model, checkpoint, data, constraints); default: the demo study studies/demo.toml",
    )


def study_from_args(args: argparse.Namespace) -> Study:
    return load_study(args.study if args.study is not None else default_study_path())
