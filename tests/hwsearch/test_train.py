"""Training is seeded: the same seed gives the same weights; the checkpoint is in the official format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from hwsearch.checkpoints import load_model, read_checkpoint
from hwsearch.study import load_study
from hwsearch.train import random_shift, train_model


def _quick(study_path: Path, out: Path | None, seed: int = 0):
    study = load_study(study_path)
    study = study.replace(train=dataclasses.replace(study.train, seed=seed, batch_size=16))
    return train_model(study, epochs=1, out=out, train_limit=48, eval_limit=24, progress=False)


def test_same_seed_same_weights_and_official_format(demo_study_path: Path, tmp_path: Path) -> None:
    m1, r1 = _quick(demo_study_path, tmp_path / "a.pth")
    m2, _ = _quick(demo_study_path, None)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    m3, _ = _quick(demo_study_path, None, seed=1)
    assert not torch.equal(s1["head.weight"], m3.state_dict()["head.weight"])
    ckpt = read_checkpoint(r1.checkpoint)
    assert ckpt.fmt == "timm" and ckpt.arch == "spikformer"
    loaded = load_model(r1.checkpoint)  # configuration inferred from keys + shapes
    assert loaded.config == "spikformer-digits-2-64"
    assert all(torch.equal(loaded.model.state_dict()[k], s1[k]) for k in s1)


def test_random_shift_moves_pixels_within_bounds() -> None:
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    for img in y:
        (r, c), = torch.nonzero(img[0]).tolist()
        assert abs(r - 4) <= 2 and abs(c - 4) <= 2
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)
