"""The model registry: every SViT configuration hwsearch can build, by name (like timm's)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from hwsearch.registry import Registry

__all__ = ["ModelConfig", "MODELS", "register_config", "create_model", "list_models", "get_config"]


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
    """The registered configuration ``name`` (unknown names raise with close matches)."""
    return MODELS.get(name)


def list_models(pattern: str | None = None, exclude: str | None = None) -> list[str]:
    """Registered model names matching the fnmatch ``pattern``, naturally sorted."""
    return MODELS.list(pattern, exclude)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` with random weights; ``overrides`` change constructor args.

    >>> model = create_model("spikformer-cifar10-4-384", num_classes=100)
    """
    return get_config(name).build(**overrides)
