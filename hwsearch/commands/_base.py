"""What a CLI sub-command is, and the options several of them share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from hwsearch.errors import UserError
from hwsearch.study import Study, default_study_path, load_study

if TYPE_CHECKING:
    import torch.nn as nn  # only for annotations: the CLI parses its arguments without importing torch

__all__ = ["Command", "add_study_argument", "study_from_args", "add_model_dir_argument", "pruned_from_args"]


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


def add_model_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir", type=Path, default=None, metavar="DIR",
        help="a pruned model folder (RUN/best, or what `hwsearch prune --out` wrote) to use instead of the study's "
             "checkpoint; the study still gives the data and must be the one the model was pruned from",
    )


def pruned_from_args(args: argparse.Namespace, study: Study) -> nn.Module:
    """The pruned model of ``--model-dir`` (checked against the study's model before loading weights)."""
    import json

    folder: Path = args.model_dir
    if folder.is_file():
        folder = folder.parent
    arch = folder / "architecture.json"
    if not arch.is_file():
        raise UserError(f"--model-dir {args.model_dir}: no architecture.json there; pass a pruned model folder "
                        "such as RUN/best (written by hwsearch run or hwsearch prune --out)")
    try:
        config = json.loads(arch.read_text()).get("config")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        config = None
    if isinstance(config, str) and config != study.model:
        where = f"study {study.path}" if study.path else "the study"
        raise UserError(f"--model-dir {args.model_dir} was pruned from '{config}' but the model of {where} is "
                        f"'{study.model}'; pass the study it was searched with (--study STUDY.toml)")
    from hwsearch.pruning import load_pruned

    return load_pruned(folder)
