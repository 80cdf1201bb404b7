"""The transforms a study names (``[data] transform``): exact steps, and no setting silently ignored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hwsearch.data import IMAGENET_MEAN, TRANSFORM_KINDS, named_transform


def _image(size: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_none_only_scales_pixels() -> None:
    img = _image()
    x = named_transform("none", img_size=32)(img)
    assert torch.equal(x, torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255)


def test_custom_resizes_crops_and_normalises_with_the_users_mean_and_std() -> None:
    img = _image()
    t = named_transform("custom", img_size=32, resize=36, crop=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    x = t(img)
    plain = named_transform("custom", img_size=32, resize=36, crop=32)(img)
    assert x.shape == (3, 32, 32) and plain.shape == (3, 32, 32)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)
    assert torch.allclose(x, (plain - mean) / 0.2, atol=1e-6)


def test_grayscale_models_read_grayscale_with_the_channel_mean() -> None:
    t = named_transform("imagenet", img_size=32, channels=1)
    assert t(_image(64)).shape == (1, 32, 32) and t.mean == (pytest.approx(sum(IMAGENET_MEAN) / 3),)


@pytest.mark.parametrize("kind", [k for k in TRANSFORM_KINDS if k != "custom"])
def test_custom_settings_with_another_kind_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="only apply to transform = 'custom'"):
        named_transform(kind, img_size=32, resize=40)
