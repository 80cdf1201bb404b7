"""Evaluation data: the bundled digits demo set, image folders, array and DVS event files.

Every dataset yields ``(input tensor, int label)``. Start from :func:`build_dataset` (what a study's
``data = {...}`` table names) and :func:`make_loader`; the classes and transforms are public for direct
use. Every user-facing problem (missing folder, stray file, corrupt image, wrong array shape) raises
:class:`hwsearch.errors.DataError` with a one-line message naming the fix.

>>> ds = build_dataset("digits", split="train")
>>> x, y = ds[0]
>>> len(ds), tuple(x.shape), 0 <= y <= 9
(1077, (1, 32, 32), True)
"""

from hwsearch.data._arrays import ArrayDataset, EventDataset, load_npz
from hwsearch.data._digits import (
    DIGITS_MEAN,
    DIGITS_NPZ,
    DIGITS_SHA256,
    DIGITS_SPLITS,
    DIGITS_STD,
    build_digits_npz,
    digits_split_indices,
    digits_train_stats,
    load_digits_split,
)
from hwsearch.data._factory import DATASET_KINDS, IMAGEFOLDER_TRANSFORMS, build_dataset, make_loader
from hwsearch.data._folder import IMG_EXTENSIONS, ImageFolderDataset
from hwsearch.data._stream import BatchNormalize, EvalBatches, Uint8Transform, batch_sizes, count_samples, stream_batches
from hwsearch.data._transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    TRANSFORM_KINDS,
    EvalTransform,
    named_transform,
    cifar_eval_transform,
    imagenet_eval_transform,
    to_tensor_transform,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DATASET_KINDS",
    "DIGITS_MEAN",
    "DIGITS_NPZ",
    "DIGITS_SHA256",
    "DIGITS_SPLITS",
    "DIGITS_STD",
    "IMAGEFOLDER_TRANSFORMS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMG_EXTENSIONS",
    "INTERPOLATIONS",
    "TRANSFORM_KINDS",
    "ArrayDataset",
    "BatchNormalize",
    "EvalBatches",
    "Uint8Transform",
    "batch_sizes",
    "count_samples",
    "stream_batches",
    "EvalTransform",
    "EventDataset",
    "ImageFolderDataset",
    "build_dataset",
    "build_digits_npz",
    "cifar_eval_transform",
    "digits_split_indices",
    "digits_train_stats",
    "imagenet_eval_transform",
    "load_digits_split",
    "load_npz",
    "make_loader",
    "named_transform",
    "to_tensor_transform",
]
