"""Study specs: plain TOML data naming a model, its checkpoint, the data and the constraints.

A study file is read with :mod:`tomllib`; relative paths are resolved against the file's folder, and
``~`` / ``$VARS`` are expanded. Unknown keys are errors (a typo must not be silently ignored).

.. code-block:: toml

    name = "demo"
    model = "spikformer-digits-2-64"          # registry name (hwsearch models)
    checkpoint = "checkpoints/spikformer-digits-2-64.pth"
    [data]
    dataset = "digits"                         # digits | imagefolder | npz | events
    eval_split = "val"                         # what searches evaluate on
    test_split = "test"                        # the final report
    [constraints]
    param_mb = 0.4                             # parameter memory, MB = 1e6 bytes, at `dtype`
    max_acc_drop = 3.0                         # percentage points of top-1
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsearch.errors import StudyError
from hwsearch.results import Constraints

__all__ = ["Study", "DataSpec", "Constraints", "TrainSpec", "SearchSpec", "PRIORS", "load_study", "default_study_path"]

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 0.5}


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSpec:
    """Where the images come from and how they are split.

    Attributes:
        dataset: ``digits`` (bundled), ``imagefolder`` (ROOT/<class>/<image>), ``npz`` (arrays ``x``/``y``)
            or ``events`` (DVS frames ``[N,T,2,H,W]`` in an npz).
        splits: split name -> folder or file, for the datasets that are not bundled.
        transform: eval transform for image folders: ``imagenet``, ``cifar10`` or ``cifar100``.
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
    """

    strategy: str = "prioritized"
    objective: str = "auto"
    prior: str = "exclude"
    bn_recalibrate: int = 0
    early_stop: bool = True
    halving: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Study:
    """A study: model + checkpoint + data + constraints (+ optional training recipe)."""

    name: str
    model: str
    checkpoint: Path
    path: Path | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
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


def _build(cls: type, table: Mapping[str, Any], where: str, convert: Mapping[str, Any] | None = None) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in table if k not in names]
    if unknown:
        raise StudyError(f"unknown key '{unknown[0]}' in {where}; known keys: {', '.join(names)}")
    values = dict(table)
    for key, fn in (convert or {}).items():
        if key in values:
            values[key] = fn(values[key])
    try:
        return cls(**values)
    except TypeError as e:
        raise StudyError(f"bad {where}: {e}") from None


def load_study(path: str | Path) -> Study:
    """Read a study TOML file (see the module docstring for its keys)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file not found: {path}; pass --study PATH (the demo is studies/demo.toml)")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"study {path} is not valid TOML: {e}") from None
    top_keys = {"name", "model", "checkpoint", "model_args", "data", "constraints", "train", "search"}
    unknown = sorted(set(raw) - top_keys)
    if unknown:
        raise StudyError(f"unknown key '{unknown[0]}' in {path}; known keys: {', '.join(sorted(top_keys))}")
    for key in ("model", "checkpoint"):
        if not isinstance(raw.get(key), str):
            raise StudyError(f"study {path} needs a string `{key}` entry")
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
    search = _build(SearchSpec, raw.get("search", {}), f"[search] of {path}")
    if search.prior not in PRIORS:
        raise StudyError(f"unknown prior '{search.prior}' in [search] of {path}; use one of {', '.join(PRIORS)}")
    if not isinstance(search.halving, (int, float)) or not (search.halving == 0 or search.halving >= 2):
        raise StudyError(f"halving in [search] of {path} must be 0 (off) or a factor >= 2, got {search.halving!r}")
    return Study(
        name=str(raw.get("name", path.stem)),
        model=raw["model"],
        checkpoint=_expand(path, raw["checkpoint"]),
        path=path,
        model_args=dict(raw.get("model_args", {})),
        data=data,
        constraints=constraints,
        train=train,
        search=search,
    )


def default_study_path() -> Path:
    """``studies/demo.toml`` of the source checkout (the embedded default study)."""
    here = Path(__file__).resolve().parent.parent / "studies" / "demo.toml"
    if here.is_file():
        return here
    cwd = Path.cwd() / "studies" / "demo.toml"
    if cwd.is_file():
        return cwd
    raise StudyError("no --study given and the demo study studies/demo.toml was not found; pass --study PATH")
