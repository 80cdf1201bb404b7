"""From a study to ready objects: the loaded model and the datasets of its splits."""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from hwsearch.checkpoints import LoadedModel, load_model
from hwsearch.errors import DataError, StudyError
from hwsearch.study import Study

__all__ = ["load_study_model", "study_dataset", "study_transform", "check_input_size", "parse_split",
           "split_indices_digest"]

log = logging.getLogger(__name__)

_SLICE = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


def parse_split(split: str) -> tuple[str, slice | None]:
    """``"val[:240]"`` -> ``("val", slice(None, 240))``; ``"val"`` -> ``("val", None)``.

    A slice selects positions of a seeded permutation of the split (the study's ``data.seed``), so
    disjoint slices of one split (``val[:240]`` to search on, ``val[240:]`` to confirm on) hold disjoint,
    class-balanced-in-expectation samples.
    """
    m = _SLICE.match(split)
    if m is None:
        if "[" in split or "]" in split:
            raise StudyError(f"bad split {split!r}; write NAME or NAME[START:STOP], e.g. val[:240]")
        return split, None

    def to_int(t: str) -> int | None:
        return int(t) if t not in ("", "-") else None

    return m.group("name"), slice(to_int(m.group("start")), to_int(m.group("stop")))


def split_indices_digest(ds: Dataset[Any]) -> str:
    """A short digest of which samples a (possibly subset) dataset holds: part of cache keys."""
    import hashlib

    idx: list[int] = list(range(len(ds)))  # type: ignore[arg-type]
    while isinstance(ds, Subset):  # resolve nested subsets to indices of the underlying dataset
        idx = [int(ds.indices[i]) for i in idx]
        ds = ds.dataset
    return hashlib.sha256(",".join(map(str, idx)).encode()).hexdigest()[:16] + f"/{len(idx)}"


def load_study_model(study: Study, **overrides: Any) -> LoadedModel:
    """Build the study's model and load its checkpoint strictly."""
    return load_model(study.require_checkpoint(), study.model, **overrides)


def study_transform(study: Study) -> Any:
    """The image-folder transform the study's ``[data]`` names, for its model's input size and channels.

    No ``transform`` means ``imagenet`` (timm's resize + crop) for a 224-pixel model and ``none`` (pixels
    as stored, scaled to [0, 1]) otherwise; the choice is logged, and :func:`check_input_size` turns a
    resulting size mismatch into an error naming both sizes.
    """
    from hwsearch.data import named_transform
    from search_spaces import get_config

    spec = study.data
    shape = get_config(study.model).input_shape
    channels = shape[-3] if len(shape) >= 3 else 3
    size = spec.img_size or (shape[-1] if shape else 224)
    kind = spec.transform
    if kind is None:
        kind = "imagenet" if size == 224 else "none"
        log.warning("study %s sets no [data] transform; using %r for %d px images (set transform = ... to choose: "
                    "imagenet, cifar10, cifar100, none, custom)", study.path, kind, size)
    try:
        return named_transform(kind, img_size=size, channels=channels if channels in (1, 3) else 3,
                               resize=spec.resize, crop=spec.crop, interpolation=spec.interpolation,
                               mean=None if spec.mean is None else tuple(spec.mean),
                               std=None if spec.std is None else tuple(spec.std))
    except ValueError as e:
        raise StudyError(f"bad transform in [data] of {study.path}: {e}") from None


def check_input_size(study: Study, ds: Dataset[Any], split: str) -> None:
    """Raise a DataError naming both shapes when the split's samples do not fit the study's model."""
    from search_spaces import get_config

    want = tuple(get_config(study.model).input_shape)
    if not want or len(ds) == 0:  # type: ignore[arg-type]
        return
    got = tuple(ds[0][0].shape)
    if got == want:
        return
    fix = ("set transform = \"custom\" with resize/crop, or transform = \"imagenet\" (img_size) in [data]"
           if study.data.dataset == "imagefolder" else "store the arrays at the model's size")
    if len(got) == len(want) and got[0] != want[0] and got[1:] == want[1:]:
        fix = f"give the model in_channels = {got[0]} ([model_config]) or convert the images"
    raise DataError(f"split '{split}' gives inputs of {'x'.join(map(str, got))} but model '{study.model}' takes "
                    f"{'x'.join(map(str, want))}; {fix}")


def study_dataset(study: Study, split: str, *, subset: int | None = None) -> Dataset[Any]:
    """The dataset of ``split`` with the study's transforms; ``subset`` takes a seeded sample of it."""
    from hwsearch.data import build_dataset
    from search_spaces import get_config

    spec = study.data
    split, part = parse_split(split)
    kwargs: dict[str, Any] = {"split": split}
    if spec.dataset == "digits":
        cfg = get_config(study.model)
        kwargs.update(seed=spec.seed, img_size=spec.img_size or (cfg.input_shape[-1] if cfg.input_shape else None))
    else:
        if split not in spec.splits:
            known = ", ".join(spec.splits) or "none"
            raise StudyError(f"study {study.path} has no data split '{split}' (known: {known}); add it under [data.splits]")
        folder = spec.splits[split]
        # A split maps to its own folder or file: the factory reads ROOT/<split>, so pass parent + name.
        if spec.dataset == "imagefolder":
            kwargs.update(root=folder.parent, split=folder.name, transform=study_transform(study))
        else:
            kwargs["root"] = folder
    ds = build_dataset(spec.dataset, **kwargs)
    check_input_size(study, ds, split)
    if part is not None:
        gen = torch.Generator().manual_seed(spec.seed)
        idx = torch.randperm(len(ds), generator=gen)[part].sort().values.tolist()  # type: ignore[arg-type]
        if not idx:
            raise StudyError(f"split {split}[{part.start}:{part.stop}] of {study.path} holds no samples "
                             f"({split} has {len(ds)}); pick a slice within 0..{len(ds)}")  # type: ignore[arg-type]
        ds = Subset(ds, idx)
    if subset is not None and subset < len(ds):  # type: ignore[arg-type]
        gen = torch.Generator().manual_seed(spec.seed)
        idx = torch.randperm(len(ds), generator=gen)[:subset].sort().values.tolist()  # type: ignore[arg-type]
        ds = Subset(ds, idx)
    return ds
