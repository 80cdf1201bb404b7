"""hwsearch.data: bundled digits splits, image folders, array/event files, eval transforms, factory."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hwsearch.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DIGITS_MEAN,
    DIGITS_NPZ,
    DIGITS_SHA256,
    DIGITS_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArrayDataset,
    EventDataset,
    ImageFolderDataset,
    build_dataset,
    cifar_eval_transform,
    digits_split_indices,
    digits_train_stats,
    imagenet_eval_transform,
    load_digits_split,
    make_loader,
)
from hwsearch.errors import DataError

DIGITS_FILE_SHA256 = "78a85852f7f6b2b5d209ab9b246a3f6783ba99bf264099704d8725980b7e0b97"


def one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


# ----------------------------------------------------------------------------- bundled digits


def test_digits_file_checksum() -> None:
    assert hashlib.sha256(DIGITS_NPZ.read_bytes()).hexdigest() == DIGITS_FILE_SHA256
    assert DIGITS_SHA256 == DIGITS_FILE_SHA256


def test_digits_file_content() -> None:
    with np.load(DIGITS_NPZ) as npz:
        images, labels = npz["images"], npz["labels"]
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.uint8
    assert (images.min(), images.max()) == (0, 16)
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_split_sizes() -> None:
    assert [len(digits_split_indices(s)) for s in ("train", "val", "test")] == [1077, 360, 360]
    assert [len(load_digits_split(s)) for s in ("train", "val", "test")] == [1077, 360, 360]


def test_digits_splits_disjoint_and_cover_all() -> None:
    parts = [set(digits_split_indices(s, seed=0).tolist()) for s in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(range(1797))


def test_digits_split_follows_seeded_permutation() -> None:
    perm = np.random.default_rng(0).permutation(1797)
    assert np.array_equal(digits_split_indices("train"), perm[:1077])
    assert np.array_equal(digits_split_indices("val"), perm[1077:1437])
    assert np.array_equal(digits_split_indices("test"), perm[1437:])


def test_digits_split_deterministic_per_seed() -> None:
    assert np.array_equal(digits_split_indices("val", seed=7), digits_split_indices("val", seed=7))
    assert not np.array_equal(digits_split_indices("val", seed=7), digits_split_indices("val", seed=8))
    a, b = load_digits_split("test", seed=1), load_digits_split("test", seed=2)
    assert not torch.equal(a.y, b.y)


def test_digits_labels_match_indices() -> None:
    with np.load(DIGITS_NPZ) as npz:
        labels = npz["labels"]
    ds = load_digits_split("val", seed=3)
    assert ds.y.tolist() == labels[digits_split_indices("val", seed=3)].tolist()


def test_digits_shapes_and_pixels() -> None:
    ds = load_digits_split("test")
    x, y = ds[5]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert isinstance(y, int) and 0 <= y <= 9
    with np.load(DIGITS_NPZ) as npz:
        raw = npz["images"][digits_split_indices("test")[5]]
    up = F.interpolate(torch.tensor(raw / 16.0, dtype=torch.float32)[None, None], size=(32, 32), mode="bilinear")
    torch.testing.assert_close(x, ((up - DIGITS_MEAN) / DIGITS_STD)[0])


def test_digits_other_size() -> None:
    assert load_digits_split("val", img_size=16)[0][0].shape == (1, 16, 16)


@pytest.mark.parametrize(("img_size", "seed"), [(32, 0), (16, 4)])
def test_digits_train_split_normalized(img_size: int, seed: int) -> None:
    x = load_digits_split("train", img_size=img_size, seed=seed).x.double()
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std(unbiased=False)) - 1.0) < 1e-4


def test_digits_stats_constants_match_file() -> None:
    mean, std = digits_train_stats()
    assert mean == pytest.approx(DIGITS_MEAN, abs=1e-9)
    assert std == pytest.approx(DIGITS_STD, abs=1e-9)
    assert (round(DIGITS_MEAN, 4), round(DIGITS_STD, 4)) == (0.3049, 0.3231)


def test_digits_unknown_split() -> None:
    with pytest.raises(DataError) as exc:
        load_digits_split("valid")
    assert all(s in one_line(exc) for s in ("'valid'", "train", "val", "test"))


# ----------------------------------------------------------------------------- image folder


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (6, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    write_png(root / "zebra" / "b.png", (0, 0, 255))
    write_png(root / "zebra" / "a.PNG", (0, 255, 0))
    write_png(root / "ant" / "x.png", (255, 0, 0))
    (root / "ant" / ".DS_Store").write_bytes(b"\0junk")
    return root


def test_imagefolder_classes_sorted_and_labels(folder: Path) -> None:
    ds = ImageFolderDataset(folder)
    assert ds.classes == ["ant", "zebra"] and ds.class_to_idx == {"ant": 0, "zebra": 1}
    assert [p.name for p, _ in ds.samples] == ["x.png", "a.PNG", "b.png"]
    assert ds.targets == [0, 1, 1]
    x, y = ds[1]
    assert (x.shape, y) == ((3, 4, 6), 1)
    assert x[:, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert ds.verify() == 3


def test_imagefolder_applies_transform(folder: Path) -> None:
    ds = ImageFolderDataset(folder, cifar_eval_transform(channels=1, mean=(0.5,), std=(0.25,)))
    x, _ = ds[0]
    assert x.shape == (1, 4, 6)
    # Pillow's L conversion of pure red is 255 * 299 / 1000, rounded: 76.
    assert x[0, 0, 0].item() == pytest.approx((76 / 255 - 0.5) / 0.25)


def test_imagefolder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        ImageFolderDataset(tmp_path / "nope")
    assert "does not exist" in one_line(exc) and "nope" in one_line(exc)


def test_imagefolder_empty_root(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        ImageFolderDataset(tmp_path)
    assert "no class subfolders" in one_line(exc) and "ROOT/<class>/<image>" in one_line(exc)


def test_imagefolder_flat_layout(tmp_path: Path) -> None:
    write_png(tmp_path / "ILSVRC2012_val_00000001.JPEG", (1, 2, 3))
    with pytest.raises(DataError) as exc:
        ImageFolderDataset(tmp_path)
    assert "ILSVRC2012_val_00000001.JPEG" in one_line(exc)


def test_imagefolder_empty_class(folder: Path) -> None:
    (folder / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        ImageFolderDataset(folder)
    assert "empty" in one_line(exc) and "no images" in one_line(exc)


def test_imagefolder_non_image_file(folder: Path) -> None:
    (folder / "zebra" / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as exc:
        ImageFolderDataset(folder)
    assert "notes.txt" in one_line(exc) and "remove it" in one_line(exc)


def test_imagefolder_corrupt_image(folder: Path) -> None:
    (folder / "zebra" / "c.png").write_bytes(b"not a png at all" * 8)
    ds = ImageFolderDataset(folder)  # scanning does not decode
    with pytest.raises(DataError) as exc:
        ds[3]
    assert "c.png" in one_line(exc)
    with pytest.raises(DataError) as exc:
        ds.verify()
    assert "c.png" in one_line(exc) and "remove or replace" in one_line(exc)


# ----------------------------------------------------------------------------- arrays and events


def test_array_dataset_uint8_scaled() -> None:
    x = np.arange(2 * 1 * 2 * 2, dtype=np.uint8).reshape(2, 1, 2, 2) * 50
    ds = ArrayDataset(x, np.array([1, 0], dtype=np.uint8))
    img, label = ds[1]
    assert img.dtype == torch.float32 and label == 0
    torch.testing.assert_close(img, torch.tensor(x[1], dtype=torch.float32) / 255)
    assert ds.num_classes == 2


@pytest.mark.parametrize(
    ("x", "y", "needle"),
    [
        (np.zeros((3, 8, 8)), [0, 1, 2], "[N, C, H, W]"),
        (np.zeros((3, 1, 8, 8), np.int32), [0, 1, 2], "uint8"),
        (np.zeros((3, 1, 8, 8)), [0, 1], "[N] = [3]"),
        (np.zeros((3, 1, 8, 8)), [0.0, 1.0, 2.0], "integers"),
        (np.zeros((3, 1, 8, 8)), [0, -1, 2], "non-negative"),
    ],
)
def test_array_dataset_rejects(x: np.ndarray, y: list[float], needle: str) -> None:
    with pytest.raises(DataError) as exc:
        ArrayDataset(x, y)
    assert needle in one_line(exc)


def test_event_dataset_from_npz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 5, size=(4, 3, 2, 8, 8)).astype(np.int16)
    np.savez(tmp_path / "val.npz", x=x, y=np.array([3, 1, 0, 2]))
    ds = EventDataset.from_npz(tmp_path / "val.npz")
    frames, label = ds[0]
    assert frames.shape == (3, 2, 8, 8) and frames.dtype == torch.float32 and label == 3
    torch.testing.assert_close(frames, torch.tensor(x[0], dtype=torch.float32))  # counts, not rescaled


@pytest.mark.parametrize("shape", [(4, 2, 8, 8), (4, 3, 3, 8, 8)])
def test_event_dataset_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataError) as exc:
        EventDataset(np.zeros(shape, np.float32), [0, 1, 2, 3])
    assert "[N, T, 2, H, W]" in one_line(exc) and str(list(shape)) in one_line(exc)


def test_npz_missing_key_and_garbage(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", images=np.zeros((1, 1, 2, 2)), y=[0])
    with pytest.raises(DataError) as exc:
        ArrayDataset.from_npz(tmp_path / "a.npz")
    assert "'x'" in one_line(exc) and "images" in one_line(exc)
    (tmp_path / "b.npz").write_bytes(b"garbage")
    with pytest.raises(DataError) as exc:
        ArrayDataset.from_npz(tmp_path / "b.npz")
    assert "b.npz" in one_line(exc)
    with pytest.raises(DataError) as exc:
        ArrayDataset.from_npz(tmp_path / "c.npz")
    assert "does not exist" in one_line(exc)


# ----------------------------------------------------------------------------- transforms


def test_imagenet_transform_matches_hand_computation() -> None:
    # 400x320 image: color A everywhere, color B in the box x, y in [100, 200).
    a, b = (200, 40, 10), (10, 120, 250)
    arr = np.empty((320, 400, 3), np.uint8)
    arr[:] = a
    arr[100:200, 100:200] = b
    out = imagenet_eval_transform()(Image.fromarray(arr))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32

    def normalized(color: tuple[int, int, int]) -> torch.Tensor:
        return torch.tensor([(c / 255 - m) / s for c, m, s in zip(color, IMAGENET_MEAN, IMAGENET_STD)])

    # Shorter side 320 -> 256 (scale 0.8), so 400 -> 320; crop offsets round(32/2)=16, round(96/2)=48.
    # The box lands at 0.8*[100, 200) - offset: rows [64, 144), cols [32, 112); bicubic blurs ~2 px.
    inside = out[:, 67:141, 35:109]
    outside = out[:, 150:, 120:]
    torch.testing.assert_close(inside, normalized(b).view(3, 1, 1).expand_as(inside), atol=1e-6, rtol=0)
    torch.testing.assert_close(outside, normalized(a).view(3, 1, 1).expand_as(outside), atol=1e-6, rtol=0)
    assert torch.allclose(out[:, 100, 29], normalized(a), atol=1e-6)  # left of the box edge (col 32)
    assert torch.allclose(out[:, 61, 70], normalized(a), atol=1e-6)  # above the box edge (row 64)

    # Pixel-exact against the same steps done by hand with Pillow and numpy.
    resized = np.asarray(Image.fromarray(arr).resize((320, 256), Image.Resampling.BICUBIC), np.float32)
    crop = resized[16:240, 48:272] / 255
    expected = (crop - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    torch.testing.assert_close(out, torch.from_numpy(expected).permute(2, 0, 1), atol=1e-6, rtol=0)


def test_imagenet_transform_sizes_and_grayscale() -> None:
    t = imagenet_eval_transform(
        img_size=32, crop_pct=0.9, interpolation="bilinear", mean=(0.5,), std=(0.5,), channels=1
    )
    assert (t.resize, t.crop) == (35, 32)
    out = t(Image.new("RGB", (50, 90), (255, 255, 255)))
    assert out.shape == (1, 32, 32)
    torch.testing.assert_close(out, torch.ones(1, 32, 32))


@pytest.mark.parametrize(("mean", "std"), [(CIFAR10_MEAN, CIFAR10_STD), (CIFAR100_MEAN, CIFAR100_STD)])
def test_cifar_transform_exact(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    arr = np.random.default_rng(1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    out = cifar_eval_transform(mean, std)(Image.fromarray(arr))
    assert out.shape == (3, 32, 32)
    expected = (arr.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    torch.testing.assert_close(out, torch.from_numpy(expected).permute(2, 0, 1).float(), atol=1e-5, rtol=0)
    assert CIFAR10_MEAN == (0.4914, 0.4822, 0.4465) and CIFAR100_STD == (0.2673, 0.2564, 0.2762)


def test_transforms_pickle_and_validate() -> None:
    t = imagenet_eval_transform(img_size=96)
    assert pickle.loads(pickle.dumps(t)) == t
    with pytest.raises(ValueError, match="channel"):
        cifar_eval_transform(channels=1)  # three-value mean for one channel
    with pytest.raises(ValueError, match="interpolation"):
        imagenet_eval_transform(interpolation="cubic")


# ----------------------------------------------------------------------------- factory and loader


def test_build_dataset_unknown_kind() -> None:
    with pytest.raises(DataError) as exc:
        build_dataset("imagefoldr", split="val")
    assert "did you mean 'imagefolder'" in one_line(exc)


def test_build_dataset_unknown_option() -> None:
    with pytest.raises(DataError) as exc:
        build_dataset("digits", split="val", sed=1)
    assert "'sed'" in one_line(exc) and "seed" in one_line(exc)


def test_build_dataset_digits() -> None:
    ds = build_dataset("digits", split="val", img_size=16, seed=2)
    assert isinstance(ds, ArrayDataset) and ds.x.shape == (360, 1, 16, 16)
    assert torch.equal(ds.y, load_digits_split("val", seed=2).y)


def test_build_dataset_imagefolder(folder: Path, tmp_path: Path) -> None:
    ds = build_dataset("imagefolder", split="imgs", root=tmp_path, img_size=8)
    assert isinstance(ds, ImageFolderDataset) and ds[0][0].shape == (3, 8, 8)
    cifar = build_dataset("imagefolder", split="imgs", root=tmp_path, transform="cifar100")
    red = [(c - m) / s for c, m, s in zip((1, 0, 0), CIFAR100_MEAN, CIFAR100_STD)]
    assert cifar[0][0][:, 0, 0].tolist() == pytest.approx(red)
    with pytest.raises(DataError) as exc:
        build_dataset("imagefolder", split="val", root=tmp_path)
    assert "no folder" in one_line(exc)
    with pytest.raises(DataError) as exc:
        build_dataset("imagefolder", split="imgs", root=tmp_path, transform="cifar")
    assert "did you mean" in one_line(exc)


def test_build_dataset_npz_and_events(tmp_path: Path) -> None:
    np.savez(tmp_path / "test.npz", x=np.zeros((5, 3, 4, 4), np.float32), y=np.arange(5))
    assert len(build_dataset("npz", split="test", root=tmp_path)) == 5
    assert len(build_dataset("npz", split="test", root=tmp_path / "test.npz")) == 5
    with pytest.raises(DataError) as exc:
        build_dataset("events", split="test", root=tmp_path)
    assert "[N, T, 2, H, W]" in one_line(exc) and "test.npz" in one_line(exc)


def test_make_loader_seeded() -> None:
    ds = ArrayDataset(np.zeros((20, 1, 2, 2), np.float32), np.arange(20))

    def order(seed: int) -> list[int]:
        return torch.cat([y for _, y in make_loader(ds, 6, shuffle=True, seed=seed)]).tolist()

    assert order(0) == order(0) and order(0) != order(1) and sorted(order(1)) == list(range(20))
    batches = list(make_loader(ds, 6))
    assert [len(b[1]) for b in batches] == [6, 6, 6, 2] and batches[0][1].tolist() == list(range(6))
