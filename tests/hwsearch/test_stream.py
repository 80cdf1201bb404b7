"""Streamed evaluation batches (hwsearch/data/_stream.py): uint8 until normalised, equal to the per-image path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from hwsearch.data import ArrayDataset, EvalBatches, build_dataset, count_samples, make_loader, stream_batches


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13 RGB images of assorted sizes (some portrait, one grayscale) in 3 class folders."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(13):
        cls = root / "val" / f"c{i % 3}"
        cls.mkdir(parents=True, exist_ok=True)
        h, w = int(rng.integers(36, 60)), int(rng.integers(36, 60))
        if i == 5:
            Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(cls / f"{i}.png")
        else:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(cls / f"{i}.png")
    return root


def _per_image(ds, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:  # noqa: ANN001
    return [(x, y) for x, y in make_loader(ds, batch_size=batch_size)]


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_batches_equal_the_per_image_transform(folder: Path, workers: int) -> None:
    ds = build_dataset("imagefolder", root=folder, split="val", img_size=32)
    eb = stream_batches(ds, 4, workers=workers)
    assert eb.dataset[0][0].dtype == torch.uint8  # what the loader moves: pixels, not floats
    assert eb.normalize is not None and eb.normalize.mean == ds.transform.mean
    got, want = list(eb), _per_image(ds, 4)
    assert len(got) == len(want) == len(eb) == 4 and count_samples(eb) == 13
    for (x, y), (wx, wy) in zip(got, want, strict=True):
        assert x.dtype == torch.float32 and torch.equal(x, wx) and torch.equal(y, wy)


def test_staged_subset_batches_and_slices(folder: Path) -> None:
    ds = Subset(Subset(build_dataset("imagefolder", root=folder, split="val", img_size=32), [12, 0, 3, 4, 5, 6, 7, 9, 11]),
                [0, 2, 3, 4, 5, 6, 7, 8])
    eb = stream_batches(ds, 4, stages=(0.25, 0.25, 0.5), workers=0)
    assert eb.batches == ((12,), (3,), (4, 5), (6, 7, 9, 11))
    xs = torch.cat([x for x, _ in eb])
    assert torch.equal(xs, torch.cat([x for x, _ in _per_image(ds, 8)]))
    assert torch.equal(eb[2][0], xs[2:4]) and torch.equal(eb[-1][1], torch.tensor([ds[i][1] for i in range(4, 8)]))
    head = eb[:2]
    assert isinstance(head, EvalBatches) and head.batches == ((12,), (3,)) and len(list(head)) == 2


def test_cache_keeps_uint8_once_and_never_travels(folder: Path) -> None:
    ds = build_dataset("imagefolder", root=folder, split="val", img_size=32)
    eb = stream_batches(ds, 5, workers=0)
    first = list(eb)
    assert eb._cache is not None and all(x.dtype == torch.uint8 for x, _ in eb._cache)
    assert sum(x.numel() for x, _ in eb._cache) == 13 * 3 * 32 * 32  # 1 byte per pixel value
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, eb, strict=True))  # replayed from memory
    shipped = pickle.dumps(eb)
    assert pickle.loads(shipped)._cache is None and len(shipped) < 13 * 3 * 32 * 32  # a file list, no pixels
    tight = stream_batches(ds, 5, workers=0, cache_mb=1e-3)  # 1 kB: the split does not fit
    list(tight)
    assert tight._cache is None


def test_uint8_arrays_are_normalised_per_batch() -> None:
    x = np.random.default_rng(1).integers(0, 256, (7, 1, 8, 8), dtype=np.uint8)
    ds = ArrayDataset(x, [0, 1, 2, 3, 4, 5, 6])
    eb = stream_batches(ds, 3)
    assert eb.workers == 0 and eb.dataset[0][0].dtype == torch.uint8
    for (a, ya), (b, yb) in zip(eb, _per_image(ds, 3), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_search_setup_streams_its_splits(quick_study_path: Path, tmp_path: Path) -> None:
    from hwsearch.search.session import prepare

    setup = prepare(quick_study_path, run_dir=tmp_path, progress=False)
    assert isinstance(setup.spec.batches, EvalBatches) and isinstance(setup.test_batches, EvalBatches)
    assert [len(b) for b in setup.spec.batches.batches] == [30, 30, 60, 120]
    assert setup.baseline.samples == 240 and round(setup.baseline.accuracy, 2) == 99.17  # as before streaming
