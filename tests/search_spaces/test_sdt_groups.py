"""Prunable groups of the Spike-driven Transformer (search_spaces/_sdt_groups.py), both layouts.

Every group is checked against the forward itself: removing units gives the same features as the
unpruned model in which nothing reads those units any more (their consumer columns zeroed, or, for a
group without a consumer weight, their spikes silenced), and removing a branch equals zeroing its output.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from hwsearch.pruning import (ChannelGroup, Group, PruningPlan, full_plan, load_pruned, prune,
                              save_pruned)
from hwsearch.testing import calibrate_bn, firing_rates
from hwsearch.testing.groups import (
    assert_same_state,
    channel_coverage,
    channel_shapes,
    check_sizes,
    depth_shapes,
    half_count,
    param_count,
    pick_units,
    random_plan,
    run_from_reset,
    weight_groups,
    zero_consumers,
)
from search_spaces import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

D, HEADS, DEPTH, K = 64, 4, 2, 10
# layout -> (registered config, overrides, input side)
LAYOUTS = {
    "cifar": ("sdt-cifar10-2-256", dict(embed_dim=D, num_heads=HEADS, depth=DEPTH, T=2, num_classes=K), 32),
    "imagenet": ("sdt-8-384", dict(img_size=64, embed_dim=D, num_heads=HEADS, depth=DEPTH, T=2, num_classes=K), 64),
}
EXPECTED_GROUPS = [
    ("patch_embed.c1", "sps", D // 8), ("patch_embed.c2", "sps", D // 4), ("patch_embed.c3", "sps", D // 2),
    ("embed", "embed", D),
    *[(f"block.{i}.{n}", kind, w) for i in range(DEPTH)
      for n, kind, w in (("attn.heads", "heads", HEADS), ("attn.qkv", "qkv", D), ("mlp.hidden", "mlp", 4 * D))],
    ("branches", "branches", 2 * DEPTH), ("block", "blocks", DEPTH),
]
# Channel dims that no non-head group covers: image channels, classes, and the dead talking_heads (heads only).
UNCOVERED = re.compile(
    r"^(patch_embed\.proj_conv\.weight:1|head\.(weight|bias):0|block\.\d+\.attn\.talking_heads\.weight:[01])$")
# Tensors with a dim of size D that are not the residual width: the attention inner width (== D unpruned).
INNER_D = re.compile(r"^block\.\d+\.attn\.(([qkv]_conv\.weight|[qkv]_bn\.\w+):0|proj_conv\.weight:1)$")


@dataclass
class Case:
    model: nn.Module
    x: torch.Tensor
    groups: list[Group]
    out: torch.Tensor


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def case(request: pytest.FixtureRequest) -> Case:
    name, kwargs, side = LAYOUTS[request.param]
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    calibrate_bn(model, x)
    rates = firing_rates(model, x)
    assert min(rates.values()) > 0, [n for n, r in rates.items() if r == 0]
    return Case(model=model, x=x, groups=weight_groups(model), out=run_from_reset(model, x))


def _features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the real-valued token means ``[T, B, D]`` entering ``head_lif``).

    Equivalences are checked on the features: the logits are sums of head weights over ``head_lif``
    spikes, which often do not change at all when a group is pruned.
    """
    box: list[torch.Tensor] = []
    hook = model.head_lif.register_forward_pre_hook(lambda mod, args: box.append(args[0].detach().clone()))
    try:
        out = run_from_reset(model, x)
    finally:
        hook.remove()
    return out, box[0]


def _zero_branches(model: nn.Module, paths: list[str]) -> nn.Module:
    """A copy whose branches ``paths`` add exactly zero (their last BN has weight 0, bias 0)."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for path in paths:
            bn = ref.get_submodule(f"{path}.proj_bn" if path.endswith("attn") else f"{path}.fc2_bn")
            bn.weight.zero_()
            bn.bias.zero_()
    return ref


def test_declared_groups(case: Case) -> None:
    got = [(g.name, g.kind, g.width) for g in case.groups]
    assert got == EXPECTED_GROUPS
    table = {g.name: g for g in case.groups}
    assert table["block.0.attn.qkv"].partitions == HEADS
    assert table["branches"].min_width == 0 and table["block"].min_width == 1
    attrs = {g.name: [(a.module, a.attr, a.per_unit) for a in g.attrs] for g in case.groups if g.attrs}
    assert attrs == {"embed": [("", "embed_dim", 1)], "block": [("", "depth", 1)],
                     **{f"block.{i}.attn.heads": [(f"block.{i}.attn", "num_heads", 1)] for i in range(DEPTH)},
                     **{f"block.{i}.mlp.hidden": [(f"block.{i}.mlp", "c_hidden", 1)] for i in range(DEPTH)}}


def test_full_plan_reproduces_the_model(case: Case) -> None:
    pruned = prune(case.model, full_plan(case.model))
    assert torch.equal(run_from_reset(pruned, case.x), case.out)
    assert pruned.state_dict().keys() == case.model.state_dict().keys()


def test_each_group_halved(case: Case) -> None:
    gen = torch.Generator().manual_seed(0)
    params = sum(p.numel() for p in case.model.parameters())
    base_feats = _features(case.model, case.x)[1]
    for g in case.groups:
        count = half_count(g)
        kept = pick_units(g, count, gen)
        pruned = prune(case.model, PruningPlan(model=case.model.hwsearch_config, keep={g.name: kept}))
        removed = [u for u in range(g.width) if u not in kept]
        if isinstance(g, ChannelGroup):
            shapes = channel_shapes(case.model, g, count)
            ref = zero_consumers(case.model, g, removed)
            for upd in g.attrs:
                target = pruned.get_submodule(upd.module) if upd.module else pruned
                assert getattr(target, upd.attr) == count * upd.per_unit, (g.name, upd)
        else:
            shapes = depth_shapes(case.model, g, kept)
            paths = [g.units[u] for u in removed] if g.kind == "branches" else [
                f"block.{u}.{br}" for u in removed for br in ("attn", "mlp")]
            ref = _zero_branches(case.model, paths)
        got = {k: tuple(t.shape) for k, t in pruned.state_dict().items()}
        assert got == shapes, g.name
        assert sum(p.numel() for p in pruned.parameters()) == param_count(case.model, shapes) < params, g.name
        check_sizes(pruned)
        out, feats = _features(pruned, case.x)
        assert out.shape == (case.x.shape[0], K), g.name
        ref_feats = _features(ref, case.x)[1]
        if g.name == "embed":
            ref_feats = ref_feats[..., list(kept)]
        else:  # pruning changed the function, so the equivalence below is not vacuous
            assert not torch.allclose(feats, base_feats), g.name
        torch.testing.assert_close(feats, ref_feats, rtol=1e-5, atol=1e-5, msg=lambda m: f"{g.name}: {m}")
        assert all(not blk.mlp.res for blk in pruned.block if blk.mlp is not None)


def test_heads_and_qkv_combine_into_a_valid_reshape(case: Case) -> None:
    """Heads {1, 3} and 5 channels per head: width 10 = 2 heads x 5, same as silencing the rest."""
    qkv = {g.name: g for g in case.groups}["block.1.attn.qkv"]
    d = D // HEADS
    per_head = [0, 2, 5, 6, 9]
    keep_qkv = tuple(h * d + c for h in range(HEADS) for c in per_head)
    plan = PruningPlan(model=case.model.hwsearch_config,
                       keep={"block.1.attn.heads": (1, 3), "block.1.attn.qkv": keep_qkv})
    pruned = prune(case.model, plan)
    attn = pruned.get_submodule("block.1.attn")
    assert attn.num_heads == 2 and attn.q_conv.out_channels == 10 and attn.talking_heads.weight.shape == (2, 2, 1)
    kept = {h * d + c for h in (1, 3) for c in per_head}
    ref = zero_consumers(case.model, qkv, [c for c in range(D) if c not in kept])
    torch.testing.assert_close(_features(pruned, case.x)[1], _features(ref, case.x)[1], rtol=1e-5, atol=1e-5)


def test_mlp_hidden_at_width_d_keeps_res_off(case: Case) -> None:
    g = {g.name: g for g in case.groups}["block.0.mlp.hidden"]
    kept = tuple(range(0, 4 * D, 4))
    pruned = prune(case.model, PruningPlan(model=case.model.hwsearch_config, keep={g.name: kept}))
    mlp = pruned.get_submodule("block.0.mlp")
    assert (mlp.c_hidden, mlp.fc1_conv.out_channels, mlp.res) == (D, D, False)
    ref = zero_consumers(case.model, g, [u for u in range(4 * D) if u not in kept])
    torch.testing.assert_close(_features(pruned, case.x)[1], _features(ref, case.x)[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_plan_over_all_groups(case: Case, seed: int) -> None:
    before = copy.deepcopy(case.model)
    pruned = prune(case.model, random_plan(case.model, case.groups, seed))
    assert_same_state(case.model, before)  # the input model is untouched
    assert torch.equal(run_from_reset(case.model, case.x), case.out)
    assert run_from_reset(pruned, case.x).shape == (case.x.shape[0], K)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in case.model.parameters())
    check_sizes(pruned)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_plan_round_trips(case: Case, seed: int, tmp_path) -> None:
    pruned = prune(case.model, random_plan(case.model, case.groups, seed))
    loaded = load_pruned(save_pruned(pruned, tmp_path / "pruned"))
    assert_same_state(loaded, pruned)
    assert torch.equal(run_from_reset(loaded, case.x), run_from_reset(pruned, case.x))


@pytest.mark.parametrize("keep", [
    {"branches": (0, 2, 3)},  # a middle branch: the tree depends on which one
    {"block": (1,), "block.0.mlp.hidden": 4 * D // 2},  # the kept block is not the one whose width is first
], ids=["middle-branch", "first-block"])
def test_round_trip_after_removing_a_leading_unit(case: Case, keep: dict[str, object], tmp_path) -> None:
    pruned = prune(case.model, PruningPlan(model=case.model.hwsearch_config, keep=keep))
    loaded = load_pruned(save_pruned(pruned, tmp_path / "pruned"))
    assert_same_state(loaded, pruned)


def test_every_channel_dim_is_in_exactly_one_group(case: Case) -> None:
    cover = channel_coverage(case.model, case.groups)
    for slot, names in cover.items():
        assert len(names) == (0 if UNCOVERED.match(slot) else 1), (slot, names)
    for g in case.groups:
        if g.kind == "heads":  # a head is a block of the same block's qkv channels (or the dead talking_heads)
            qkv = g.name.replace(".heads", ".qkv")
            for m in g.members:
                slot = f"{m.key}:{m.dim}"
                assert cover[slot] == ([] if m.module.endswith("talking_heads") else [qkv]), slot


def test_embed_group_holds_every_residual_width_tensor(case: Case) -> None:
    embed = {g.name: g for g in case.groups}["embed"]
    members = {f"{m.key}:{m.dim}" for m in embed.members}
    size_d = {f"{k}:{d}" for k, t in case.model.state_dict().items() for d in range(t.dim()) if t.shape[d] == D}
    assert members <= size_d
    assert sorted(size_d - members) == sorted(s for s in size_d if INNER_D.match(s))
    assert "head.weight:1" in members and "patch_embed.rpe_conv.weight:1" in members
