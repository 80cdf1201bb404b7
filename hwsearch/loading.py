"""From a study to ready objects: the loaded model and the datasets of its splits."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from hwsearch.checkpoints import LoadedModel, load_model
from hwsearch.errors import StudyError
from hwsearch.study import Study

__all__ = ["load_study_model", "study_dataset", "parse_split", "split_indices_digest"]

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
    to_int = lambda t: int(t) if t not in ("", "-") else None  # noqa: E731
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
    kwargs = {**study.model_args, **overrides}
    return load_model(study.require_checkpoint(), study.model, **kwargs)


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
            kwargs.update(root=folder.parent, split=folder.name, transform=spec.transform)
            if (spec.transform or "imagenet") == "imagenet":
                kwargs["img_size"] = spec.img_size
        else:
            kwargs["root"] = folder
    ds = build_dataset(spec.dataset, **kwargs)
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
