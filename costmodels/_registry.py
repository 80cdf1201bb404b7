"""The cost-model registry (``hwsearch costmodels`` lists it) and the protocol every cost model meets."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from hwsearch.registry import Registry
from search_spaces import ModelConfig

from costmodels._cost import Cost

__all__ = ["COST_MODELS", "CostModel", "Widths", "register_cost_model", "create_cost_model", "list_cost_models",
           "ParamsMixin"]

#: group name -> kept units (``PruningPlan.counts()``); depth groups may instead give kept unit indices.
Widths = Mapping[str, int | Sequence[int]]


@runtime_checkable
class CostModel(Protocol):
    """What a registered cost model offers.

    ``cost(config, widths)`` returns the :class:`~costmodels.Cost` of the configuration ``config``
    (registry name or :class:`~search_spaces.ModelConfig`, constructor overrides in ``model_kwargs``)
    pruned to ``widths``; groups not named keep every unit. Constructors are keyword-only and store
    their arguments unchanged (so a study spec can rebuild the same cost model).

    What a search asks of it (``hwsearch.search.costing``, one interface for every registered model):

    * ``provides``: the ``Result.costs`` keys it gives a search (``param_mb``, ``macs_g``, ``act_mb``,
      ``sops_g``, ``energy_mj``, ``latency_ms``, ...; units in the names);
    * ``needs_forward``: False when those numbers are predicted from the plan alone (``cost``); True when
      they are measured on the candidate's own pruned model: then the model also has
      ``measure(model, inputs=None, *, calibration=None) -> Cost`` (``calibration``: the eval batches a
      firing-rate count runs over).
    """

    name: str
    provides: tuple[str, ...]
    needs_forward: bool

    def cost(self, config: str | ModelConfig, widths: Widths | None = None, *,
             model_kwargs: Mapping[str, Any] | None = None) -> Cost: ...


class ParamsMixin:
    """``get_params()``: the constructor's keyword arguments as stored (rebuild with ``create_cost_model``)."""

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}


T = TypeVar("T")
COST_MODELS: Registry[Callable[..., Any]] = Registry("cost model", list_command="hwsearch costmodels")


def register_cost_model(name: str) -> Callable[[T], T]:
    """Class decorator: register under ``name`` (append-only; a duplicate raises) and set ``cls.name``."""

    def deco(cls: T) -> T:
        cls.name = name  # type: ignore[attr-defined]
        COST_MODELS.add(name, cls)  # type: ignore[arg-type]
        return cls

    return deco


def create_cost_model(name: str, **params: Any) -> CostModel:
    """Instantiate the cost model registered as ``name`` with keyword ``params``.

    >>> create_cost_model("analytic", dtype="fp16").dtype
    'fp16'
    """
    model: CostModel = COST_MODELS.get(name)(**params)
    return model


def list_cost_models(pattern: str | None = None, exclude: str | None = None) -> list[str]:
    """Registered cost-model names matching the fnmatch ``pattern``, naturally sorted."""
    return COST_MODELS.list(pattern, exclude)
