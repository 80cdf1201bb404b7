"""Physical pruning: exact, replayable, top-k of the criterion, refuses bad plans."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsearch.pruning import (
    ChannelGroup,
    DepthGroup,
    PlanError,
    PruningPlan,
    create_criterion,
    full_plan,
    groups_of,
    load_pruned,
    prune,
    resolve_plan,
    save_pruned,
)
from hwsearch.testing import calibrate_bn
from search_spaces import create_model

LAYOUTS = {
    "cifar": ("spikformer-cifar10-4-256", dict(embed_dim=64, num_heads=4, depth=2), (4, 3, 32, 32)),
    "imagenet": ("spikformer-8-384", dict(embed_dim=64, num_heads=4, depth=2, num_classes=10), (2, 3, 64, 64)),
    "dvs": ("spikformer-cifar10dvs-2-256", dict(embed_dim=64, num_heads=4, depth=1, T=2), (2, 2, 2, 128, 128)),
}


@lru_cache(maxsize=None)
def _calibrated(layout: str) -> tuple[nn.Module, torch.Tensor]:
    name, kw, shape = LAYOUTS[layout]
    torch.manual_seed(0)
    model = create_model(name, **kw)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    calibrate_bn(model, x)
    return model, x


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_keep_everything_is_bit_identical(layout: str) -> None:
    model, x = _calibrated(layout)
    with torch.no_grad():
        ref = model(x)
        out = prune(model, full_plan(model))(x)
    assert torch.equal(out, ref)


def _plan_strategy(groups: list) -> st.SearchStrategy[dict[str, int]]:
    def counts(g):  # allowed kept counts of one group
        if isinstance(g, DepthGroup):
            return st.integers(g.min_width, g.width)
        return st.sampled_from(g.allowed_counts())
    return st.fixed_dictionaries({}, optional={g.name: counts(g) for g in groups})


_CIFAR_GROUPS = groups_of(_calibrated("cifar")[0])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keep=_plan_strategy(_CIFAR_GROUPS))
def test_random_plans_prune_exactly(keep: dict[str, int]) -> None:
    model, x = _calibrated("cifar")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = resolve_plan(model, PruningPlan(model=model.hwsearch_config, keep=keep))
    pruned = prune(model, plan)
    with torch.no_grad():
        assert pruned(x).shape == (x.shape[0], 10)
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # static attributes follow the weights
    for blk in pruned.block:
        if blk.attn is not None:
            assert blk.attn.q_linear.out_features % blk.attn.num_heads == 0
            assert blk.attn.proj_linear.in_features == blk.attn.v_linear.out_features
        if blk.mlp is not None:
            assert blk.mlp.c_hidden == blk.mlp.fc1_linear.out_features == blk.mlp.fc2_linear.in_features
    # replaying the JSON plan gives the same weights
    replay = prune(model, PruningPlan.from_json(plan.to_json()))
    a, b = pruned.state_dict(), replay.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("group_name", ["block.0.mlp.hidden", "block.1.attn.heads", "block.0.attn.qk",
                                        "block.1.attn.v", "embed", "patch_embed.c2"])
def test_parameter_count_drops_by_exactly_the_removed_slices(group_name: str) -> None:
    model, _ = _calibrated("cifar")
    g = {g.name: g for g in groups_of(model)}[group_name]
    assert isinstance(g, ChannelGroup)
    kept = g.allowed_counts()[len(g.allowed_counts()) // 2]
    pruned = prune(model, PruningPlan(model=model.hwsearch_config, keep={group_name: kept}))
    removed_units = g.width - kept
    params = {id(p) for p in model.parameters()}
    expected = 0
    for m in g.members:
        t = model.get_submodule(m.module).get_parameter(m.param) if id(getattr(model.get_submodule(m.module), m.param)) in params else None
        if t is not None:
            expected += removed_units * m.unit_size * t.numel() // t.shape[m.dim]
    # a tensor pruned on two dims by the same group (rpe_conv in the embed group) loses the overlap once
    overlap = 0
    if group_name == "embed":
        w = model.patch_embed.rpe_conv.weight
        overlap = removed_units * removed_units * w.shape[2] * w.shape[3]
    assert _count(model) - _count(pruned) == expected - overlap


@pytest.mark.parametrize("criterion", ["l2", "l1", "random"])
def test_kept_channels_are_the_top_k_of_the_criterion(criterion: str) -> None:
    model, _ = _calibrated("cifar")
    g = {g.name: g for g in groups_of(model)}["block.0.mlp.hidden"]
    scores = create_criterion(criterion, **({"seed": 3} if criterion == "random" else {})).scores(model, g)
    plan = resolve_plan(model, PruningPlan(model=model.hwsearch_config, keep={g.name: 100}, criterion=criterion, seed=3))
    kept = plan.keep[g.name]
    assert len(kept) == 100
    assert scores[list(kept)].min() >= scores[[i for i in range(g.width) if i not in kept]].max()
    pruned = prune(model, plan)
    idx = torch.tensor(kept)
    assert torch.equal(pruned.block[0].mlp.fc1_linear.weight, model.block[0].mlp.fc1_linear.weight[idx])
    assert torch.equal(pruned.block[0].mlp.fc2_linear.weight, model.block[0].mlp.fc2_linear.weight[:, idx])
    assert torch.equal(pruned.block[0].mlp.fc1_bn.running_var, model.block[0].mlp.fc1_bn.running_var[idx])


def test_l2_score_is_the_norm_over_all_members() -> None:
    model, _ = _calibrated("cifar")
    g = {g.name: g for g in groups_of(model)}["block.0.mlp.hidden"]
    mlp = model.block[0].mlp
    by_hand = (mlp.fc1_linear.weight.pow(2).sum(1) + mlp.fc1_linear.bias.pow(2) + mlp.fc1_bn.weight.pow(2)
               + mlp.fc1_bn.bias.pow(2) + mlp.fc2_linear.weight.pow(2).sum(0)).sqrt()
    assert torch.allclose(create_criterion("l2").scores(model, g), by_hand.detach(), rtol=1e-5)


def test_per_head_groups_keep_the_same_count_in_every_head() -> None:
    model, x = _calibrated("imagenet")
    plan = resolve_plan(model, PruningPlan(model=model.hwsearch_config, keep={"block.0.attn.qk": 8, "block.0.attn.heads": 3}))
    pruned = prune(model, plan)
    attn = pruned.block[0].attn
    assert attn.num_heads == 3 and attn.q_conv.out_channels == 6 and attn.k_conv.out_channels == 6
    with torch.no_grad():
        assert pruned(x).shape == (2, 10)


def test_taylor_criterion_uses_gradients() -> None:
    model, x = _calibrated("cifar")
    y = torch.arange(x.shape[0]) % 10
    g = {g.name: g for g in groups_of(model)}["block.1.mlp.hidden"]
    crit = create_criterion("taylor", batches=[(x, y)])
    s = crit.scores(model, g)
    assert s.shape == (g.width,) and s.sum() > 0 and not torch.equal(s, create_criterion("l2").scores(model, g))
    assert all(p.grad is None for p in model.parameters())


def test_removing_low_l2_channels_matters_less_than_high_l2() -> None:
    """The ranking matters, on real neurons: dropping the 10 % lowest-L2 MLP channels of every block
    changes the calibrated model's logits far less than dropping the 10 % highest."""
    model, x = _calibrated("cifar")
    groups = [g for g in groups_of(model) if isinstance(g, ChannelGroup) and g.kind == "mlp"]
    crit = create_criterion("l2")
    with torch.no_grad():
        ref = model(x)
        low, high = {}, {}
        for g in groups:
            order = torch.argsort(crit.scores(model, g))
            n = g.width // 10
            low[g.name] = tuple(sorted(order[n:].tolist()))
            high[g.name] = tuple(sorted(order[:-n].tolist()))
        d_low = (prune(model, PruningPlan(model=model.hwsearch_config, keep=low))(x) - ref).abs().mean()
        d_high = (prune(model, PruningPlan(model=model.hwsearch_config, keep=high))(x) - ref).abs().mean()
    assert d_low < 0.5 * d_high


@pytest.mark.parametrize(
    ("keep", "pattern"),
    [
        ({"block.0.mlp.hidden": 0}, r"keeps 0 of 256 channels in block.0.mlp.hidden \(min_width 1\)"),
        ({"block.0.attn.heads": 0}, r"keeps 0 of 4 heads in block.0.attn.heads"),
        ({"block.0.attn.qk": 6}, r"not a multiple of its 4 partitions"),
        ({"block.0.attn.qk": (0, 1, 2, 3, 16, 17, 18, 19)}, r"unequal numbers per head \[4, 4, 0, 0\]"),
        ({"block.0.mlp.hidden": 300}, r"more than it has"),
        ({"block.0.mlp.hiden": 10}, r"unknown group 'block.0.mlp.hiden'; did you mean 'block.0.mlp.hidden'"),
        ({"block": 0}, r"keeps 0 of 2 blocks in block"),
    ],
)
def test_bad_plans_are_refused_in_one_line(keep: dict, pattern: str) -> None:
    model, _ = _calibrated("cifar")
    with pytest.raises(PlanError, match=pattern) as e:
        prune(model, PruningPlan(model=model.hwsearch_config, keep=keep))
    assert "\n" not in str(e.value)


def test_save_and_load_pruned_round_trip(tmp_path) -> None:
    model, x = _calibrated("imagenet")
    plan = PruningPlan(model=model.hwsearch_config, keep={"embed": 40, "block.1.mlp.hidden": 64, "block.0.attn.v": 8,
                                                          "branches": (0, 1, 2), "patch_embed.c1": 5},
                       model_kwargs=model.hwsearch_kwargs)
    pruned = prune(model, plan)
    save_pruned(pruned, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "architecture.json").read_text())["params"] == _count(pruned)
    again = load_pruned(tmp_path / "out")
    a, b = pruned.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.block[1].mlp is None
    with torch.no_grad():
        assert torch.equal(again(x), pruned(x))


def test_register_groups_is_the_public_declaration_api() -> None:
    from hwsearch.pruning import register_groups
    from search_spaces._spikformer_groups import spikformer_groups

    with pytest.raises(ValueError, match="unknown group kind"):
        register_groups("somefamily", spikformer_groups, kind="heads")
    with pytest.raises(ValueError, match="spikformer"):  # one declaration per family and kind
        register_groups("spikformer", spikformer_groups)
