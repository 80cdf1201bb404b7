"""Prunable groups of QKFormer (search_spaces/_qkformer_groups.py), ImageNet and CIFAR layouts.

Every group is checked against the forward itself: removing units gives the same head input as the
unpruned model in which nothing reads those units any more (their consumer columns zeroed, or, for a
group without a consumer weight such as the token-attention q, their spikes silenced), and removing a
branch equals silencing its output LIF.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from hwsearch.pruning import (ChannelGroup, DepthGroup, Group, PruningPlan, full_plan, load_pruned, prune,
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

D, K = 64, 10
W = {1: D // 4, 2: D // 2, 3: D}
# layout -> (registered config, overrides, input side, heads per stage, blocks per stage)
LAYOUTS = {
    "imagenet": ("qkformer-10-384", dict(embed_dim=D, num_heads=4, depth=5, T=2, num_classes=K), 64, 4, (1, 2, 2)),
    "cifar": ("qkformer-cifar10-4-384", dict(embed_dim=D, depth=4, T=2, num_classes=K), 32, 8, (1, 1, 2)),
}
# Channel dims that no non-head group covers: image channels and classes.
UNCOVERED = re.compile(r"^(patch_embed1\.proj_conv\.weight:1|head\.(weight|bias):0)$")
# Tensors of stage width inside a stage that are not the residual width: inner widths equal to it unpruned.
INNER = (r"patch_embed[23]\.(proj3_conv\.weight:0|proj3_bn\.\w+:0|proj4_conv\.weight:1)"
         r"|stage\d\.\d+\.(tssa|attn|ssa)\.([qkv]_conv\.weight:0|[qkv]_bn\.\w+:0|proj_conv\.weight:1)")
INNER_IMAGENET = r"|patch_embed1\.(proj1_conv\.weight:0|proj1_bn\.\w+:0|proj2_conv\.weight:1)"


def expected_groups(layout: str) -> list[tuple[str, str, int]]:
    _, _, _, h, depths = LAYOUTS[layout]
    attn = "attn" if layout == "imagenet" else "ssa"
    mlp = {1: 4 * W[1], 2: 4 * W[2], 3: 4 * W[3]}
    out: list[tuple[str, str, int]] = [("patch_embed1.inner", "patch", W[1] // 2)]
    if layout == "imagenet":
        out.append(("patch_embed1.inner1", "patch", W[1]))
    for s in (1, 2, 3):
        if s > 1:
            out.append((f"patch_embed{s}.inner", "patch", W[s]))
        out.append((f"stage{s}", "stage", W[s]))
        for j in range(depths[s - 1]):
            b = f"stage{s}.{j}"
            if s < 3:
                out += [(f"{b}.tssa.heads", "heads", h), (f"{b}.tssa.q", "q", W[s]), (f"{b}.tssa.k", "k", W[s])]
            else:
                out += [(f"{b}.{attn}.heads", "heads", h), (f"{b}.{attn}.qk", "qk", W[s]), (f"{b}.{attn}.v", "v", W[s])]
            out.append((f"{b}.mlp.hidden", "mlp", mlp[s]))
    out.append(("branches", "branches", 2 * sum(depths)))
    out += [(f"stage{s}.blocks", "blocks", depths[s - 1]) for s in (1, 2, 3)]
    return out


@dataclass
class Case:
    layout: str
    model: nn.Module
    x: torch.Tensor
    groups: list[Group]
    out: torch.Tensor


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def case(request: pytest.FixtureRequest) -> Case:
    name, kwargs, side, _, _ = LAYOUTS[request.param]
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    calibrate_bn(model, x)
    rates = firing_rates(model, x)
    assert min(rates.values()) > 0, [n for n, r in rates.items() if r == 0]
    return Case(layout=request.param, model=model, x=x, groups=weight_groups(model), out=run_from_reset(model, x))


def _features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the head input ``[B, D]``: stage-3 token means averaged over T)."""
    box: list[torch.Tensor] = []
    hook = model.head.register_forward_pre_hook(lambda mod, args: box.append(args[0].detach().clone()))
    try:
        out = run_from_reset(model, x)
    finally:
        hook.remove()
    return out, box[0]


def _silence_branches(model: nn.Module, paths: list[str]) -> nn.Module:
    """A copy whose branches ``paths`` output no spikes (the BN before their output LIF gives -1e4)."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for path in paths:
            mod = ref.get_submodule(path)
            bn = mod.proj_bn if hasattr(mod, "proj_bn") else getattr(mod, f"{mod.names[1]}_bn")
            bn.weight.zero_()
            bn.bias.fill_(-1e4)
    return ref


def test_declared_groups(case: Case) -> None:
    assert [(g.name, g.kind, g.width) for g in case.groups] == expected_groups(case.layout)
    h = LAYOUTS[case.layout][3]
    for g in case.groups:
        if g.kind in ("q", "k", "qk", "v"):
            assert g.partitions == h, g.name
        if isinstance(g, DepthGroup):
            assert g.min_width == 0 and g.attrs == (), g.name
    attrs = {g.name: [(a.module, a.attr, a.per_unit) for a in g.attrs] for g in case.groups if g.attrs}
    expected = {"stage3": [("", "embed_dim", 1)]}
    for g in case.groups:
        if g.kind == "heads":
            expected[g.name] = [(g.name.removesuffix(".heads"), "num_heads", 1)]
        elif g.kind == "mlp":
            expected[g.name] = [(g.name.removesuffix(".hidden"), "c_hidden", 1)]
    assert attrs == expected


def test_full_plan_reproduces_the_model(case: Case) -> None:
    pruned = prune(case.model, full_plan(case.model))
    assert torch.equal(run_from_reset(pruned, case.x), case.out)
    assert pruned.state_dict().keys() == case.model.state_dict().keys()


def _block_paths(model: nn.Module, stage: str, units: list[int]) -> list[str]:
    blocks = model.get_submodule(stage)
    return [f"{stage}.{u}.{a}" for u in units for a in (getattr(blocks[u], "attn_name", "tssa"), "mlp")]


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
            paths = [g.units[u] for u in removed] if g.kind == "branches" else _block_paths(
                case.model, g.container, removed)
            ref = _silence_branches(case.model, paths)
        got = {k: tuple(t.shape) for k, t in pruned.state_dict().items()}
        assert got == shapes, g.name
        assert sum(p.numel() for p in pruned.parameters()) == param_count(case.model, shapes) < params, g.name
        check_sizes(pruned)
        out, feats = _features(pruned, case.x)
        assert out.shape == (case.x.shape[0], K), g.name
        ref_feats = _features(ref, case.x)[1]
        if g.name == "stage3":
            ref_feats = ref_feats[..., list(kept)]
        else:  # pruning changed the function, so the equivalence below is not vacuous
            assert not torch.allclose(feats, base_feats), g.name
        torch.testing.assert_close(feats, ref_feats, rtol=1e-5, atol=1e-5, msg=lambda m: f"{g.name}: {m}")


def _kept_per_head(width: int, heads: tuple[int, ...], per_head: list[int], h: int
                   ) -> tuple[tuple[int, ...], list[int]]:
    """(kept indices of a per-head group: ``per_head`` in each head; channels gone once only ``heads`` stay)."""
    d = width // h
    keep = tuple(j * d + c for j in range(h) for c in per_head)
    survivors = {j * d + c for j in heads for c in per_head}
    return keep, [c for c in range(width) if c not in survivors]


def test_token_heads_q_and_k_combine(case: Case) -> None:
    """Heads {0, 2}, 1 q and 3 k channels per head: even splits, ``*_head_widths`` stay None."""
    h = LAYOUTS[case.layout][3]
    b, w = "stage2.0.tssa", W[2]
    table = {g.name: g for g in case.groups}
    keep_q, removed_q = _kept_per_head(w, (0, 2), [1], h)
    keep_k, removed_k = _kept_per_head(w, (0, 2), [0, 2, 3], h)
    plan = PruningPlan(model=case.model.hwsearch_config,
                       keep={f"{b}.heads": (0, 2), f"{b}.q": keep_q, f"{b}.k": keep_k})
    pruned = prune(case.model, plan)
    attn = pruned.get_submodule(b)
    widths = (attn.num_heads, attn.q_conv.out_channels, attn.k_conv.out_channels, attn.proj_conv.in_channels)
    assert widths == (2, 2, 6, 6) and attn.q_head_widths is None and attn.k_head_widths is None
    ref = zero_consumers(zero_consumers(case.model, table[f"{b}.q"], removed_q), table[f"{b}.k"], removed_k)
    torch.testing.assert_close(_features(pruned, case.x)[1], _features(ref, case.x)[1], rtol=1e-5, atol=1e-5)


def test_ssa_heads_qk_and_v_combine(case: Case) -> None:
    h = LAYOUTS[case.layout][3]
    b = f"stage3.1.{'attn' if case.layout == 'imagenet' else 'ssa'}"
    table = {g.name: g for g in case.groups}
    d = W[3] // h
    keep_qk, removed_qk = _kept_per_head(W[3], (1, 2), list(range(0, d, 2)), h)
    keep_v, removed_v = _kept_per_head(W[3], (1, 2), list(range(1, d, 4)), h)
    plan = PruningPlan(model=case.model.hwsearch_config,
                       keep={f"{b}.heads": (1, 2), f"{b}.qk": keep_qk, f"{b}.v": keep_v})
    pruned = prune(case.model, plan)
    attn = pruned.get_submodule(b)
    assert (attn.num_heads, attn.q_conv.out_channels, attn.v_conv.out_channels) == (2, d, len(range(1, d, 4)) * 2)
    ref = zero_consumers(zero_consumers(case.model, table[f"{b}.qk"], removed_qk), table[f"{b}.v"], removed_v)
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
    {"branches": (0, 2, 3, 4, 5, 6, 7)},  # a middle branch: the tree depends on which one
    {"stage3.blocks": (1,), "stage3.0.mlp.hidden": 2 * D},  # the kept block is not the one whose width is first
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
        if g.kind == "heads":  # a head is a block of the same attention's q/k/v channels
            prefix = g.name.removesuffix("heads")
            for m in g.members:
                (name,) = cover[f"{m.key}:{m.dim}"]
                assert name.startswith(prefix) and name.rpartition(".")[2] in ("q", "k", "qk", "v"), (m, name)


@pytest.mark.parametrize("s", [1, 2, 3])
def test_stage_group_holds_every_residual_width_tensor(case: Case, s: int) -> None:
    stage = {g.name: g for g in case.groups}[f"stage{s}"]
    members = {f"{m.key}:{m.dim}" for m in stage.members}
    consumers = ({"head.weight:1"} if s == 3 else
                 {f"patch_embed{s + 1}.proj3_conv.weight:1", f"patch_embed{s + 1}.proj_res_conv.weight:1"})
    in_scope = {f"{k}:{d}" for k, t in case.model.state_dict().items() for d in range(t.dim())
                if t.shape[d] == W[s] and k.startswith((f"patch_embed{s}.", f"stage{s}."))} | consumers
    inner = re.compile(rf"^({INNER}{INNER_IMAGENET if case.layout == 'imagenet' else ''})$")
    assert consumers <= members <= in_scope
    assert sorted(in_scope - members) == sorted(x for x in in_scope if inner.match(x))
