"""Surrogate-gradient training of a study's model from scratch (``hwsearch train``).

Deterministic for a seed on a given machine: the weights, the shuffling and the augmentation all draw
from seeded generators, and nothing seeds at import. The best epoch (by top-1 on the study's eval split)
is saved in timm's checkpoint layout, the format of the official Spikformer checkpoints.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from hwsearch.progress import progress_bar

from hwsearch.checkpoints import save_checkpoint
from hwsearch.loading import study_dataset
from hwsearch.search.metrics import top1_accuracy
from hwsearch.study import Study

__all__ = ["TrainResult", "train_model", "random_shift"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainResult:
    """Outcome of :func:`train_model`."""

    checkpoint: Path | None
    best_epoch: int
    val_top1: float
    test_top1: float
    seconds: float


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding), drawn from ``gen``."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    offs = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=gen)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offs.tolist())])


def _loader(ds: torch.utils.data.Dataset[Any], batch_size: int, *, shuffle: bool,
            seed: int) -> torch.utils.data.DataLoader[Any]:
    from hwsearch.data import make_loader

    return make_loader(ds, batch_size=batch_size, shuffle=shuffle, seed=seed)


def train_model(
    study: Study,
    *,
    epochs: int | None = None,
    out: str | Path | None = None,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, TrainResult]:
    """Train ``study.model`` from random init on the study's train split; save the best epoch.

    Args:
        study: the study (model, data, ``[train]`` recipe).
        epochs: overrides ``study.train.epochs``.
        out: checkpoint path to write (None: do not save).
        train_limit: train on only the first N samples of the train split (for quick checks).
        eval_limit: measure val/test top-1 on seeded subsets of N samples (for quick checks).
        progress: show a progress bar.
        device: where to train (``cpu``, ``cuda``; resolve user input with
            :func:`hwsearch.devices.resolve_device`). The saved model is on the CPU.

    Returns:
        The best model (eval mode) and a :class:`TrainResult`.
    """
    from search_spaces import get_config

    spec = study.train
    n_epochs = spec.epochs if epochs is None else epochs
    t0 = time.perf_counter()
    torch.manual_seed(spec.seed)
    cfg = get_config(study.model)
    model = cfg.build().to(device)
    train_ds = study_dataset(study, spec.train_split)
    if train_limit is not None:
        train_ds = torch.utils.data.Subset(train_ds, range(min(train_limit, len(train_ds))))  # type: ignore[arg-type]
    val_ds = study_dataset(study, study.data.eval_split, subset=eval_limit)
    test_ds = study_dataset(study, study.data.test_split, subset=eval_limit)
    train_loader = _loader(train_ds, spec.batch_size, shuffle=True, seed=spec.seed)
    aug_gen = torch.Generator().manual_seed(spec.seed + 1)

    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    steps = max(1, n_epochs * len(train_loader))
    warmup = min(len(train_loader), steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
    )
    best_acc, best_epoch, best_state = -1.0, -1, copy.deepcopy(model.state_dict())
    bar = progress_bar(total=n_epochs * len(train_loader), desc=f"train {study.model}", enabled=progress, unit="batch")
    for epoch in range(n_epochs):
        model.train()
        total_loss, n = 0.0, 0
        bar.set_description(f"train {study.model} epoch {epoch + 1}/{n_epochs}", refresh=False)
        for x, y in train_loader:
            x = random_shift(x, spec.max_shift, aug_gen).to(device)
            y = y.to(device)
            functional.reset_net(model)
            loss = F.cross_entropy(model(x), y, label_smoothing=spec.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
            opt.step()
            sched.step()
            functional.reset_net(model)
            total_loss += float(loss.detach()) * len(y)
            n += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss / n:.3f}", best=f"{max(best_acc, 0):.2f}", refresh=False)
        val = top1_accuracy(model, _loader(val_ds, 256, shuffle=False, seed=0), device=device)
        if val > best_acc:
            best_acc, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{total_loss / max(n, 1):.3f}", val=f"{val:.2f}", best=f"{best_acc:.2f}", refresh=False)
        log.info("epoch %d loss %.4f val %.2f", epoch, total_loss / max(n, 1), val)
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    test = top1_accuracy(model, _loader(test_ds, 256, shuffle=False, seed=0), device=device)
    model = model.cpu()
    path = None
    if out is not None:
        path = save_checkpoint(
            model, out, arch=cfg.arch_names[0] if cfg.arch_names else cfg.family, epoch=best_epoch,
            metric=best_acc, hwsearch_config=cfg.name, hwsearch_model=cfg.to_dict(), seed=spec.seed,
        )
    return model, TrainResult(
        checkpoint=path, best_epoch=best_epoch, val_top1=best_acc, test_top1=test, seconds=time.perf_counter() - t0
    )
