"""The model-family contract, parametrised over the registry: every registered layout of every family
loads strictly, declares consistent prunable groups, is reproduced exactly by a keep-everything plan,
prunes to a smaller dense model that saves and loads, and runs its fast inference path bit-identically.

A new family (or layout) fails ``test_every_registered_layout_has_a_tiny_instance`` until it adds a tiny
instance to ``TINY_LAYOUTS`` in ``hwsearch/testing/families.py``; then it must pass every test here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from hwsearch.pruning import ChannelGroup, PruningPlan, full_plan, groups_of, load_pruned, prune, save_pruned
from hwsearch.testing import calibrate_bn, firing_rates
from hwsearch.testing.families import TINY_LAYOUTS
from hwsearch.testing.groups import (
    assert_same_state,
    channel_coverage,
    channel_shapes,
    check_sizes,
    half_count,
    param_count,
    random_plan,
    run_from_reset,
    weight_groups,
)
from search_spaces import MODELS, create_model, reference_lif

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TINY_LAYOUTS
TINY_KWARGS = {name: overrides for name, overrides, _ in TINY.values()}


def _registered_layouts() -> set[tuple[str, str]]:
    return {(cfg.family, cfg.layout) for _, cfg in MODELS.items()}


def test_every_registered_layout_has_a_tiny_instance() -> None:
    assert _registered_layouts() <= TINY.keys(), sorted(_registered_layouts() - TINY.keys())


@pytest.fixture(scope="module", params=sorted(TINY), ids=lambda k: "-".join(k))
def tiny(request: pytest.FixtureRequest) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A calibrated tiny model (every LIF fires), its input and its logits."""
    name, overrides, shape = TINY[request.param]
    assert (MODELS.get(name).family, MODELS.get(name).layout) == request.param
    torch.manual_seed(0)
    model = create_model(name, **overrides)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(shape, generator=g) < 0.3).float() if len(shape) == 5 else torch.rand(shape, generator=g)
    calibrate_bn(model, x)
    assert min(firing_rates(model, x).values()) > 0.0
    return model, x, run_from_reset(model, x)


def test_loads_strictly_and_reproduces(tiny: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, out = tiny
    fresh = create_model(model.hwsearch_config, **{k: v for k, v in TINY_KWARGS[model.hwsearch_config].items()})
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(run_from_reset(fresh.eval(), x), out)


def test_groups_are_consistent(tiny: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, _, _ = tiny
    groups = groups_of(model)
    assert any(isinstance(g, ChannelGroup) for g in groups)
    assert len({g.name for g in groups}) == len(groups)
    for slot, names in channel_coverage(model, groups).items():  # members span their tensors exactly
        assert len(names) <= 1, (slot, names)


def test_keep_everything_is_the_identity(tiny: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, out = tiny
    pruned = prune(model, full_plan(model))
    assert pruned.state_dict().keys() == model.state_dict().keys()
    assert torch.equal(run_from_reset(pruned, x), out)


def test_each_channel_group_halved_has_the_expected_parameters(
        tiny: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, out = tiny
    for g in groups_of(model):
        if not isinstance(g, ChannelGroup) or g.kind == "heads":
            continue
        kept = half_count(g)
        pruned = prune(model, PruningPlan(model=model.hwsearch_config, keep={g.name: kept}))
        assert sum(p.numel() for p in pruned.parameters()) == param_count(model, channel_shapes(model, g, kept)), g.name
        check_sizes(pruned)
        assert run_from_reset(pruned, x).shape == out.shape, g.name


@pytest.mark.parametrize("seed", [0, 1])
def test_random_plan_prunes_saves_and_loads(tiny: tuple[nn.Module, torch.Tensor, torch.Tensor], seed: int,
                                            tmp_path) -> None:
    model, x, out = tiny
    pruned = prune(model, random_plan(model, weight_groups(model), seed))
    check_sizes(pruned)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert torch.equal(run_from_reset(model, x), out)  # the source is untouched
    loaded = load_pruned(save_pruned(pruned, tmp_path / "pruned"))
    assert_same_state(loaded, pruned)
    assert torch.equal(run_from_reset(loaded, x), run_from_reset(pruned, x))


def test_fast_inference_path_is_bit_identical(tiny: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, out = tiny
    with reference_lif():
        assert torch.equal(run_from_reset(model, x), out)
