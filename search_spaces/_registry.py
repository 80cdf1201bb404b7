"""The model registry: every SViT configuration hwsearch can build, by name (like timm's)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from hwsearch.registry import Registry

__all__ = ["ModelConfig", "MODELS", "register_config", "create_model", "list_models", "get_config",
           "config_name", "config_kwargs", "ENTRY_POINT_GROUP", "load_plugins"]

log = logging.getLogger(__name__)

#: Entry-point group through which installed packages add model families (see :func:`load_plugins`).
ENTRY_POINT_GROUP = "hwsearch.models"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """A registered model configuration.

    Attributes:
        name: registry key, e.g. ``"spikformer-8-384"``.
        family: ``"spikformer"``, ``"sdt"`` or ``"qkformer"``.
        layout: which official file the module tree follows: ``"imagenet"``, ``"cifar"`` or ``"dvs"``.
        builder: the model class (or factory) called with ``kwargs``.
        kwargs: constructor keyword arguments of this configuration.
        official_params: ``sum(p.numel())`` the official code gives for it (None for hwsearch's own
            configurations such as the demo model).
        arch_names: values of a timm checkpoint's ``'arch'`` field that name this family and layout.
        input_shape: shape of one input sample (without batch), e.g. ``(3, 224, 224)``; DVS layouts take
            ``(T, 2, 128, 128)``.
        description: one line for ``hwsearch models``.
        user_defined: True for configurations defined by a study or a checkpoint rather than by code
            (see :mod:`search_spaces._user`); their :meth:`to_dict` travels with checkpoints and plans.
    """

    name: str
    family: str
    layout: str
    builder: Callable[..., nn.Module]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    official_params: int | None = None
    arch_names: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = ()
    description: str = ""
    user_defined: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON- and ``weights_only``-safe definition: enough to re-create this configuration."""
        return {"schema": 1, "name": self.name, "family": self.family, "layout": self.layout,
                "kwargs": {k: v for k, v in self.kwargs.items()}}

    def build(self, **overrides: Any) -> nn.Module:
        """Construct the model; ``overrides`` set to None are ignored (as in timm's create_model)."""
        kwargs = dict(self.kwargs)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        model = self.builder(**kwargs)
        model.hwsearch_config = self.name  # type: ignore[assignment]
        model.hwsearch_kwargs = dict(kwargs)  # type: ignore[assignment]
        return model


MODELS: Registry[ModelConfig] = Registry("model", list_command="hwsearch models")


def register_config(config: ModelConfig) -> ModelConfig:
    """Add ``config`` to the registry (append-only: a duplicate name raises)."""
    return MODELS.add(config.name, config)


def get_config(name: str) -> ModelConfig:
    """The registered configuration ``name`` (unknown names raise with close matches).

    A name not registered yet first loads the installed plug-ins (:func:`load_plugins`).
    """
    if name not in MODELS:
        load_plugins()
    return MODELS.get(name)


def config_name(model: nn.Module) -> str:
    """The registry name a built model carries (``model.hwsearch_config``, set by :meth:`ModelConfig.build`).

    ``nn.Module.__getattr__`` types the attribute as ``Tensor | Module``; this reads it as the ``str`` it
    is. A model without it raises ``AttributeError`` (as reading the attribute does), one whose value is
    not a string raises ``TypeError``.
    """
    name = getattr(model, "hwsearch_config")
    if not isinstance(name, str):
        raise TypeError(f"{type(model).__name__}.hwsearch_config is a {type(name).__name__}, expected str")
    return name


def config_kwargs(model: nn.Module) -> Mapping[str, Any]:
    """The constructor keyword arguments a built model carries (``model.hwsearch_kwargs``), read as the
    mapping it is (see :func:`config_name`)."""
    kwargs = getattr(model, "hwsearch_kwargs")
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"{type(model).__name__}.hwsearch_kwargs is a {type(kwargs).__name__}, expected a mapping")
    return kwargs


def list_models(pattern: str | None = None, exclude: str | None = None) -> list[str]:
    """Registered model names matching the fnmatch ``pattern``, naturally sorted (plug-ins included)."""
    load_plugins()
    return MODELS.list(pattern, exclude)


_loaded_plugins: set[str] = set()


def load_plugins() -> list[str]:
    """Load every installed ``hwsearch.models`` entry point once; returns the names loaded by this call.

    A package adds a model family by declaring, in its ``pyproject.toml``::

        [project.entry-points."hwsearch.models"]
        myformer = "myformer.hwsearch_plugin"      # a module, or a module:function called with no args

    Loading the module (or calling the function) must register the family's configurations with
    :func:`register_config` and its prunable groups with
    ``hwsearch.pruning.register_groups(family, declare_fn)``; for the analytic cost model it may
    add ``costmodels.FAMILY_BUILDERS[family]``. A plug-in that fails to load is logged and skipped; its
    names then stay unknown (the unknown-name error still lists the close matches).
    """
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _loaded_plugins:
            continue
        _loaded_plugins.add(ep.name)
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as e:  # a broken plug-in must not break the built-in families
            log.warning("hwsearch plug-in %r (%s) failed to load: %s", ep.name, ep.value, e)
            continue
        loaded.append(ep.name)
    return loaded


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` with random weights; ``overrides`` change constructor args.

    >>> model = create_model("spikformer-cifar10-4-384", num_classes=100)
    """
    return get_config(name).build(**overrides)
