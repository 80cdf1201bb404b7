"""From a study to ready objects: the loaded model and the datasets of its splits."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from hwsearch.checkpoints import LoadedModel, load_model
from hwsearch.errors import StudyError
from hwsearch.study import Study

__all__ = ["load_study_model", "study_dataset"]


def load_study_model(study: Study, **overrides: Any) -> LoadedModel:
    """Build the study's model and load its checkpoint strictly."""
    kwargs = {**study.model_args, **overrides}
    return load_model(study.require_checkpoint(), study.model, **kwargs)


def study_dataset(study: Study, split: str, *, subset: int | None = None) -> Dataset[Any]:
    """The dataset of ``split`` with the study's transforms; ``subset`` takes a seeded sample of it."""
    from hwsearch.data import build_dataset
    from search_spaces import get_config

    spec = study.data
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
    if subset is not None and subset < len(ds):  # type: ignore[arg-type]
        gen = torch.Generator().manual_seed(spec.seed)
        idx = torch.randperm(len(ds), generator=gen)[:subset].sort().values.tolist()  # type: ignore[arg-type]
        ds = Subset(ds, idx)
    return ds
