"""``hwsearch groups``: the prunable groups of the study's model, with their sizes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hwsearch.commands._base import Command, add_model_dir_argument, add_study_argument, pruned_from_args, study_from_args

if TYPE_CHECKING:
    import pandas as pd
    import torch.nn as nn

    from hwsearch.pruning import DepthGroup


def _add(p: argparse.ArgumentParser) -> None:
    add_study_argument(p)
    add_model_dir_argument(p)
    p.add_argument("--kind", default=None, help="only groups of this kind (embed, sps, heads, qk, v, mlp, ...)")
    p.add_argument("--random-weights", action="store_true",
                   help="build the model with random weights instead of loading the study's checkpoint")


def groups_frame(model: nn.Module) -> pd.DataFrame:
    """One row per group: name, kind, unit, width, partitions, bounds, members, parameters covered (token
    groups ``<block>.tokens`` and ``T`` cover none: they shrink the work, not the weights)."""
    import pandas as pd

    from hwsearch.pruning import ChannelGroup, TimeGroup, TokenGroup, groups_of

    params = {id(p) for p in model.parameters()}
    rows = []
    for g in groups_of(model):
        if isinstance(g, ChannelGroup):
            seen: dict[int, int] = {}
            for m in g.members:
                t = getattr(model.get_submodule(m.module) if m.module else model, m.param)
                if id(t) in params:
                    seen[id(t)] = t.numel()
            covered = sum(seen.values())
            rows.append({"group": g.name, "kind": g.kind, "unit": g.unit, "width": g.width,
                         "partitions": g.partitions, "min_width": g.min_width * g.partitions,
                         "round_to": g.round_to, "members": len(g.members), "params_touched": covered})
        elif isinstance(g, (TokenGroup, TimeGroup)):  # work axes: no parameters
            rows.append({"group": g.name, "kind": g.kind, "unit": "token" if isinstance(g, TokenGroup) else "step",
                         "width": g.width, "partitions": 1, "min_width": g.min_width, "round_to": 1,
                         "members": 0, "params_touched": 0})
        else:
            rows.append({"group": g.name, "kind": f"depth:{g.kind}", "unit": "block" if g.kind == "blocks" else "branch",
                         "width": g.width, "partitions": 1, "min_width": g.min_width, "round_to": 1,
                         "members": g.width, "params_touched": _depth_params(model, g)})
    return pd.DataFrame(rows)


def _depth_params(model: nn.Module, g: DepthGroup) -> int:
    if g.kind == "blocks":
        return sum(p.numel() for p in model.get_submodule(g.container).parameters())
    return sum(p.numel() for path in g.units for p in model.get_submodule(path).parameters())


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from hwsearch.errors import UserError
    from search_spaces import get_config

    study = study_from_args(args)
    if args.model_dir is not None:
        model = pruned_from_args(args, study)
    elif args.random_weights:
        model = get_config(study.model).build()
    else:
        from hwsearch.loading import load_study_model

        model = load_study_model(study).model
    frame = groups_frame(model)
    if args.kind:
        kinds = sorted(set(frame["kind"]))
        if args.kind not in kinds:
            import difflib

            close = difflib.get_close_matches(args.kind, kinds, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"--kind {args.kind}: {study.model} has no groups of that kind{hint}; its kinds: {', '.join(kinds)}")
        frame = frame[frame["kind"] == args.kind]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(f"{study.model}: {len(frame)} groups")
        print(frame.to_string(index=False))
    return 0


GROUPS = Command(name="groups", help="list the prunable groups (coupled channels, heads, blocks) with their sizes",
                 add_arguments=_add, run=_run)
