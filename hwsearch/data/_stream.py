"""Evaluation batches streamed from a dataset: fixed batches, uint8 until normalised, read on demand.

:class:`EvalBatches` is what an evaluator iterates once per candidate: a fixed list of sample-index
batches of a dataset, loaded through a ``DataLoader`` (with worker processes for image folders),
images kept as ``uint8`` through decoding, batching and transfer and normalised per batch, exactly as
the per-image eval transform does (bit for bit). It is plain, picklable data (the dataset's file list
and transform, never pixels), so a Ray worker gets the description once and reads the images itself.

``cache_mb``: when the split's ``uint8`` pixels fit, the first full pass keeps them in this process
(4x smaller than float32) and later passes read them from memory; otherwise every pass streams from
disk and at most one batch (per loader worker) is in memory.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from hwsearch.data._arrays import ArrayDataset
from hwsearch.data._folder import ImageFolderDataset
from hwsearch.data._transforms import _MODES, INTERPOLATIONS, EvalTransform, _center_crop, _resize_shorter_side

__all__ = ["EvalBatches", "Uint8Transform", "BatchNormalize", "stream_batches", "count_samples",
           "DEFAULT_CACHE_MB", "LOADER_WORKERS", "batch_sizes"]

#: Default memory for keeping a split's uint8 pixels after the first pass (per process).
DEFAULT_CACHE_MB = 1024.0
#: Loader worker processes for datasets read from files (0 for in-memory arrays).
LOADER_WORKERS = 2


@dataclass(frozen=True, slots=True)
class Uint8Transform:
    """An :class:`EvalTransform` up to the pixels: convert, resize, crop; returns ``uint8 [C, H, W]``."""

    base: EvalTransform

    def __call__(self, img: Image.Image) -> Tensor:
        t = self.base
        img = img.convert(_MODES[t.channels])
        if t.resize is not None:
            img = _resize_shorter_side(img, t.resize, INTERPOLATIONS[t.interpolation])
        if t.crop is not None:
            img = _center_crop(img, t.crop)
        arr = np.array(img, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@dataclass(frozen=True, slots=True)
class BatchNormalize:
    """``uint8 [B, C, H, W]`` -> float32 ``/ 255``, then ``(x - mean) / std`` per channel (None: no mean/std).

    The same float32 operations, in the same order, as :class:`EvalTransform` on each image.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __call__(self, x: Tensor) -> Tensor:
        x = x.to(torch.float32).div_(255.0)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
            x = (x - mean) / std
        return x


class _Raw(Dataset[tuple[Tensor, int]]):
    """An :class:`ArrayDataset` of uint8 images served as stored (no per-item float conversion)."""

    def __init__(self, base: ArrayDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.base.x[i], int(self.base.y[i])


def _unwrap(ds: Dataset[Any]) -> tuple[Dataset[Any], list[int]]:
    """The underlying dataset of (nested) subsets and the indices into it."""
    idx = list(range(len(ds)))  # type: ignore[arg-type]
    while isinstance(ds, Subset):
        idx = [int(ds.indices[i]) for i in idx]
        ds = ds.dataset
    return ds, idx


def _uint8_view(ds: Dataset[Any]) -> tuple[Dataset[Any], BatchNormalize | None, bool]:
    """``(dataset yielding uint8 where possible, the batch normaliser, reads files)``."""
    if isinstance(ds, ImageFolderDataset) and isinstance(ds.transform, EvalTransform):
        raw = copy.copy(ds)
        raw.transform = Uint8Transform(ds.transform)
        return raw, BatchNormalize(ds.transform.mean, ds.transform.std), True
    if isinstance(ds, ImageFolderDataset):
        return ds, None, True
    if isinstance(ds, ArrayDataset) and ds.x.dtype == torch.uint8 and ds.transform is None:
        return _Raw(ds), BatchNormalize(), False
    return ds, None, False


@dataclass
class EvalBatches(Sequence[tuple[Tensor, Tensor]]):
    """Fixed evaluation batches of a dataset, loaded on demand (see the module docstring).

    Attributes:
        dataset: yields ``(image, label)``; uint8 images when ``normalize`` is set.
        batches: the dataset indices of each batch, in order.
        normalize: applied to each uint8 batch (None: the dataset already yields float tensors).
        workers: ``DataLoader`` worker processes.
        cache_mb: keep the uint8 batches in memory after the first full pass when they fit (0: never).
    """

    dataset: Dataset[Any]
    batches: tuple[tuple[int, ...], ...]
    normalize: BatchNormalize | None = None
    workers: int = 0
    cache_mb: float = DEFAULT_CACHE_MB
    _cache: list[tuple[Tensor, Tensor]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self.batches)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return EvalBatches(self.dataset, self.batches[i], self.normalize, self.workers, self.cache_mb)
        index = range(len(self.batches))[i]
        if self._cache is not None:
            return self._finish(*self._cache[index])
        return next(iter(EvalBatches(self.dataset, (self.batches[index],), self.normalize, 0, 0)))

    def _finish(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return (self.normalize(x) if self.normalize is not None else x), y

    def _raw(self) -> Iterator[tuple[Tensor, Tensor]]:
        if not self.batches:
            return iter(())
        workers = min(self.workers, len(self.batches))
        loader = DataLoader(self.dataset, batch_sampler=[list(b) for b in self.batches], num_workers=workers,
                            persistent_workers=False, prefetch_factor=2 if workers else None)
        return iter(loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self._cache is not None:
            for x, y in self._cache:
                yield self._finish(x, y)
            return
        keep: list[tuple[Tensor, Tensor]] | None = [] if self.cache_mb > 0 else None
        kept = 0
        for x, y in self._raw():
            if keep is not None:
                kept += x.numel() * x.element_size()
                if kept <= self.cache_mb * 1e6 and x.dtype == torch.uint8:
                    keep.append((x, y))
                else:
                    keep = None
            yield self._finish(x, y)
        if keep is not None and len(keep) == len(self.batches):
            self._cache = keep

    def __getstate__(self) -> dict[str, Any]:  # a worker gets the description, never the cached pixels
        return {"dataset": self.dataset, "batches": self.batches, "normalize": self.normalize,
                "workers": self.workers, "cache_mb": self.cache_mb, "_cache": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def stream_batches(ds: Dataset[Any], batch_size: int, *, stages: Sequence[float] = (),
                   workers: int | None = None, cache_mb: float = DEFAULT_CACHE_MB) -> EvalBatches:
    """Batches of ``ds`` in order; ``stages``: the first batches are these fractions of ``batch_size``.

    ``workers``: loader processes (None: :data:`LOADER_WORKERS` for datasets read from files, else 0).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    base, idx = _unwrap(ds)
    data, normalize, files = _uint8_view(base)
    sizes = [max(1, int(batch_size * f)) for f in stages] + [batch_size] * math.ceil(len(idx) / batch_size)
    batches, start = [], 0
    for size in sizes:
        if start >= len(idx):
            break
        batches.append(tuple(idx[start:start + size]))
        start += size
    n_workers = (LOADER_WORKERS if files else 0) if workers is None else workers
    return EvalBatches(data, tuple(batches), normalize, n_workers, cache_mb)


def batch_sizes(batches: Sequence[tuple[Tensor, Tensor]]) -> list[int]:
    """Samples in each batch (without reading them when they are :class:`EvalBatches`)."""
    if isinstance(batches, EvalBatches):
        return [len(b) for b in batches.batches]
    return [int(y.numel()) for _, y in batches]


def count_samples(batches: Sequence[tuple[Tensor, Tensor]]) -> int:
    """Samples in ``batches`` (without reading them when they are :class:`EvalBatches`)."""
    if isinstance(batches, EvalBatches):
        return batches.samples
    return sum(int(y.numel()) for _, y in batches)
