"""The importance-criterion contract, parametrised over the registry (``hwsearch criteria``).

Every registered criterion scores every channel group of a calibrated tiny model with one finite
float per unit, the same scores twice for the same model, leaves the model unchanged, and its top-k
units prune to a working model. A new criterion passes this suite or says here why it needs inputs.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from hwsearch.pruning import CRITERIA, ChannelGroup, PruningPlan, create_criterion, groups_of, prune, topk_units
from hwsearch.testing import calibrate_bn
from hwsearch.testing.groups import assert_same_state, half_count, run_from_reset
from search_spaces import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("spikformer-cifar10-4-384", embed_dim=64, num_heads=4, depth=1, T=2, num_classes=10)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    calibrate_bn(model, x)
    return model, x, torch.tensor([0, 1, 2, 3])


def _criterion(name: str, x: torch.Tensor, y: torch.Tensor):  # noqa: ANN202
    """The criterion ``name``, given calibration batches when its constructor takes them (taylor)."""
    import inspect

    params = inspect.signature(CRITERIA.get(name)).parameters
    return create_criterion(name, **({"batches": [(x, y)]} if "batches" in params else {}))


@pytest.mark.parametrize("name", CRITERIA.list())
def test_criterion_scores_every_group(name: str, tiny: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, y = tiny
    before = copy.deepcopy(model)
    groups = [g for g in groups_of(model) if isinstance(g, ChannelGroup)]
    runs = []
    for _ in range(2):
        crit = _criterion(name, x, y)
        crit.prepare(model)
        runs.append({g.name: crit.scores(model, g) for g in groups})
    assert_same_state(model, before)  # scoring changes nothing (taylor's gradients included)
    for g in groups:
        s = runs[0][g.name]
        assert s.shape == (g.width,) and s.dtype.is_floating_point and torch.isfinite(s).all(), (name, g.name)
        assert torch.equal(s, runs[1][g.name]), (name, g.name)  # deterministic for one model
    keep = {g.name: topk_units(runs[0][g.name], half_count(g), g.partitions) for g in groups}
    pruned = prune(model, PruningPlan(model=model.hwsearch_config, keep=keep))
    assert run_from_reset(pruned, x).shape == (x.shape[0], 10)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
