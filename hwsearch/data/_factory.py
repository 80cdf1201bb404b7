"""One entry point from a study's ``data = {...}`` table to a dataset, and a seeded loader."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import torch
from torch.utils.data import DataLoader, Dataset

from hwsearch.data._arrays import ArrayDataset, EventDataset
from hwsearch.data._digits import load_digits_split
from hwsearch.data._folder import ImageFolderDataset
from hwsearch.data._transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    cifar_eval_transform,
    imagenet_eval_transform,
)
from hwsearch.errors import DataError

__all__ = ["DATASET_KINDS", "IMAGEFOLDER_TRANSFORMS", "build_dataset", "make_loader"]

IMAGEFOLDER_TRANSFORMS: Final = ("imagenet", "cifar10", "cifar100")

_Builder = Callable[[str, Path | None, int | None, dict[str, Any]], Dataset[Any]]


def build_dataset(
    kind: str, *, split: str, root: str | Path | None = None, img_size: int | None = None, **kwargs: Any
) -> Dataset[Any]:
    """Build an evaluation dataset by kind; every item is ``(input tensor, int label)``.

    Kinds and their options (``kwargs`` set to ``None`` are dropped, as if not given):

    - ``"digits"``: the bundled 8x8 digits (:func:`load_digits_split`); ``root`` must be ``None``;
      ``img_size`` defaults to 32; option ``seed`` (default 0).
    - ``"imagefolder"``: images in ``root/<split>/<class>/<image>`` (:class:`ImageFolderDataset`);
      option ``transform``: ``"imagenet"`` (default; ``img_size`` default 224, options ``crop_pct``
      and ``interpolation``), ``"cifar10"`` or ``"cifar100"`` (no resize, so no ``img_size``), or a
      callable taking a ``PIL.Image``.
    - ``"npz"``: images ``x [N, C, H, W]`` and labels ``y`` (:class:`ArrayDataset`) from ``root``, an
      ``.npz`` file, or a folder holding ``<split>.npz``.
    - ``"events"``: DVS frames ``x [N, T, 2, H, W]`` and labels ``y`` (:class:`EventDataset`), same
      ``root`` rule as ``"npz"``.

    Args:
        kind: one of :data:`DATASET_KINDS`.
        split: the split to load, such as ``"train"``, ``"val"`` or ``"test"``.
        root: where the data lives; see the kinds.
        img_size: output side in pixels where the kind resizes; see the kinds.
        **kwargs: kind-specific options listed above.

    Raises:
        DataError: unknown kind (with close matches), unknown option, missing ``root``, or any problem
            the dataset itself reports.

    >>> len(build_dataset("digits", split="test"))
    360
    """
    builder = _BUILDERS.get(kind)
    if builder is None:
        close = difflib.get_close_matches(kind, DATASET_KINDS, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise DataError(f"unknown dataset kind {kind!r}{hint} (choose from: {', '.join(DATASET_KINDS)})")
    options = {k: v for k, v in kwargs.items() if v is not None}
    return builder(split, Path(root) if root is not None else None, img_size, options)


def make_loader(dataset: Dataset[Any], batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader[Any]:
    """A single-process ``DataLoader`` whose shuffling order depends only on ``seed``.

    Args:
        dataset: any map-style dataset.
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch, in an order fixed by ``seed``.
        seed: seed of the loader's own ``torch.Generator``; the global RNG is not touched.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=0, generator=generator)


def _take(kind: str, options: dict[str, Any], allowed: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with defaults from ``allowed`` filled in; an unknown name raises with the valid ones."""
    for name in options:
        if name not in allowed:
            valid = ", ".join(allowed) or "none"
            raise DataError(f"dataset kind {kind!r} has no option {name!r}; its options are: {valid}")
    return {**allowed, **options}


def _build_digits(split: str, root: Path | None, img_size: int | None, options: dict[str, Any]) -> Dataset[Any]:
    opts = _take("digits", options, {"seed": 0})
    if root is not None:
        raise DataError(f"the digits dataset is bundled with hwsearch and takes no root (got {root}); drop root")
    return load_digits_split(split, img_size=32 if img_size is None else img_size, seed=opts["seed"])


def _build_imagefolder(
    split: str, root: Path | None, img_size: int | None, options: dict[str, Any]
) -> Dataset[Any]:
    opts = _take("imagefolder", options, {"transform": "imagenet", "crop_pct": 0.875, "interpolation": "bicubic"})
    if root is None:
        raise DataError("dataset kind 'imagefolder' needs root, the folder holding <split>/<class>/<image>.jpg")
    folder = root / split
    if not folder.is_dir():
        raise DataError(
            f"no folder {folder} for split {split!r}; expected ROOT/<split>/<class>/<image>.jpg, "
            "so pass the parent of the split folders as root"
        )
    transform = opts["transform"]
    if callable(transform) or transform != "imagenet":
        if img_size is not None:
            raise DataError(f"img_size is only used by transform 'imagenet', not {transform!r}; drop img_size")
    if callable(transform):
        return ImageFolderDataset(folder, transform)
    if transform == "imagenet":
        size = 224 if img_size is None else img_size
        return ImageFolderDataset(folder, imagenet_eval_transform(size, opts["crop_pct"], opts["interpolation"]))
    if transform == "cifar10":
        return ImageFolderDataset(folder, cifar_eval_transform(CIFAR10_MEAN, CIFAR10_STD))
    if transform == "cifar100":
        return ImageFolderDataset(folder, cifar_eval_transform(CIFAR100_MEAN, CIFAR100_STD))
    close = difflib.get_close_matches(str(transform), IMAGEFOLDER_TRANSFORMS, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise DataError(
        f"unknown imagefolder transform {transform!r}{hint} (choose from: {', '.join(IMAGEFOLDER_TRANSFORMS)})"
    )


def _split_file(kind: str, root: Path | None, split: str) -> Path:
    if root is None:
        raise DataError(f"dataset kind {kind!r} needs root: an .npz file, or a folder holding {split}.npz")
    return root / f"{split}.npz" if root.is_dir() else root


def _build_npz(split: str, root: Path | None, img_size: int | None, options: dict[str, Any]) -> Dataset[Any]:
    _take("npz", options, {})
    if img_size is not None:
        raise DataError("dataset kind 'npz' serves the arrays as stored and takes no img_size; drop img_size")
    return ArrayDataset.from_npz(_split_file("npz", root, split))


def _build_events(split: str, root: Path | None, img_size: int | None, options: dict[str, Any]) -> Dataset[Any]:
    _take("events", options, {})
    if img_size is not None:
        raise DataError("dataset kind 'events' serves the frames as stored and takes no img_size; drop img_size")
    return EventDataset.from_npz(_split_file("events", root, split))


_BUILDERS: Final[dict[str, _Builder]] = {
    "digits": _build_digits,
    "events": _build_events,
    "imagefolder": _build_imagefolder,
    "npz": _build_npz,
}
DATASET_KINDS: Final = tuple(_BUILDERS)
