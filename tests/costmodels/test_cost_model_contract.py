"""The cost-model contract, parametrised over the registry (``hwsearch costmodels``).

Every registered cost model: rebuilds from its own ``get_params()``, declares what it gives a search
(``provides``: known ``Result.costs`` keys; ``needs_forward``), and prices a pruned tiny model exactly:
``cost(config, widths)`` (and, for forward-needing models, ``measure(pruned)``) reports the pruned
model's own parameter count, and every metric it provides. Exactness of MACs and spike memory over
random plans of every family is tested in ``test_analytic.py``; SOPs in ``test_measured.py``.
"""

from __future__ import annotations

import pytest
import torch

from costmodels import COST_MODELS, create_cost_model, plan_widths
from hwsearch.search.costing import METRICS, metrics_of
from hwsearch.pruning import Group, PruningPlan, groups_of, prune, resolve_plan
from hwsearch.testing import calibrate_bn
from hwsearch.testing.groups import random_plan, weight_groups
from search_spaces import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = "spikformer-cifar10-4-384"
KWARGS = dict(embed_dim=64, num_heads=4, depth=2, T=2, num_classes=10)


@pytest.fixture(scope="module")
def pruned() -> tuple[torch.nn.Module, PruningPlan, torch.Tensor, list[Group]]:
    torch.manual_seed(0)
    model = create_model(CONFIG, **KWARGS)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    calibrate_bn(model, x)
    groups = groups_of(model)
    plan = resolve_plan(model, random_plan(model, weight_groups(model), seed=3))
    return prune(model, plan), plan, x, groups


@pytest.mark.parametrize("name", COST_MODELS.list())
def test_cost_model_contract(name: str, pruned: tuple[torch.nn.Module, PruningPlan, torch.Tensor, list[Group]]) -> None:
    pruned_model, plan, x, groups = pruned
    cm = create_cost_model(name)
    assert cm.name == name
    again = create_cost_model(name, **cm.get_params())  # type: ignore[attr-defined]
    assert again.get_params() == cm.get_params()  # type: ignore[attr-defined]
    assert cm.provides and set(cm.provides) <= METRICS.keys(), cm.provides
    assert isinstance(cm.needs_forward, bool)
    params = sum(p.numel() for p in pruned_model.parameters())
    cost = cm.cost(CONFIG, plan_widths(groups, plan), model_kwargs=KWARGS)
    assert cost.params == params, name
    if cm.needs_forward:
        measured = cm.measure(pruned_model, calibration=[(x, torch.zeros(4, dtype=torch.long))])  # type: ignore[attr-defined]
        assert measured.params == params, name
        got = metrics_of(measured, cm.provides)
        assert set(got) == set(cm.provides) and all(v > 0 for v in got.values()), (name, got)
    else:
        assert set(metrics_of(cost, cm.provides)) == set(cm.provides), name
