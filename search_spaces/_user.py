"""Configurations a user defines (in a study's ``[model_config]`` or recorded in a checkpoint).

A user configuration is a registered family and layout plus constructor arguments, under its own name:

.. code-block:: toml

    model = "my-spikformer"
    [model_config]
    family = "spikformer"       # a family of `hwsearch models` (plug-in families too)
    layout = "cifar"            # imagenet | cifar | dvs (default: cifar when the family has it)
    depth = 2
    embed_dim = 64
    num_heads = 4

Arguments not given come from the family's first registered configuration of that layout (or from
``base = "<registered name>"``). :func:`define_config` checks names, types and values and builds the
model once on the meta device, so a bad value is one line before any weights are touched;
:func:`ensure_config` registers the result, or checks that an already registered one is the same.
Its :meth:`~search_spaces.ModelConfig.to_dict` is what ``hwsearch train`` writes into checkpoints and
``save_pruned`` into ``architecture.json``, so a fresh process re-creates the configuration from the
file alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import torch

from hwsearch.errors import UserError
from search_spaces._registry import MODELS, ModelConfig, get_config, list_models, register_config

__all__ = ["ConfigError", "define_config", "ensure_config", "config_from_dict"]


class ConfigError(UserError):
    """A user-defined model configuration that is malformed or clashes with a registered one."""


def _families() -> dict[str, list[ModelConfig]]:
    out: dict[str, list[ModelConfig]] = {}
    for name in list_models():
        cfg = MODELS.get(name)
        if not cfg.user_defined:
            out.setdefault(cfg.family, []).append(cfg)
    return out


def _base(name: str, family: str | None, layout: str | None, base: str | None) -> ModelConfig:
    if base is not None:
        cfg = get_config(base)
        if family is not None and cfg.family != family:
            raise ConfigError(f"model_config {name!r}: base {base!r} is a {cfg.family} model, not {family!r}; "
                              f"drop `family` or pick a {family} base (hwsearch models)")
        if layout is not None and cfg.layout != layout:
            raise ConfigError(f"model_config {name!r}: base {base!r} has layout {cfg.layout!r}, not {layout!r}; "
                              "drop `layout` or pick another base")
        return cfg
    families = _families()
    if family is None:
        raise ConfigError(f"model_config {name!r} needs `family` (one of: {', '.join(sorted(families))}) "
                          "or `base` (a registered model name)")
    if family not in families:
        close = difflib.get_close_matches(family, list(families), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown model family {family!r} in model_config {name!r}{hint} "
                          f"(families: {', '.join(sorted(families))})")
    layouts = {c.layout: c for c in reversed(families[family])}  # the first registered of each layout wins
    layout = layout if layout is not None else ("cifar" if "cifar" in layouts else next(iter(layouts)))
    if layout not in layouts:
        raise ConfigError(f"family {family!r} has no layout {layout!r} (model_config {name!r}); "
                          f"use one of: {', '.join(sorted(layouts))}")
    return layouts[layout]


#: Arguments that take any positive number even where the family's default is a whole number.
_REAL_KEYS = frozenset({"mlp_ratio"})
#: Upper bounds that keep a typo (depth = 10000000) from building for minutes before failing.
_MAX_INT = {"depth": 1024, "T": 4096, "num_heads": 4096}


def _check_value(name: str, key: str, value: Any, default: Any) -> Any:
    where = f"model_config {name!r}: {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and key not in _REAL_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        if not 1 <= value <= _MAX_INT.get(key, 1 << 20):
            raise ConfigError(f"{where} must be between 1 and {_MAX_INT.get(key, 1 << 20)}, got {value}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value == value:
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not 0 < value <= 1 << 20:
            raise ConfigError(f"{where} must be positive (and at most {1 << 20}), got {value}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def define_config(name: str, *, family: str | None = None, layout: str | None = None, base: str | None = None,
                  description: str = "", **kwargs: Any) -> ModelConfig:
    """A new (unregistered) configuration ``name``: a family's layout with constructor ``kwargs`` changed.

    Raises:
        ConfigError: a bad name, unknown family / layout / argument (with close matches), a value of the
            wrong type or range, or arguments the family's constructor rejects (its reason, in full).

    >>> cfg = define_config("tiny", family="spikformer", depth=1, embed_dim=32, num_heads=2)
    >>> cfg.kwargs["depth"], cfg.kwargs["img_size"], cfg.input_shape
    (1, 32, (3, 32, 32))
    """
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise ConfigError(f"model name {name!r} must be a non-empty string without spaces")
    for key, value in (("family", family), ("layout", layout), ("base", base)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"model_config {name!r}: {key} must be a string, got {value!r}")
    src = _base(name, family, layout, base)
    merged = dict(src.kwargs)
    for key, value in kwargs.items():
        if key not in src.kwargs:
            close = difflib.get_close_matches(key, list(src.kwargs), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown argument {key!r} in model_config {name!r}{hint} "
                              f"({src.family} {src.layout} takes: {', '.join(src.kwargs)})")
        merged[key] = _check_value(name, key, value, src.kwargs[key])
    shape = _input_shape(src, merged)
    cfg = ModelConfig(name=name, family=src.family, layout=src.layout, builder=src.builder, kwargs=merged,
                      arch_names=src.arch_names, input_shape=shape, user_defined=True,
                      description=description or f"user-defined {src.family} ({src.layout} layout)")
    try:
        with torch.device("meta"):
            cfg.build()
    except Exception as e:  # the constructor's own check (e.g. embed_dim not divisible by num_heads)
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"model_config {name!r} cannot be built: {reason}; change the arguments") from None
    return cfg


def _input_shape(src: ModelConfig, kwargs: Mapping[str, Any]) -> tuple[int, ...]:
    if not src.input_shape or "img_size" not in kwargs or "in_channels" not in kwargs:
        return src.input_shape
    size, ch = int(kwargs["img_size"]), int(kwargs["in_channels"])
    if src.layout == "dvs":
        return (int(kwargs.get("T", src.input_shape[0])), ch, size, size)
    return (ch, size, size)


def config_from_dict(data: Mapping[str, Any], *, where: str = "") -> ModelConfig:
    """Rebuild a configuration from :meth:`ModelConfig.to_dict` output (validated like a study's)."""
    at = f" in {where}" if where else ""
    if not isinstance(data, Mapping) or not all(isinstance(data.get(k), str) for k in ("name", "family", "layout")):
        raise ConfigError(f"malformed model definition{at}: expected name, family, layout and kwargs")
    kwargs = data.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"malformed model definition{at}: kwargs must be a table")
    return define_config(data["name"], family=data["family"], layout=data["layout"], **dict(kwargs))


def ensure_config(cfg: ModelConfig | Mapping[str, Any], *, where: str = "") -> ModelConfig:
    """Register ``cfg`` (a config or its dict); if the name is registered, it must be the same model.

    Raises:
        ConfigError: the name belongs to a built-in configuration or to a different definition.
    """
    if not isinstance(cfg, ModelConfig):
        cfg = config_from_dict(cfg, where=where)
    if cfg.name in MODELS or cfg.name in list_models():
        have = MODELS.get(cfg.name)
        at = f" ({where})" if where else ""
        if not have.user_defined:
            raise ConfigError(f"model name {cfg.name!r}{at} is a built-in configuration; give your configuration "
                              "its own name (model = \"my-...\")")
        if (have.family, have.layout, dict(have.kwargs)) != (cfg.family, cfg.layout, dict(cfg.kwargs)):
            diff = sorted(k for k in set(have.kwargs) | set(cfg.kwargs) if have.kwargs.get(k) != cfg.kwargs.get(k))
            shown = ", ".join(f"{k} {have.kwargs.get(k)!r} vs {cfg.kwargs.get(k)!r}" for k in diff[:3])
            raise ConfigError(f"model {cfg.name!r}{at} is defined twice with different arguments ({shown or 'family/layout'}); "
                              "give one of them another name")
        return have
    return register_config(cfg)
