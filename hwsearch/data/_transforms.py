"""Evaluation transforms on Pillow + numpy (no torchvision).

The ImageNet transform reproduces timm's eval pipeline (``transforms_imagenet_eval``) step by step:
resize the shorter side to ``floor(img_size / crop_pct)`` with Pillow (antialiased, as torchvision does
for PIL images), center-crop ``img_size`` with torchvision's rounding, scale to ``[0, 1]`` floats in
``C, H, W`` order, normalize per channel. The CIFAR transform is the last two steps only.

Transforms are frozen dataclasses holding plain numbers, so they pickle (Ray ships them to workers)
and compare by value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERPOLATIONS",
    "EvalTransform",
    "cifar_eval_transform",
    "imagenet_eval_transform",
    "to_tensor_transform",
    "TRANSFORM_KINDS",
    "named_transform",
]

IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)
CIFAR10_MEAN: Final = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Final = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: Final = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: Final = (0.2673, 0.2564, 0.2762)

INTERPOLATIONS: Final[dict[str, Image.Resampling]] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_MODES: Final = {1: "L", 3: "RGB"}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalTransform:
    """PIL image -> normalized float tensor ``[channels, H, W]``.

    Steps, each skipped when its field is ``None``: convert to ``RGB`` (``L`` when ``channels == 1``),
    resize so the shorter side is ``resize`` pixels (aspect ratio kept, ``interpolation``), center-crop
    ``crop x crop``, scale ``uint8`` to ``[0, 1]``, subtract ``mean`` and divide by ``std`` per channel.
    Build one with :func:`imagenet_eval_transform`, :func:`cifar_eval_transform` or
    :func:`to_tensor_transform`.

    Attributes:
        resize: target length of the shorter side in pixels, or ``None`` for no resize.
        crop: side of the square center crop in pixels, or ``None`` for no crop. Must not exceed the
            image after resizing.
        interpolation: a key of :data:`INTERPOLATIONS`.
        mean: per-channel mean in ``[0, 1]`` units (one value per channel, or one for all), or ``None``
            for no normalization.
        std: per-channel standard deviation, same length as ``mean``; ``None`` exactly when ``mean`` is.
        channels: 3 (RGB) or 1 (grayscale).

    >>> t = cifar_eval_transform()
    >>> t(Image.new("RGB", (32, 32), (125, 123, 114))).shape
    torch.Size([3, 32, 32])
    """

    resize: int | None = None
    crop: int | None = None
    interpolation: str = "bicubic"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int = 3

    def __post_init__(self) -> None:
        if self.channels not in _MODES:
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"unknown interpolation {self.interpolation!r}; choose from {', '.join(INTERPOLATIONS)}"
            )
        for name, size in (("resize", self.resize), ("crop", self.crop)):
            if size is not None and size < 1:
                raise ValueError(f"{name} must be a positive number of pixels, got {size}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std) or len(self.mean) not in (1, self.channels):
                raise ValueError(
                    f"mean and std need 1 or {self.channels} values each for {self.channels} channel(s); "
                    f"got {len(self.mean)} and {len(self.std)}"
                )
            if any(s <= 0 for s in self.std):
                raise ValueError(f"std values must be positive, got {self.std}")

    def __call__(self, img: Image.Image) -> Tensor:
        """Transform one image; see the class docstring for the steps."""
        img = img.convert(_MODES[self.channels])
        if self.resize is not None:
            img = _resize_shorter_side(img, self.resize, INTERPOLATIONS[self.interpolation])
        if self.crop is not None:
            img = _center_crop(img, self.crop)
        x = _to_tensor(img)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
            x = (x - mean) / std
        return x


def imagenet_eval_transform(
    img_size: int = 224,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    *,
    channels: int = 3,
) -> EvalTransform:
    """timm's ImageNet eval transform: resize to ``floor(img_size / crop_pct)``, center-crop ``img_size``.

    Args:
        img_size: side of the square output in pixels.
        crop_pct: fraction of the resized shorter side kept by the crop, in ``(0, 1]``.
        interpolation: resize filter, a key of :data:`INTERPOLATIONS`.
        mean: per-channel normalization mean.
        std: per-channel normalization standard deviation.
        channels: 3 for RGB, 1 for grayscale (then give one-value ``mean``/``std``).

    Returns:
        A picklable :class:`EvalTransform`; for the defaults, 256-pixel resize and 224 crop.

    >>> imagenet_eval_transform().resize
    256
    """
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return EvalTransform(
        resize=math.floor(img_size / crop_pct),
        crop=img_size,
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
        channels=channels,
    )


def cifar_eval_transform(
    mean: tuple[float, ...] = CIFAR10_MEAN,
    std: tuple[float, ...] = CIFAR10_STD,
    *,
    channels: int = 3,
) -> EvalTransform:
    """The CIFAR eval transform: to tensor and normalize, no resize or crop.

    Args:
        mean: per-channel mean; :data:`CIFAR100_MEAN` for CIFAR-100.
        std: per-channel standard deviation; :data:`CIFAR100_STD` for CIFAR-100.
        channels: 3 for RGB, 1 for grayscale.

    Returns:
        A picklable :class:`EvalTransform`.
    """
    return EvalTransform(mean=tuple(mean), std=tuple(std), channels=channels)


def to_tensor_transform(*, channels: int = 3) -> EvalTransform:
    """Convert to RGB (or L) and scale to a ``[0, 1]`` float tensor; no resize, crop or normalization."""
    return EvalTransform(channels=channels)


#: What a study's ``transform`` may name (``hwsearch/data`` builds each with :func:`named_transform`).
TRANSFORM_KINDS: Final = ("imagenet", "cifar10", "cifar100", "none", "custom")


def named_transform(
    kind: str,
    *,
    img_size: int,
    channels: int = 3,
    resize: int | None = None,
    crop: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    interpolation: str = "bicubic",
) -> EvalTransform:
    """The eval transform a study names, for a model taking ``channels x img_size x img_size``.

    - ``imagenet``: timm's (resize the shorter side to ``img_size / 0.875``, center-crop ``img_size``,
      ImageNet mean/std; grayscale models get the channel means).
    - ``cifar10`` / ``cifar100``: no resize or crop, normalise with that dataset's mean/std.
    - ``none``: no resize, crop or normalisation: pixels scaled to ``[0, 1]``.
    - ``custom``: exactly ``resize``, ``crop``, ``mean`` and ``std`` (each ``None`` skips its step).

    ``resize``/``crop``/``mean``/``std`` belong to ``custom`` only; with another kind they raise
    ``ValueError`` (a setting must never be silently ignored).

    >>> named_transform("custom", img_size=32, resize=36, crop=32, mean=(0.5,), std=(0.25,), channels=1).crop
    32
    """
    if kind not in TRANSFORM_KINDS:
        raise ValueError(f"unknown transform {kind!r}; choose from {', '.join(TRANSFORM_KINDS)}")
    given = [k for k, v in (("resize", resize), ("crop", crop), ("mean", mean), ("std", std)) if v is not None]
    if kind != "custom" and given:
        raise ValueError(f"{', '.join(given)} only apply to transform = 'custom', not {kind!r}; "
                         "set transform = 'custom' or drop them")

    def fit(values: tuple[float, ...]) -> tuple[float, ...]:
        return values if channels == 3 else (sum(values) / len(values),)

    if kind == "imagenet":
        return imagenet_eval_transform(img_size, interpolation=interpolation, mean=fit(IMAGENET_MEAN),
                                       std=fit(IMAGENET_STD), channels=channels)
    if kind in ("cifar10", "cifar100"):
        m, s = (CIFAR10_MEAN, CIFAR10_STD) if kind == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
        return cifar_eval_transform(fit(m), fit(s), channels=channels)
    if kind == "none":
        return to_tensor_transform(channels=channels)
    return EvalTransform(resize=resize, crop=crop, interpolation=interpolation,
                         mean=None if mean is None else tuple(mean), std=None if std is None else tuple(std),
                         channels=channels)


def _resize_shorter_side(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Resize so the shorter side is ``size``; the longer side as torchvision computes it (truncated)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), resample)


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    """Square center crop with torchvision's offsets (``round`` of half the margin)."""
    w, h = img.size
    if size > w or size > h:
        raise ValueError(f"cannot center-crop {size}x{size} from a {w}x{h} image; resize it first")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _to_tensor(img: Image.Image) -> Tensor:
    """``uint8`` PIL image (L or RGB) -> float32 tensor ``[C, H, W]`` in ``[0, 1]``."""
    arr = np.array(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)
