"""The bundled demo dataset: scikit-learn's 1,797 handwritten 8x8 digits (the UCI optical digits test set).

``digits.npz`` next to this module holds ``images`` (``uint8 [1797, 8, 8]``, ink 0..16) and ``labels``
(``uint8 [1797]``, 0..9). It was written once by :func:`build_digits_npz`; the package reads it with numpy
only and checks its SHA-256 on every load.

:func:`load_digits_split` serves a fixed seeded split (``default_rng(seed).permutation(1797)``: the first
1077 indices train, the next 360 val, the last 360 test), upsampled to ``img_size`` and normalized with
the train split's pixel mean and standard deviation.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F

from hwsearch.data._arrays import ArrayDataset, load_npz
from hwsearch.errors import DataError

__all__ = [
    "DIGITS_MEAN",
    "DIGITS_NPZ",
    "DIGITS_SHA256",
    "DIGITS_SPLITS",
    "DIGITS_STD",
    "build_digits_npz",
    "digits_split_indices",
    "digits_train_stats",
    "load_digits_split",
]

DIGITS_NPZ: Final = Path(__file__).with_name("digits.npz")
DIGITS_SHA256: Final = "78a85852f7f6b2b5d209ab9b246a3f6783ba99bf264099704d8725980b7e0b97"
N_DIGITS: Final = 1797
DIGITS_SPLITS: Final = {"train": 1077, "val": 360, "test": 360}  # sizes, in permutation order
# Mean and std of every pixel of the train split for the defaults (seed=0, img_size=32), after /16 and
# bilinear upsampling; ``digits_train_stats()`` recomputes them and a test checks they still agree.
DIGITS_MEAN: Final = 0.3049296004526462
DIGITS_STD: Final = 0.3230546618722282
_DEFAULTS: Final = (0, 32)  # (seed, img_size) the constants belong to
_ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)  # fixed entry timestamps, so rebuilding gives the same bytes


def build_digits_npz(path: str | os.PathLike[str]) -> Path:
    """Write the digits file from scikit-learn; this is how ``hwsearch/data/digits.npz`` was made.

    Only needed to regenerate the bundled file; scikit-learn is not a dependency of hwsearch. The zip
    entries carry a fixed timestamp, so the same scikit-learn data gives the same bytes (and SHA-256).

    Args:
        path: the ``.npz`` file to write.

    Returns:
        ``path`` as a ``Path``.
    """
    from sklearn.datasets import load_digits  # lazy: only this generator needs scikit-learn

    bunch = load_digits()
    arrays = {
        "images": np.asarray(bunch.images).round().astype(np.uint8),
        "labels": np.asarray(bunch.target).astype(np.uint8),
    }
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    return path


def digits_split_indices(split: str, *, seed: int = 0) -> np.ndarray:
    """Indices into the 1,797 digits of one split, in permutation order.

    Args:
        split: ``"train"`` (1077), ``"val"`` (360) or ``"test"`` (360).
        seed: seed of ``numpy.random.default_rng``; the three splits of one seed are disjoint and
            cover all samples.

    Raises:
        DataError: unknown ``split``.
    """
    _check_split(split)
    perm = np.random.default_rng(seed).permutation(N_DIGITS)
    start = 0
    for name, size in DIGITS_SPLITS.items():
        if name == split:
            return perm[start : start + size]
        start += size
    raise AssertionError("unreachable")


def digits_train_stats(*, img_size: int = 32, seed: int = 0) -> tuple[float, float]:
    """Mean and (population) standard deviation over all pixels of the upsampled train split."""
    return _stats(_read_file()["images"], digits_split_indices("train", seed=seed), img_size)


def load_digits_split(split: str, *, img_size: int = 32, seed: int = 0) -> ArrayDataset:
    """One split of the bundled digits as float images ``[N, 1, img_size, img_size]``, labels 0..9.

    Pixels are scaled to ``[0, 1]`` (ink / 16), upsampled from 8x8 with bilinear interpolation
    (``align_corners=False``) and normalized with the train split's scalar mean and std for this
    ``img_size`` and ``seed`` (:data:`DIGITS_MEAN`/:data:`DIGITS_STD` for the defaults), so the train
    split has mean 0 and std 1.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        img_size: output side in pixels.
        seed: the split seed, see :func:`digits_split_indices`.

    Raises:
        DataError: unknown ``split``, ``img_size`` below 1, or a damaged bundled file.

    >>> ds = load_digits_split("val")
    >>> len(ds), tuple(ds[0][0].shape)
    (360, (1, 32, 32))
    """
    indices = digits_split_indices(split, seed=seed)
    arrays = _read_file()
    if (seed, img_size) == _DEFAULTS:
        mean, std = DIGITS_MEAN, DIGITS_STD
    else:
        mean, std = _stats(arrays["images"], digits_split_indices("train", seed=seed), img_size)
    x = (_upsampled(arrays["images"][indices], img_size) - mean) / std
    return ArrayDataset(x, arrays["labels"][indices].astype(np.int64))


def _check_split(split: str) -> None:
    if split not in DIGITS_SPLITS:
        raise DataError(f"unknown digits split {split!r}; choose one of: {', '.join(DIGITS_SPLITS)}")


def _stats(images: np.ndarray, train: np.ndarray, img_size: int) -> tuple[float, float]:
    x = _upsampled(images[train], img_size).double()
    return float(x.mean()), float(x.std(unbiased=False))


def _upsampled(images: np.ndarray, img_size: int) -> torch.Tensor:
    """``uint8 [N, 8, 8]`` ink counts -> float32 ``[N, 1, img_size, img_size]`` in ``[0, 1]``."""
    if not isinstance(img_size, int) or isinstance(img_size, bool) or img_size < 1:
        raise DataError(f"img_size must be a positive number of pixels, got {img_size!r}")
    x = torch.from_numpy(images.astype(np.float32) / 16.0)[:, None]
    return F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)


def _read_file() -> dict[str, np.ndarray]:
    digest = hashlib.sha256(DIGITS_NPZ.read_bytes()).hexdigest() if DIGITS_NPZ.is_file() else "missing"
    if digest != DIGITS_SHA256:
        raise DataError(
            f"bundled digits file {DIGITS_NPZ} is damaged or missing (sha256 {digest}); reinstall hwsearch"
        )
    return load_npz(DIGITS_NPZ, keys=("images", "labels"))
