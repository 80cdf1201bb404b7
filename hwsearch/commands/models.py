"""``hwsearch models [PATTERN]``: the registered SViT configurations with their parameter counts."""

from __future__ import annotations

import argparse

from hwsearch.commands._base import Command


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default=None, help="fnmatch wildcard, e.g. 'spikformer-*' (default: all)")


def _run(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from search_spaces import get_config, list_models

    from search_spaces import MODELS

    list_models()  # loads the installed plug-ins
    names = MODELS.list_or_raise(args.pattern)
    rows = []
    for name in names:
        cfg = get_config(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in cfg.build().parameters())
        rows.append({
            "model": name, "family": cfg.family, "layout": cfg.layout, "params": f"{params:,}",
            "official": f"{cfg.official_params:,}" if cfg.official_params else "-",
            "input": "x".join(map(str, cfg.input_shape)), "description": cfg.description,
        })
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


MODELS_COMMAND = Command(name="models", help="list the registered SViT configurations and their parameter counts",
                         add_arguments=_add, run=_run)
