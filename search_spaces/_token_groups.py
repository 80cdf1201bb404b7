"""Token groups (a keep ratio before each block where tokens flow) and the T group of every family.

* Spikformer: every block (layouts ImageNet ``cfhw``, CIFAR ``nc``, DVS ``cn``);
* SDT: every block (``cfhw``);
* QKFormer: the stage-3 blocks (``cfhw``); stages 1-2 feed patch-merging convolutions that need the
  full token grid, so their tokens are not pruned.

T is searchable where the constructor sets it (ImageNet and CIFAR layouts); DVS models take their
steps from the event frames, so they have no T group.
"""

from __future__ import annotations

import torch.nn as nn

from search_spaces._spikformer_groups import module_attr, submodule
from search_spaces.groups import TIME_AXIS_LAYOUTS, Group, TimeGroup, TokenGroup, register_groups

__all__ = ["token_groups"]


def _grid(model: nn.Module, family: str, layout: str) -> int:
    """Tokens reaching the first token block: Spikformer/SDT patch grid, QKFormer stage-3 grid."""
    from search_spaces import config_name, get_config
    from search_spaces.geometry import pair, pool_out

    kw = {**get_config(config_name(model)).kwargs, **dict(getattr(model, "hwsearch_kwargs", {}))}
    if family == "sdt":
        pools = sum(c == "1" for c in str(kw.get("pooling_stat", "1111")))
    else:  # Spikformer CIFAR and QKFormer CIFAR halve twice, every other layout four times
        pools = 2 if layout == "cifar" else 4
    size = pair(kw["img_size"])
    for _ in range(pools):
        size = pool_out(size)
    return size[0] * size[1]


def token_groups(model: nn.Module) -> list[Group]:
    """The token groups (one per token block, in forward order) and the T group of an unpruned model."""
    from search_spaces import config_name, get_config

    cfg = get_config(config_name(model))
    family, layout = cfg.family, cfg.layout
    N = _grid(model, family, layout)
    token_layout = {"cifar": "nc", "dvs": "cn"}.get(layout, "cfhw") if family == "spikformer" else "cfhw"
    container = "stage3" if family == "qkformer" else "block"
    blocks = submodule(model, container, nn.ModuleList)
    groups: list[Group] = [
        TokenGroup(name=f"{container}.{i}.tokens", block=f"{container}.{i}", width=N, layout=token_layout,
                   container=container, index=i)
        for i in range(len(blocks))
    ]
    if layout in TIME_AXIS_LAYOUTS:
        groups.append(TimeGroup(width=int(module_attr(model, "T", int))))
    return groups


for _family in ("spikformer", "sdt", "qkformer"):
    register_groups(_family, token_groups, kind="tokens")
