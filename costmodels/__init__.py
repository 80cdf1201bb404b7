"""Cost models for pruned SViTs: parameters, weight memory, dense MACs, spike memory, SOPs, energy, latency.

Three registered models (``hwsearch costmodels`` lists them, ``create_cost_model(name, **params)``
builds one):

* ``analytic`` (:class:`AnalyticCostModel`): closed forms from a configuration and kept widths, no
  model built; exact (equals the physically pruned model) and fast (one compiled structure per
  configuration; :meth:`CompiledCost.batch` evaluates numpy batches of plans).
* ``measured`` (:class:`MeasuredCostModel`): counts on a real ``nn.Module``: ``sum(p.numel())``,
  fvcore dense MACs with matmul handles, spikingjelly monitors for spikes and firing rates → SOPs.
* ``latency`` (:class:`LatencyCostModel`): measured wall-clock latency of the pruned model.

Every number follows ``cost-conventions.md``; :class:`Cost` documents the conventions and carries them
in ``Cost.conventions``. Energy numbers are estimates and always come with :data:`ENERGY_CAVEAT`.

>>> from costmodels import create_cost_model
>>> cost = create_cost_model("analytic").cost("spikformer-8-512", {"block.0.mlp.hidden": 1024})
>>> cost.params, round(cost.weight_mb, 2)
(28654120, 114.62)
"""

from __future__ import annotations

import importlib
from typing import Any

# The implementations (and torch) load on first use, so the CLI parses its arguments without them.
_MODULES = ("_cost", "_registry", "_spec", "_families", "_analytic", "_measured", "_latency")

__all__ = [
    "AnalyticCostModel", "COST_MODELS", "CompiledCost", "Cost", "CostModel", "DTYPE_BITS", "ENERGY_CAVEAT",
    "E_AC_PJ", "E_MAC_PJ", "FAMILY_BUILDERS", "LatencyCostModel", "LayerCost", "MB", "MeasuredCostModel", "Widths", "analytic_cost",
    "build_pruned", "conventions_for", "count_macs", "create_cost_model", "energy_mj", "example_input",
    "list_cost_models", "plan_widths", "register_cost_model", "spike_input", "widths_of_plan",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'costmodels' has no attribute {name!r}")
    for mod in _MODULES:  # all of them: importing the implementations registers them
        module = importlib.import_module(f"costmodels.{mod}")
        globals().update({k: getattr(module, k) for k in __all__ if hasattr(module, k)})
    return globals()[name]
