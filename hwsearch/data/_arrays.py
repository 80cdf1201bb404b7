"""Datasets over in-memory arrays: static images ``[N, C, H, W]`` and DVS event frames ``[N, T, 2, H, W]``.

Both take numpy arrays or torch tensors, or load them from an ``.npz`` file holding ``x`` and ``y``
(``np.savez(path, x=images, y=labels)``). Shapes, dtypes and labels are checked at construction and
every problem raises :class:`~hwsearch.errors.DataError` naming the expected layout.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from hwsearch.errors import DataError

__all__ = ["ArrayDataset", "EventDataset", "load_npz"]

ArrayLike = np.ndarray | Tensor | Sequence[int]


def load_npz(path: str | os.PathLike[str], keys: Sequence[str] = ("x", "y")) -> dict[str, np.ndarray]:
    """Read the arrays ``keys`` from a numpy ``.npz`` file (no pickled objects).

    Raises:
        DataError: the file is missing, is not an ``.npz`` archive, or lacks one of ``keys``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"array file {path} does not exist; save one with np.savez(path, x=..., y=...)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path} has no array {missing[0]!r} (found: {', '.join(npz.files) or 'none'}); "
                    f"save it with np.savez(path, {', '.join(f'{k}=...' for k in keys)})"
                )
            return {k: npz[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"cannot read {path} as a numpy .npz file ({reason}); save it with np.savez(path, x=..., y=...)"
        ) from None


class _LabelledArrays(Dataset[tuple[Tensor, int]]):
    """Shared validation and indexing; subclasses set the layout and how ``x`` becomes float32."""

    layout: ClassVar[str]  # "[N, C, H, W] (...)", named in shape errors
    ndim: ClassVar[int]

    def __init__(self, x: ArrayLike, y: ArrayLike, *, transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.x = self._check_x(_as_tensor(x, self._what()))
        self.y = _check_labels(y, len(self.x))
        self.transform = transform

    @classmethod
    def from_npz(
        cls, path: str | os.PathLike[str], *, transform: Callable[[Tensor], Tensor] | None = None
    ) -> Self:
        """Load ``x`` and ``y`` from ``path`` (written with ``np.savez(path, x=..., y=...)``)."""
        arrays = load_npz(path)
        try:
            return cls(arrays["x"], arrays["y"], transform=transform)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    @property
    def num_classes(self) -> int:
        """``max(label) + 1``: the number of outputs a classifier for these labels needs."""
        return int(self.y.max()) + 1 if len(self.y) else 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self._to_float(self.x[index])
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.y[index])

    def _check_x(self, x: Tensor) -> Tensor:
        if x.ndim != self.ndim:
            raise DataError(f"{self._what()} must have shape {self.layout}; got {list(x.shape)}")
        return x

    @staticmethod
    def _to_float(x: Tensor) -> Tensor:
        return x.to(torch.float32)

    def _what(self) -> str:
        return "arrays"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(x={list(self.x.shape)} {self.x.dtype}, classes={self.num_classes})"


class ArrayDataset(_LabelledArrays):
    """Static images ``x: [N, C, H, W]`` with integer labels ``y: [N]``, as ``(image, label)`` items.

    ``float`` images are returned as float32 unchanged; ``uint8`` images are stored as given (4x less
    memory) and scaled to ``[0, 1]`` when an item is read.

    Args:
        x: images, numpy array or tensor, ``[N, C, H, W]``, floating point or ``uint8``.
        y: labels, ``[N]`` non-negative integers.
        transform: optional, applied to each float32 image ``[C, H, W]``.

    Raises:
        DataError: wrong number of dimensions, unsupported dtype, or bad labels.

    >>> ds = ArrayDataset(np.zeros((4, 1, 8, 8), np.uint8), [0, 1, 2, 1])
    >>> ds[1][0].shape, ds[1][1], ds.num_classes
    (torch.Size([1, 8, 8]), 1, 3)
    """

    layout = "[N, C, H, W] (N images, C channels, height, width)"
    ndim = 4

    def _check_x(self, x: Tensor) -> Tensor:
        x = super()._check_x(x)
        if x.dtype == torch.uint8:
            return x
        if not x.is_floating_point():
            raise DataError(f"images must be floating point or uint8; got {x.dtype}, so cast them first")
        return x.to(torch.float32)

    @staticmethod
    def _to_float(x: Tensor) -> Tensor:
        return x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x

    def _what(self) -> str:
        return "images"


class EventDataset(_LabelledArrays):
    """DVS event frames ``x: [N, T, 2, H, W]`` with integer labels, as ``([T, 2, H, W], label)`` items.

    Events are already binned into ``T`` frames of two polarity channels (ON, OFF), as spikingjelly's
    ``frames_number`` integration does; values (counts, or 0/1 spikes) are returned as float32 without
    scaling. A loader batches them to ``[B, T, 2, H, W]``; models taking ``[T, B, ...]`` transpose.

    Args:
        x: frames, numpy array or tensor, ``[N, T, 2, H, W]``, any numeric or bool dtype.
        y: labels, ``[N]`` non-negative integers.
        transform: optional, applied to each float32 sample ``[T, 2, H, W]``.

    Raises:
        DataError: wrong shape, non-numeric frames, or bad labels.
    """

    layout = "[N, T, 2, H, W] (N samples, T time steps, 2 polarities, height, width)"
    ndim = 5

    def _check_x(self, x: Tensor) -> Tensor:
        x = super()._check_x(x)
        if x.shape[2] != 2:
            raise DataError(
                f"event frames must have shape {self.layout}; got {list(x.shape)} with {x.shape[2]} "
                "polarity channels at dim 2"
            )
        if x.is_complex():
            raise DataError(f"event frames must be real numbers; got {x.dtype}")
        return x

    def _what(self) -> str:
        return "event frames"


def _check_labels(y: ArrayLike, n: int) -> Tensor:
    labels = _as_tensor(y, "labels")
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"labels must have shape [N] = [{n}] (one per sample); got {list(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(f"labels must be integers; got {labels.dtype}, so cast them (y.astype(np.int64))")
    labels = labels.to(torch.int64)
    if n and int(labels.min()) < 0:
        raise DataError(f"labels must be non-negative class indices; found {int(labels.min())}")
    return labels


def _as_tensor(a: ArrayLike, what: str) -> Tensor:
    if isinstance(a, Tensor):
        return a
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{what} are not a numeric array ({reason}); pass a numpy array or tensor") from None
