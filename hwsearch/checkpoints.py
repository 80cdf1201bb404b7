"""Load SViT checkpoints in every official format, strictly, with one-line errors on mismatch.

Accepted layouts (``svit-architectures.md`` §9): a bare state_dict; timm ``CheckpointSaver`` dicts
``{'state_dict', 'arch', ...}``; MAE / torchvision-style ``{'model', ...}``. ``module.`` (DDP) and
``_orig_mod.`` (torch.compile) prefixes are stripped. Files are read with ``weights_only=True``
(``argparse.Namespace`` in ``args`` is allow-listed). The model configuration comes from the caller, or
is inferred from the checkpoint's key set and shapes (``arch`` narrows the search to a family).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from hwsearch.errors import CheckpointError, load_error_reason

__all__ = [
    "Checkpoint",
    "LoadedModel",
    "read_checkpoint",
    "match_config",
    "load_model",
    "save_checkpoint",
    "file_sha256",
    "register_recorded_config",
]

log = logging.getLogger(__name__)

_PREFIXES = ("module.", "_orig_mod.")
#: Parameters the official forwards never use; a checkpoint may lack them (we synthesise init values).
_DEAD_SUFFIXES = (".norm1.weight", ".norm1.bias", ".norm2.weight", ".norm2.bias", "talking_heads.weight")
_DEAD_KEYS = ("pos_embed", "norm.weight", "norm.bias")


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """What a checkpoint file holds, normalised: a plain state_dict plus metadata."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    arch: str | None = None
    fmt: str = "bare"  # "bare" | "timm" | "model"
    sha256: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    #: the configuration the file was trained as (``ModelConfig.to_dict()``, written by ``hwsearch train``)
    config_def: dict[str, Any] | None = None


@dataclass(slots=True, kw_only=True)
class LoadedModel:
    """A model built from a registered configuration with a checkpoint loaded strictly."""

    model: nn.Module
    config: str
    checkpoint: Checkpoint


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _torch_load(path: Path) -> Any:
    import warnings

    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # the refusal below says it all
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to unpickle means the file is not a readable checkpoint
        raise CheckpointError(
            f"cannot read checkpoint {path}: {load_error_reason(e)}; expected a PyTorch .pth/.pt file saved with torch.save "
            "(tensors and plain data only: files that need code to unpickle are refused)"
        ) from None


def _strip_prefixes(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            continue
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p) :], True
        out[key] = value
    return out


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file into a normalised :class:`Checkpoint` (no model is built)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; check the path (or the study's `checkpoint` entry)")
    obj = _torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict; save model.state_dict() instead"
        )
    arch = obj.get("arch") if isinstance(obj.get("arch"), str) else None
    if isinstance(obj.get("state_dict"), Mapping):
        raw, fmt = obj["state_dict"], "timm"
    elif isinstance(obj.get("model"), Mapping):
        raw, fmt = obj["model"], "model"
    else:
        raw, fmt = obj, "bare"
    sd = _strip_prefixes(raw)
    if not sd:
        raise CheckpointError(
            f"checkpoint {path} holds no tensors (keys: {', '.join(list(map(str, obj))[:5])}); "
            "expected a state_dict or a dict with 'state_dict' or 'model'"
        )
    meta = {k: v for k, v in obj.items() if k not in ("state_dict", "model", "optimizer") and not isinstance(v, Mapping)}
    definition = obj.get("hwsearch_model") if isinstance(obj.get("hwsearch_model"), Mapping) else None
    return Checkpoint(path=path, state_dict=sd, arch=arch, fmt=fmt, sha256=file_sha256(path), meta=meta,
                      config_def=dict(definition) if definition is not None else None)


def register_recorded_config(ckpt: Checkpoint) -> str | None:
    """Register the configuration ``ckpt`` records (user-defined ones only); its name, or None.

    Raises:
        CheckpointError: the record is malformed, or its name is registered with other arguments.
    """
    if ckpt.config_def is None:
        return None
    from search_spaces import MODELS, ConfigError, ensure_config

    name = ckpt.config_def.get("name")
    if isinstance(name, str) and name in MODELS and not MODELS.get(name).user_defined:
        return name  # a built-in configuration: nothing to register
    try:
        return ensure_config(ckpt.config_def, where=f"checkpoint {ckpt.path}").name
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


@lru_cache(maxsize=None)
def _expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the registered configuration, from a model built on the meta device."""
    from search_spaces import get_config

    with torch.device("meta"):
        model = get_config(name).build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _is_dead(key: str) -> bool:
    return key in _DEAD_KEYS or key.endswith(_DEAD_SUFFIXES)


@dataclass(frozen=True, slots=True)
class _Diff:
    missing: list[str]
    unexpected: list[str]
    mis_shaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    @property
    def score(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mis_shaped)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing {', '.join(self.missing[:2])}" + (f" (+{len(self.missing) - 2} more)" if len(self.missing) > 2 else ""))
        if self.unexpected:
            parts.append(f"unexpected {', '.join(self.unexpected[:2])}" + (f" (+{len(self.unexpected) - 2} more)" if len(self.unexpected) > 2 else ""))
        if self.mis_shaped:
            k, got, want = self.mis_shaped[0]
            more = f" (+{len(self.mis_shaped) - 1} more)" if len(self.mis_shaped) > 1 else ""
            parts.append(f"{k} is {list(got)}, expected {list(want)}{more}")
        return "; ".join(parts)


def _diff(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> _Diff:
    missing = [k for k in expected if k not in sd and not _is_dead(k)]
    unexpected = [k for k in sd if k not in expected]
    mis = [(k, tuple(sd[k].shape), s) for k, s in expected.items() if k in sd and tuple(sd[k].shape) != s]
    return _Diff(missing, unexpected, mis)


def _candidates(arch: str | None) -> list[str]:
    from search_spaces import MODELS, list_models

    # Built-in configurations first: a user's own one is chosen by name or by the checkpoint's record.
    names = sorted(list_models(), key=lambda n: MODELS.get(n).user_defined)
    if arch:
        fam = [n for n in names if arch in MODELS.get(n).arch_names]
        if fam:
            return fam
    return names


def match_config(ckpt: Checkpoint, model: str | None = None) -> str:
    """The registered configuration whose state_dict keys and shapes ``ckpt`` matches.

    With ``model`` given, checks that one and raises :class:`CheckpointError` naming the first
    missing / unexpected / mis-shaped keys and the best-matching registered configuration.
    """
    sd = ckpt.state_dict
    recorded = register_recorded_config(ckpt)
    if model is not None:
        from search_spaces import get_config

        get_config(model)  # unknown name -> UnknownNameError with suggestions
        d = _diff(sd, _expected_shapes(model))
        if d.ok:
            return model
        if recorded is not None and recorded != model and _diff(sd, _expected_shapes(recorded)).ok:
            hint = f"; the file was trained as '{recorded}': set model = \"{recorded}\" in the study"
        else:
            best, best_d = _best_match(sd, _candidates(None))
            hint = (f"; it matches '{best}': set model = \"{best}\" in the study" if best and best != model and best_d.ok
                    else "; if it is your own configuration, define it under [model_config] in the study "
                         "(family and arguments such as depth, embed_dim, num_heads)")
        raise CheckpointError(f"checkpoint {ckpt.path} does not match '{model}': {d.describe()}{hint}")
    if recorded is not None and _diff(sd, _expected_shapes(recorded)).ok:
        return recorded
    names = _candidates(ckpt.arch)
    best, d = _best_match(sd, names)
    if best is not None and d.ok:
        return best
    best_all, d_all = _best_match(sd, _candidates(None))
    raise CheckpointError(
        f"checkpoint {ckpt.path} matches no registered model; closest is '{best_all}': {d_all.describe()} "
        "(name a model from `hwsearch models`, or define your own under [model_config] in the study)"
    )


def _best_match(sd: Mapping[str, torch.Tensor], names: list[str]) -> tuple[str | None, _Diff]:
    best: tuple[int, str, _Diff] | None = None
    for name in names:
        d = _diff(sd, _expected_shapes(name))
        if best is None or d.score < best[0]:
            best = (d.score, name, d)
        if d.ok:
            break
    if best is None:
        return None, _Diff([], [], [])
    return best[1], best[2]


def load_model(path: str | Path, model: str | None = None, **overrides: Any) -> LoadedModel:
    """Read ``path``, pick (or check) the configuration, build it and load the weights strictly.

    Dead parameters (Spikformer's unused LayerNorms, SDT's ``talking_heads``, DVS ``pos_embed``/``norm``)
    missing from the file are filled with their init values and logged. Neuron state is reset and the
    reset cache invalidated, so the returned model is ready for ``functional.reset_net`` protocols.
    """
    ckpt = read_checkpoint(path)
    name = match_config(ckpt, model)
    from search_spaces import get_config

    net = get_config(name).build(**overrides)
    sd = dict(ckpt.state_dict)
    own = net.state_dict()
    synthesised = [k for k in own if k not in sd and _is_dead(k)]
    for k in synthesised:
        sd[k] = own[k]
    if synthesised:
        log.info("checkpoint %s lacks %d unused parameters; filled with init values", path, len(synthesised))
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # overrides (e.g. num_classes) can still change shapes
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {path} does not fit '{name}' with overrides {overrides}: {' '.join(' '.join(first[1:2]).split())}"
        ) from None
    net.eval()
    functional.invalidate_reset_cache(net)
    functional.reset_net(net)
    return LoadedModel(model=net, config=name, checkpoint=ckpt)


def save_checkpoint(
    model: nn.Module, path: str | Path, *, arch: str, epoch: int = 0, metric: float | None = None, **extra: Any
) -> Path:
    """Save ``model`` in timm's CheckpointSaver layout (``{'state_dict', 'arch', 'version': 2, ...}``).

    Written atomically (temp file then ``os.replace``). ``extra`` values must be weights_only-safe
    (numbers, strings, lists, dicts of those).
    """
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"epoch": epoch, "arch": arch, "version": 2, "state_dict": model.state_dict()}
    if metric is not None:
        payload["metric"] = metric
    payload.update(extra)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path
