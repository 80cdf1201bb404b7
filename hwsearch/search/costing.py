"""The study's cost models, asked for one candidate's metrics through one interface.

A search names its cost models by registry name (``hwsearch costmodels``; the study's ``[search]
cost_models``, ``--cost-models``); every budget adds the model that provides its metric. Each
registered model says what it gives a search (``provides``: ``Result.costs`` keys) and how
(``needs_forward``), see :class:`costmodels.CostModel`:

* ``analytic`` (always on): parameters, parameter memory, dense MACs, spike memory, **predicted** from
  the plan, exactly, before any evaluation: the strategies plan on them;
* ``measured``: SOPs and the energy estimate, **measured** on the candidate's own pruned model (its
  firing rates over the eval batches, since pruning moves firing rates);
* ``latency``: the median time of one forward of ``latency_batch`` images, **measured** on the machine
  that evaluates the candidate (its CPU or GPU is recorded with the number).

Forward-needing models run only when a budget or the study asks for them, and only on candidates that
were measured on the whole eval split (``status ok``); the shared profile's single-group candidates are
not measured (a measured budget counts them infeasible).

>>> resolve_cost_models(["analytic"], budgets={"sops_g": 0.1})
('analytic', 'measured')
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

__all__ = ["METRICS", "Metric", "resolve_cost_models", "provider_of", "CandidateCosts", "metrics_of", "ALWAYS"]

log = logging.getLogger(__name__)

#: The cost model every search uses (its metrics are what strategies plan on).
ALWAYS = "analytic"


@dataclass(frozen=True, slots=True)
class Metric:
    """A cost a search can budget and report: its label, unit, budget flag and whether it is measured."""

    key: str
    label: str
    unit: str
    flag: str | None
    measured: bool


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("params", "parameters", "", None, False),
    Metric("param_mb", "parameter memory", "MB", "--budget-mb", False),
    Metric("macs_g", "dense MACs", "G / image", "--budget-macs", False),
    Metric("act_mb", "spike-activation memory", "MB", "--budget-act-mb", False),
    Metric("sops_g", "synaptic operations (SOPs)", "G / image", "--budget-sops", True),
    Metric("energy_mj", "energy estimate", "mJ / image", "--budget-energy-mj", True),
    Metric("latency_ms", "latency", "ms / forward", "--budget-latency-ms", True),
)}


def _registry() -> Any:
    from costmodels import COST_MODELS

    return COST_MODELS


def provider_of(metric: str) -> str:
    """The registered cost model that provides ``metric`` (built-ins first, in name order)."""
    reg = _registry()
    for name in reg.list():
        if metric in getattr(reg.get(name), "provides", ()):
            return str(name)
    raise ValueError(f"no registered cost model provides {metric!r}")


def resolve_cost_models(requested: Iterable[str] | None, *, budgets: Mapping[str, Any]) -> tuple[str, ...]:
    """The cost models a search asks: ``analytic`` first, then ``requested``, then each budget's provider.

    Unknown names raise :class:`~hwsearch.errors.UnknownNameError` with close-match suggestions.
    """
    reg = _registry()
    names = [ALWAYS]
    for name in requested or ():
        reg.get(name)  # an unknown name fails here, with close matches
        if name not in names:
            names.append(name)
    for key, limit in budgets.items():
        if limit is not None and key in METRICS and METRICS[key].measured:
            name = provider_of(key)
            if name not in names:
                names.append(name)
    log.info("candidates are costed with: %s", ", ".join(names))
    return tuple(names)


def metrics_of(cost: Any, keys: Sequence[str]) -> dict[str, float]:
    """The ``Result.costs`` values of ``keys`` read from a ``costmodels.Cost`` (missing ones left out)."""
    values = {"params": cost.params, "param_mb": cost.weight_mb, "macs_g": cost.gmacs, "act_mb": cost.act_mb,
              "sops_g": None if cost.sops is None else cost.sops / 1e9, "energy_mj": cost.energy_mj,
              "latency_ms": cost.latency_ms}
    return {k: float(values[k]) for k in keys if values.get(k) is not None}


class CandidateCosts:
    """Asks the forward-needing cost models of a search for one pruned model's metrics.

    Lifecycle: built once per evaluator (in each Ray worker too) from plain settings; :meth:`measure`
    any number of times. ``names``: registry names (see :func:`resolve_cost_models`); the analytic model
    is the evaluator's own compiled fast path and is not asked here.

    Args:
        names: the search's cost models.
        dtype: weight dtype of the counts next to a measurement.
        latency_batch: images per timed forward.
        device: where the evaluator runs candidates (latency is timed there; counts run on the CPU).
    """

    def __init__(self, *, names: Sequence[str], dtype: str = "fp32", latency_batch: int = 1,
                 device: str = "cpu") -> None:
        from costmodels import create_cost_model

        reg = _registry()
        self.names = tuple(names)
        self.device = device
        self.models: list[Any] = []
        for name in self.names:
            cls = reg.get(name)
            if not getattr(cls, "needs_forward", False):
                continue
            accepted = inspect.signature(cls).parameters
            params: dict[str, Any] = {k: v for k, v in (("dtype", dtype), ("device", device)) if k in accepted}
            if "latency_ms" in getattr(cls, "provides", ()) and "batch_size" in accepted:
                params["batch_size"] = latency_batch
            self.models.append(create_cost_model(name, **params))

    def __bool__(self) -> bool:
        return bool(self.models)

    def measure(self, model: nn.Module, batches: Iterable[Any]) -> tuple[dict[str, float], str]:
        """Each forward-needing model's metrics of ``model`` (firing rates over ``batches``) and where
        the latency was measured ('' when no model timed it)."""
        out: dict[str, float] = {}
        where = ""
        cpu_model: nn.Module | None = None
        for cm in self.models:
            target = model
            if "device" not in inspect.signature(type(cm)).parameters and _device_of(model) != "cpu":
                cpu_model = cpu_model or copy.deepcopy(model).cpu()  # counting runs on the CPU
                target = cpu_model
            cost = cm.measure(target, calibration=batches)
            out.update(metrics_of(cost, cm.provides))
            if cost.latency_ms is not None and cost.device:
                where = str(cost.device)
        return out, where


def _device_of(model: nn.Module) -> str:
    p = next(iter(model.parameters()), None)
    return "cpu" if p is None else p.device.type
