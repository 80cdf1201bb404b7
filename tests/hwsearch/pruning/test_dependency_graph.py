"""An independent check of the declared groups: Torch-Pruning's DependencyGraph traces each family and
every coupling it finds must lie inside one declared group."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch_pruning as tp

from hwsearch.pruning import ChannelGroup, groups_of
from search_spaces import create_model

SMALL = {
    "spikformer-cifar": ("spikformer-cifar10-4-256", dict(embed_dim=64, num_heads=4, depth=2), (2, 3, 32, 32)),
    "spikformer-imagenet": ("spikformer-8-384", dict(embed_dim=64, num_heads=4, depth=2, num_classes=10), (2, 3, 64, 64)),
    "spikformer-dvs": ("spikformer-cifar10dvs-2-256", dict(embed_dim=64, num_heads=4, depth=1, T=2), (1, 2, 2, 128, 128)),
    "sdt-cifar": ("sdt-cifar10-2-256", dict(embed_dim=64, num_heads=4, depth=2), (2, 3, 32, 32)),
    "sdt-imagenet": ("sdt-8-384", dict(embed_dim=64, num_heads=4, depth=1, num_classes=10), (2, 3, 64, 64)),
    "qkformer-cifar": ("qkformer-cifar10-4-384", dict(embed_dim=64, depth=3), (2, 3, 32, 32)),
    "qkformer-imagenet": ("qkformer-10-384", dict(embed_dim=64, num_heads=4, depth=4, num_classes=10), (1, 3, 64, 64)),
}

_SIDE = {"prune_out_channels": "out", "prune_in_channels": "in"}


def _declared_sets(model: nn.Module) -> list[set[tuple[str, str]]]:
    out = []
    for g in groups_of(model):
        if not isinstance(g, ChannelGroup):
            continue
        items = set()
        for m in g.members:
            mod = model.get_submodule(m.module) if m.module else model
            if isinstance(mod, (nn.modules.conv._ConvNd, nn.Linear)):
                items.add((m.module, "out" if m.dim == 0 else "in"))
            else:  # BN / LN: Torch-Pruning calls their only side "out"
                items.add((m.module, "out"))
        out.append(items)
    return out


def _tp_couplings(model: nn.Module, x: torch.Tensor) -> list[set[tuple[str, str]]]:
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    found = []
    for group in dg.get_all_groups(root_module_types=[nn.Conv1d, nn.Conv2d, nn.Linear]):
        items = set()
        for dep, _ in group:  # the handler says which side of the *target* the dependency prunes
            node = dep.target
            name = dg._module2name.get(node.module)
            side = _SIDE.get(getattr(dep.handler, "__name__", ""))
            if name is not None and side is not None and any(True for _ in node.module.parameters(recurse=False)):
                items.add((name, side))
        found.append(items)
    return found


@pytest.mark.parametrize("case", sorted(SMALL))
def test_every_traced_coupling_is_inside_one_declared_group(case: str) -> None:
    name, kw, shape = SMALL[case]
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    declared = _declared_sets(model)
    traced = _tp_couplings(model, torch.rand(*shape))
    coupled = [c for c in traced if len({m for m, _ in c}) >= 2]
    assert len(coupled) >= 5, "Torch-Pruning found almost no couplings: the check would be vacuous"
    for c in coupled:
        assert any(c <= d for d in declared), f"traced coupling {sorted(c)} is in no declared group"
    # The embedding / residual coupling is the big one; it must have been traced and matched.
    assert max(len(c) for c in coupled) >= 8
