"""Study specs: plain TOML data naming a model, its checkpoint, the data and the constraints.

A study file is read with :mod:`tomllib`; relative paths are resolved against the file's folder, and
``~`` / ``$VARS`` are expanded. Unknown keys are errors (a typo must not be silently ignored).

.. code-block:: toml

    name = "demo"
    model = "spikformer-digits-2-64"          # registry name (hwsearch models), or your own name with
    checkpoint = "checkpoints/spikformer-digits-2-64.pth"   # a [model_config] table defining it
    [data]
    dataset = "digits"                         # digits | imagefolder | npz | events
    eval_split = "val"                         # what searches evaluate on
    test_split = "test"                        # the final report
    [constraints]
    param_mb = 0.4                             # parameter memory, MB = 1e6 bytes, at `dtype`
    max_acc_drop = 3.0                         # percentage points of top-1
    # also macs_g, act_mb (analytic) and sops_g, energy_mj, latency_ms + latency_batch (measured)
    [search]
    strategy = "prioritized"                   # the command line overrides every key
    cost_models = ["analytic", "latency"]      # hwsearch costmodels; a budget adds its own
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsearch.errors import StudyError
from hwsearch.search.results import Constraints

__all__ = ["Study", "DataSpec", "Constraints", "TrainSpec", "SearchSpec", "PRIORS", "load_study", "default_study_path"]

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 0.5}


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSpec:
    """Where the images come from and how they are split.

    Attributes:
        dataset: ``digits`` (bundled), ``imagefolder`` (ROOT/<class>/<image>), ``npz`` (arrays ``x``/``y``)
            or ``events`` (DVS frames ``[N,T,2,H,W]`` in an npz).
        splits: split name -> folder or file, for the datasets that are not bundled.
        transform: eval transform for image folders: ``imagenet``, ``cifar10``, ``cifar100``, ``none``
            (no resize, crop or normalisation) or ``custom`` (the ``resize``, ``crop``, ``mean`` and
            ``std`` keys below). None: ``imagenet`` for a 224 px model, else ``none`` with a warning.
        resize: ``custom`` transform: shorter side in pixels after resizing (None: no resize).
        crop: ``custom`` transform: side of the center crop in pixels (None: no crop).
        mean / std: ``custom`` transform: per-channel normalisation (None: no normalisation).
        interpolation: resize filter (``bicubic``, ``bilinear``, ``nearest``, ...).
        img_size: input resolution (None: the model's).
        eval_split: the split searches evaluate on; test_split: the split of the final report.
            A split may be a slice of a seeded permutation of one: ``val[:240]`` (see
            :func:`hwsearch.loading.parse_split`).
        confirm_split: a split disjoint from ``eval_split`` on which the final answer and the Pareto
            front's top entries are re-measured (None: no confirmation).
        calib_split: training split for batch-norm re-estimation of candidates (``--bn-recalibrate``).
        eval_subset: evaluate searches on this many seeded samples of eval_split (None: all).
        batch_size: evaluation batch size.
        seed: seed of the bundled split and of subsets.
    """

    dataset: str = "digits"
    splits: Mapping[str, Path] = field(default_factory=dict)
    transform: str | None = None
    resize: int | None = None
    crop: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    interpolation: str = "bicubic"
    img_size: int | None = None
    eval_split: str = "val"
    test_split: str = "test"
    confirm_split: str | None = None
    calib_split: str = "train"
    eval_subset: int | None = None
    batch_size: int = 64
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainSpec:
    """Surrogate-gradient training recipe for ``hwsearch train``."""

    epochs: int = 40
    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    label_smoothing: float = 0.0
    max_shift: int = 2
    seed: int = 0
    train_split: str = "train"


PRIORS: tuple[str, ...] = ("exclude", "weight", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchSpec:
    """How candidates are searched and scored (``[search]`` of a study; CLI flags override).

    Attributes:
        strategy: the default strategy of ``hwsearch run``.
        objective: ``auto`` (top-1 when a cost budget is set, else the parameter memory), ``accuracy``,
            or a cost to minimise under the drop limit: ``param_mb``, ``macs_g``, ``act_mb``.
        prior: how strategies use the sensitivity profile: ``exclude`` (levels a group cannot tolerate
            alone are left out of the global strategies' space), ``weight`` (kept, but drawn less often
            the larger their drop), ``none``.
        bn_recalibrate: training batches for re-estimating each candidate's batch-norm statistics (0: off).
        early_stop: stop a candidate's evaluation once its drop limit is out of reach (exact bound).
        halving: successive-halving factor eta (0: off; >= 2: at each stage of the eval split only the
            top 1/eta of the candidates measured there go on; accuracy objective, sampling strategies).
        cost_models: registry names of the cost models every candidate is costed with (``hwsearch
            costmodels``): ``analytic`` is always used; ``measured`` adds SOPs and energy from each
            candidate's own firing rates, ``latency`` its timed latency. A budget on one of their
            metrics ([constraints] ``sops_g``, ``energy_mj``, ``latency_ms``) adds its model.
    """

    strategy: str = "prioritized"
    objective: str = "auto"
    prior: str = "exclude"
    bn_recalibrate: int = 0
    early_stop: bool = True
    halving: float = 0.0
    cost_models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Study:
    """A study: model + checkpoint + data + constraints (+ optional training recipe).

    ``model_config``: the configuration the study defines under the name ``model`` (its
    ``[model_config]`` table), registered when the study is loaded; None for a registered model.
    """

    name: str
    model: str
    checkpoint: Path
    path: Path | None = None
    model_config: Mapping[str, Any] | None = None
    data: DataSpec = field(default_factory=DataSpec)
    constraints: Constraints = field(default_factory=Constraints)
    train: TrainSpec = field(default_factory=TrainSpec)
    search: SearchSpec = field(default_factory=SearchSpec)

    def require_checkpoint(self) -> Path:
        """The checkpoint path, or a StudyError naming the study key to fix."""
        if not self.checkpoint.is_file():
            where = f" (set `checkpoint` in {self.path})" if self.path else ""
            raise StudyError(f"checkpoint not found: {self.checkpoint}{where}")
        return self.checkpoint

    def replace(self, **changes: Any) -> Study:
        return dataclasses.replace(self, **changes)


def _expand(study_file: Path, value: str) -> Path:
    base = study_file.parent.resolve()
    expanded = os.path.expandvars(os.path.expanduser(value))
    unset = re.search(r"\$\{?(\w+)", expanded)
    if unset:
        raise StudyError(
            f"environment variable {unset.group(1)} is not set (used in '{value}' of {study_file}); "
            f"export {unset.group(1)}=... or write the path into the study file"
        )
    p = Path(expanded)
    return p if p.is_absolute() else (base / p).resolve()


#: Keys whose numbers must be > 0 (the others of type int must be >= 0); seeds may be any integer.
_POSITIVE = frozenset({"param_mb", "macs_g", "act_mb", "sops_g", "energy_mj", "latency_ms", "latency_batch", "batch_size", "epochs", "lr", "eval_subset",
                       "img_size", "resize", "crop"})
_ANY_INT = frozenset({"seed"})
_MAX_DROP = 100.0


def _type_name(tp: Any) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}.get(tp, "a table")


def _check_type(key: str, value: Any, tp: Any, where: str) -> None:
    """Raise a one-line StudyError unless ``value`` fits the annotation ``tp`` (and its range)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        tp, args = inner[0], typing.get_args(inner[0])
    origin = typing.get_origin(tp) or tp
    if origin is tuple:  # names, e.g. cost_models = ["analytic", "latency"]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise StudyError(f"{key} in {where} must be a list of names, like [\"analytic\", \"latency\"]; got {value!r}")
        return
    if origin is list:
        if not isinstance(value, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            raise StudyError(f"{key} in {where} must be a list of numbers, like [0.5, 0.5, 0.5]; got {value!r}")
        return
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise StudyError(f"{key} in {where} must be a table of paths, like {{ val = \"images/val\" }}; got {value!r}")
        return
    ok = (isinstance(value, bool) if tp is bool else
          isinstance(value, int) and not isinstance(value, bool) if tp is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if tp is float else
          isinstance(value, str) if tp is str else True)
    if not ok:
        raise StudyError(f"{key} in {where} must be {_type_name(tp)}, got {value!r}")
    if tp in (int, float) and key not in _ANY_INT:
        bad = not math.isfinite(value) or (value <= 0 if key in _POSITIVE else value < 0)
        if key == "max_acc_drop":
            bad = bad or value > _MAX_DROP
        if bad:
            rng = "between 0 and 100 points" if key == "max_acc_drop" else "positive" if key in _POSITIVE else "0 or more"
            raise StudyError(f"{key} in {where} must be {rng}, got {value!r}")


def _build(cls: type, table: Any, where: str, convert: Mapping[str, Any] | None = None) -> Any:
    if not isinstance(table, Mapping):
        raise StudyError(f"{where} must be a table of keys, got {table!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in table if k not in names]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], names, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise StudyError(f"unknown key '{unknown[0]}' in {where}{hint}; known keys: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    for key, value in table.items():
        _check_type(key, value, hints[key], where)
    values = dict(table)
    for key, fn in (convert or {}).items():
        if key in values:
            values[key] = fn(values[key])
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise StudyError(f"bad {where}: {e}") from None


def _model_config(raw: Mapping[str, Any], path: Path) -> Mapping[str, Any] | None:
    """Validate and register the study's ``[model_config]`` (the configuration named by ``model``)."""
    if "model_args" in raw:
        raise StudyError(
            f"`model_args` in {path} is replaced by [model_config]: give the model its own name "
            f"(model = \"my-model\") and put `base = \"{raw.get('model')}\"` and the arguments under [model_config]"
        )
    table = raw.get("model_config")
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise StudyError(f"model_config in {path} must be a table ([model_config] with family = ... and arguments)")
    from search_spaces import ConfigError, define_config, ensure_config

    try:
        cfg = ensure_config(define_config(raw["model"], **dict(table)), where=str(path))
    except ConfigError as e:
        raise StudyError(f"{e} (in [model_config] of {path})") from None
    except TypeError:  # a key define_config itself takes, given twice or misspelled as a keyword
        raise StudyError(f"bad [model_config] in {path}; its keys are family, layout, base and the model's arguments") from None
    return cfg.to_dict()


def load_study(path: str | Path) -> Study:
    """Read a study TOML file (see the module docstring for its keys)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file not found: {path}; pass --study PATH (the demo is studies/demo.toml)")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"study {path} is not valid TOML: {e}") from None
    top_keys = {"name", "model", "checkpoint", "model_config", "model_args", "data", "constraints", "train", "search"}
    unknown = sorted(set(raw) - top_keys)
    if unknown:
        raise StudyError(f"unknown key '{unknown[0]}' in {path}; known keys: {', '.join(sorted(top_keys - {'model_args'}))}")
    for key in ("model", "checkpoint"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise StudyError(f"study {path} needs a string `{key}` entry, like {key} = \"...\"")
    if "name" in raw and not isinstance(raw["name"], str):
        raise StudyError(f"name in {path} must be a string, got {raw['name']!r}")
    data = _build(
        DataSpec,
        raw.get("data", {}),
        f"[data] of {path}",
        {"splits": lambda d: {k: _expand(path, v) for k, v in d.items()}},
    )
    for split, p in data.splits.items():
        if not p.exists():
            raise StudyError(f"data split '{split}' not found: {p} (set [data.splits] in {path})")
    constraints = _build(Constraints, raw.get("constraints", {}), f"[constraints] of {path}")
    if constraints.dtype not in DTYPE_BYTES:
        raise StudyError(f"unknown dtype '{constraints.dtype}' in {path}; use one of {', '.join(DTYPE_BYTES)}")
    train = _build(TrainSpec, raw.get("train", {}), f"[train] of {path}")
    search = _build(SearchSpec, raw.get("search", {}), f"[search] of {path}",
                    {"cost_models": lambda names: tuple(n.strip() for n in names)})
    _check_cost_models(search.cost_models, path)
    if search.prior not in PRIORS:
        raise StudyError(f"unknown prior '{search.prior}' in [search] of {path}; use one of {', '.join(PRIORS)}")
    if not isinstance(search.halving, (int, float)) or not (search.halving == 0 or search.halving >= 2):
        raise StudyError(f"halving in [search] of {path} must be 0 (off) or a factor >= 2, got {search.halving!r}")
    _check_data(data, path)  # these import torch: after every check that does not need it
    model_config = _model_config(raw, path)
    if model_config is None:
        _check_model_name(raw["model"], path)
    return Study(
        name=str(raw.get("name", path.stem)),
        model=raw["model"],
        checkpoint=_expand(path, raw["checkpoint"]),
        path=path,
        model_config=model_config,
        data=data,
        constraints=constraints,
        train=train,
        search=search,
    )


def _check_data(data: DataSpec, path: Path) -> None:
    """Dataset kind and transform settings, checked before anything is loaded."""
    import difflib

    from hwsearch.data import DATASET_KINDS, TRANSFORM_KINDS, named_transform

    if data.dataset not in DATASET_KINDS:
        close = difflib.get_close_matches(data.dataset, DATASET_KINDS, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise StudyError(f"unknown dataset '{data.dataset}' in [data] of {path}{hint}; use one of {', '.join(DATASET_KINDS)}")
    if data.transform is not None and data.transform not in TRANSFORM_KINDS:
        close = difflib.get_close_matches(data.transform, TRANSFORM_KINDS, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise StudyError(f"unknown transform '{data.transform}' in [data] of {path}{hint}; "
                         f"use one of {', '.join(TRANSFORM_KINDS)}")
    custom = [k for k in ("transform", "resize", "crop", "mean", "std") if getattr(data, k) is not None]
    if custom and data.dataset != "imagefolder":
        raise StudyError(f"{custom[0]} in [data] of {path} only applies to dataset = 'imagefolder' "
                         f"(dataset '{data.dataset}' has its own preprocessing); drop it")
    custom = custom[1:] if data.transform is not None else custom
    if data.transform is None and custom:
        raise StudyError(f"{custom[0]} in [data] of {path} needs transform = \"custom\"; add it")
    if data.img_size is not None and not (data.dataset == "digits" or data.transform in (None, "imagenet")):
        raise StudyError(f"img_size in [data] of {path} is used by dataset 'digits' and transform 'imagenet' only; "
                         "drop it (transform 'custom' takes resize and crop)")
    channels = len(data.mean) if data.mean is not None and len(data.mean) in (1, 3) else 3
    try:
        named_transform(data.transform or "none", img_size=32, channels=channels, resize=data.resize, crop=data.crop,
                        interpolation=data.interpolation, mean=None if data.mean is None else tuple(data.mean),
                        std=None if data.std is None else tuple(data.std))
    except ValueError as e:
        raise StudyError(f"bad transform in [data] of {path}: {e}") from None


def _check_cost_models(names: tuple[str, ...], path: Path) -> None:
    """Every ``[search] cost_models`` name is registered (else close matches, one line)."""
    from costmodels import COST_MODELS
    from hwsearch.errors import UnknownNameError

    for name in names:
        try:
            COST_MODELS.get(name)
        except UnknownNameError as e:
            raise StudyError(f"{e} (in cost_models of [search] of {path})") from None


def _check_model_name(name: str, path: Path) -> None:
    from hwsearch.errors import UnknownNameError
    from search_spaces import get_config

    try:
        get_config(name)
    except UnknownNameError as e:
        raise StudyError(f"{e}; or define '{name}' under [model_config] in {path} (family = ..., arguments)") from None


def default_study_path() -> Path:
    """``studies/demo.toml`` of the source checkout (the embedded default study)."""
    here = Path(__file__).resolve().parent.parent / "studies" / "demo.toml"
    if here.is_file():
        return here
    cwd = Path.cwd() / "studies" / "demo.toml"
    if cwd.is_file():
        return cwd
    raise StudyError("no --study given and the demo study studies/demo.toml was not found; pass --study PATH")
