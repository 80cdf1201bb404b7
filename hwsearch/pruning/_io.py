"""Saving and reloading pruned models: a state_dict plus a small architecture description."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from hwsearch.errors import CheckpointError, load_error_reason
from hwsearch.pruning._plan import PruningPlan

__all__ = ["save_pruned", "load_pruned", "ARCH_FILE", "WEIGHTS_FILE"]

ARCH_FILE = "architecture.json"
WEIGHTS_FILE = "model.pth"


def save_pruned(model: nn.Module, out_dir: str | Path) -> Path:
    """Write ``model.pth`` (bare state_dict), ``architecture.json`` and ``plan.json`` into ``out_dir``.

    The architecture is the source configuration, its constructor overrides and the kept width of every
    group: enough to rebuild the same module tree without the source checkpoint.
    """
    plan: PruningPlan | None = getattr(model, "hwsearch_plan", None)
    config = getattr(model, "hwsearch_config", None)
    if plan is None or config is None:
        raise ValueError("save_pruned needs a model returned by hwsearch.pruning.prune")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arch = {"schema": 1, "config": config, "model_kwargs": dict(getattr(model, "hwsearch_kwargs", {})),
            "widths": plan.counts(), "params": sum(p.numel() for p in model.parameters())}
    from search_spaces import get_config

    source = get_config(config)
    if source.user_defined:  # a fresh process re-creates the configuration from this file alone
        arch["definition"] = source.to_dict()
    tmp = out / (WEIGHTS_FILE + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out / WEIGHTS_FILE)
    (out / ARCH_FILE).write_text(json.dumps(arch, indent=1, sort_keys=True) + "\n")
    plan.save(out / "plan.json")
    return out


def _read_arch(arch_path: Path) -> dict[str, Any]:
    try:
        arch = json.loads(arch_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{arch_path} is not valid JSON ({e}); re-create the folder with hwsearch prune") from None
    if not isinstance(arch, dict) or not isinstance(arch.get("config"), str) or not isinstance(arch.get("widths"), dict):
        raise CheckpointError(f"{arch_path} lacks `config` and `widths`; re-create the folder with hwsearch prune")
    return arch


def load_pruned(path: str | Path) -> nn.Module:
    """Rebuild a pruned model saved by :func:`save_pruned` (a folder, or its ``model.pth``)."""
    from hwsearch.pruning._engine import prune
    from search_spaces import get_config
    from search_spaces.groups import groups_of

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    arch_path, weights = folder / ARCH_FILE, folder / WEIGHTS_FILE
    if not arch_path.is_file() or not weights.is_file():
        raise CheckpointError(f"no pruned model in {folder}: expected {ARCH_FILE} and {WEIGHTS_FILE} (written by hwsearch prune)")
    arch = _read_arch(arch_path)
    if isinstance(arch.get("definition"), dict):
        from search_spaces import ConfigError, ensure_config

        try:
            ensure_config(arch["definition"], where=str(arch_path))
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
    cfg = get_config(arch["config"])
    with torch.device("meta"):
        skeleton = cfg.build(**arch.get("model_kwargs", {}))
    groups = groups_of(skeleton)
    plan_path = folder / "plan.json"
    saved = PruningPlan.load(plan_path) if plan_path.is_file() else None
    if saved is not None and saved.resolved:
        # The exact indices say which blocks/branches went; on the meta skeleton only shapes matter.
        plan = PruningPlan(model=cfg.name, keep=saved.keep, token_score=saved.token_score,
                           model_kwargs=arch.get("model_kwargs", {}))
    else:
        widths = {k: int(v) for k, v in arch["widths"].items()}
        keep: dict[str, tuple[int, ...]] = {}
        for g in groups:
            if g.name in widths:
                parts = getattr(g, "partitions", 1)
                pw, per = g.width // parts, widths[g.name] // parts
                keep[g.name] = tuple(p * pw + i for p in range(parts) for i in range(per))
        plan = PruningPlan(model=cfg.name, keep=keep, token_score=saved.token_score if saved else "activity",
                           model_kwargs=arch.get("model_kwargs", {}))
    shaped = prune(skeleton, plan, groups)
    shaped = shaped.to_empty(device="cpu")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, or a pickle that needs code
        raise CheckpointError(f"cannot read {weights}: {load_error_reason(e)}; re-create it with hwsearch prune or hwsearch run") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights} holds a {type(state).__name__}, not a state_dict; re-create it with hwsearch prune")
    try:
        shaped.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split("\n", 2)[1:2]).strip() or str(e).splitlines()[0]
        raise CheckpointError(f"{weights} does not match {arch_path}: {' '.join(detail.split())}; "
                              "re-create the folder with hwsearch prune") from None
    shaped.eval()
    functional.invalidate_reset_cache(shaped)
    functional.reset_net(shaped)
    return shaped
