"""Checkpoint loading: every official format, prefixes, config inference, one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from hwsearch.checkpoints import load_model, match_config, read_checkpoint
from hwsearch.errors import CheckpointError, UnknownNameError
from search_spaces import MODELS, get_config, list_models

OFFICIAL = [n for n in list_models() if get_config(n).official_params is not None]
FORMATS = ["bare", "timm", "mae", "torchvision", "ddp", "compiled"]


def _random_state_dict(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A random state_dict of the configuration, without initialising a real model."""
    with torch.device("meta"):
        model = get_config(name).build()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, t in model.state_dict().items():
        if t.dtype.is_floating_point:
            out[key] = torch.randn(t.shape, generator=gen)
        else:
            out[key] = torch.randint(0, 100, t.shape, generator=gen, dtype=t.dtype)
    return out


def _wrap(sd: dict[str, torch.Tensor], fmt: str, arch: str) -> object:
    if fmt == "bare":
        return sd
    if fmt == "timm":
        return {"epoch": 3, "arch": arch, "version": 2, "state_dict": sd, "optimizer": {"state": {}},
                "args": argparse.Namespace(lr=0.1, model=arch), "metric": 71.2}
    if fmt == "mae":
        return {"model": sd, "optimizer": {}, "epoch": 9, "scaler": {}, "args": argparse.Namespace(T=4)}
    if fmt == "torchvision":
        return {"model": sd, "optimizer": {}, "lr_scheduler": {}, "epoch": 1, "max_test_acc1": 80.1}
    if fmt == "ddp":
        return {"state_dict": {f"module.{k}": v for k, v in sd.items()}}
    if fmt == "compiled":
        return {f"_orig_mod.module.{k}": v for k, v in sd.items()}
    raise AssertionError(fmt)


def test_all_22_official_configs_are_registered() -> None:
    assert len(OFFICIAL) == 22


@pytest.mark.parametrize("name", OFFICIAL)
def test_random_checkpoint_round_trips_in_every_format(name: str, tmp_path: Path) -> None:
    sd = _random_state_dict(name, seed=len(name))
    arch = get_config(name).arch_names[0]
    # Every format is read and matched; the model is built and strictly loaded for one rotating format
    # (building all 22 full-size models four times over would dominate the suite's run time).
    build_fmt = FORMATS[OFFICIAL.index(name) % len(FORMATS)]
    for fmt in FORMATS:
        path = tmp_path / f"{fmt}.pth"
        torch.save(_wrap(sd, fmt, arch), path)
        ckpt = read_checkpoint(path)
        assert set(ckpt.state_dict) == set(sd)
        assert match_config(ckpt) == name  # inferred from keys + shapes (+ arch when present)
        if fmt == build_fmt:
            loaded = load_model(path)
            assert loaded.config == name
            got = loaded.model.state_dict()
            assert set(got) == set(sd)
            assert all(torch.equal(got[k], sd[k]) for k in sd)
        path.unlink()


def test_dead_parameters_may_be_absent(tmp_path: Path) -> None:
    sd = _random_state_dict("spikformer-cifar10-4-256", seed=1)
    dead = [k for k in sd if ".norm1." in k or ".norm2." in k]
    assert dead
    for k in dead:
        del sd[k]
    torch.save(sd, tmp_path / "c.pth")
    loaded = load_model(tmp_path / "c.pth", "spikformer-cifar10-4-256")
    assert torch.equal(loaded.model.state_dict()["block.0.norm1.weight"], torch.ones(256))


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found") as e:
        read_checkpoint(tmp_path / "nope.pth")
    assert "\n" not in str(e.value)


def test_corrupt_file_is_a_one_line_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.pth"
    p.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as e:
        read_checkpoint(p)
    assert "\n" not in str(e.value)


def test_wrong_family_names_the_best_match(tmp_path: Path) -> None:
    torch.save(_random_state_dict("qkformer-cifar10-4-384", seed=2), tmp_path / "qk.pth")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "qk.pth", "spikformer-cifar10-4-384")
    msg = str(e.value)
    assert "\n" not in msg
    assert "does not match 'spikformer-cifar10-4-384'" in msg
    assert "qkformer-cifar10-4-384" in msg  # the configuration that does match


def test_wrong_size_names_missing_and_misshaped_keys(tmp_path: Path) -> None:
    torch.save(_random_state_dict("spikformer-cifar10-2-384", seed=3), tmp_path / "s.pth")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "s.pth", "spikformer-cifar10-4-256")
    msg = str(e.value)
    assert "missing block.2." in msg and "expected [" in msg and "spikformer-cifar10-2-384" in msg


def test_unknown_config_suggests_close_names(tmp_path: Path) -> None:
    torch.save(_random_state_dict("spikformer-cifar10-4-256", seed=4), tmp_path / "s.pth")
    with pytest.raises(UnknownNameError, match="did you mean 'spikformer-cifar10-4-256'"):
        load_model(tmp_path / "s.pth", "spikformer-cifar10-4-265")


def test_non_state_dict_is_refused(tmp_path: Path) -> None:
    torch.save([1, 2, 3], tmp_path / "l.pth")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        read_checkpoint(tmp_path / "l.pth")


def test_arbitrary_pickles_are_not_executed(tmp_path: Path) -> None:
    """weights_only=True: a pickled object other than tensors/containers is refused, not run."""

    class Evil:
        def __reduce__(self):  # pragma: no cover - must never run
            return (exec, ("raise SystemExit(99)",))

    torch.save({"state_dict": {"w": torch.ones(1)}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "evil.pth")


def test_registry_has_no_duplicate_signatures() -> None:
    """Config inference is unambiguous: no two registered configs share a key/shape signature."""
    from hwsearch.checkpoints import _expected_shapes

    sigs = {}
    for name in MODELS.list():
        sig = tuple(sorted(_expected_shapes(name).items()))
        assert sig not in sigs, f"{name} and {sigs.get(sig)} are indistinguishable"
        sigs[sig] = name
