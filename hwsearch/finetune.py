"""Recovery fine-tuning of a pruned model, with knowledge distillation from the unpruned one.

PrimeSVT and PSViT report every pruned model twice: without and with a short fine-tuning (PrimeSVT:
70.3 % -> 72.9 %). :func:`finetune` trains the pruned model on the study's training split with surrogate
gradients (spikingjelly's path: the fast LIF inference path is for no-grad only) and, by default, logit
distillation from the unpruned model (``loss="kd"``: ``alpha * T^2 * KL(student/T || teacher/T) +
(1 - alpha) * CE``; ``loss="ce"``: cross-entropy alone). The epoch kept is the best on the eval split,
epoch 0 (the model as pruned) included, so fine-tuning never hands back a model worse on the split it
selects on.

Deterministic for a seed on a given machine: each epoch's shuffling and augmentation draw from
generators seeded by (seed, epoch), and the state after every epoch (weights, optimiser, scheduler,
best so far) is written atomically to ``finetune-state.pt`` in the output folder, so a killed run
resumes (``resume=True``) and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional

from hwsearch.atomic import atomic_write_text
from hwsearch.errors import UserError
from hwsearch.search.metrics import top1_accuracy
from hwsearch.progress import progress_bar
from hwsearch.pruning import keep_ratio_loss, learn_token_scores, selectors
from hwsearch.study import Study

__all__ = ["FinetuneResult", "finetune", "finetune_run", "finetune_run_answer", "LOSSES", "TOKEN_SELECTORS", "STATE_FILE",
           "SUMMARY_FILE", "distillation_loss"]

log = logging.getLogger(__name__)

LOSSES: tuple[str, ...] = ("kd", "ce")
#: token scores a fine-tuning may give the pruned model (``learned``: SPViT's trained selector)
TOKEN_SELECTORS: tuple[str, ...] = ("as-pruned", "learned")
STATE_FILE = "finetune-state.pt"
SUMMARY_FILE = "finetune.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class FinetuneResult:
    """Top-1 (percent) of the pruned model before and after fine-tuning, and how it was fine-tuned.

    ``*_before`` is the model as pruned, ``*_after`` the kept epoch (``best_epoch``, 0 = as pruned);
    confirm values are None when the study has no confirmation split.
    """

    model_dir: str
    out_dir: str
    loss: str
    epochs: int
    best_epoch: int
    lr: float
    temperature: float
    alpha: float
    seed: int
    eval_before: float
    eval_after: float
    confirm_before: float | None
    confirm_after: float | None
    test_before: float
    test_after: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneResult:
        """The result a ``finetune.json`` holds (unknown keys ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, *,
                      temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al.'s logit distillation: ``alpha * T^2 * KL + (1 - alpha) * CE``."""
    t = float(temperature)
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean",
                  log_target=True)
    return alpha * t * t * kl + (1.0 - alpha) * F.cross_entropy(student, target)


def _batches(study: Study, split: str, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from hwsearch.data import make_loader
    from hwsearch.loading import study_dataset

    return list(make_loader(study_dataset(study, split), batch_size=batch_size))


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def finetune(study: Study, model_dir: str | Path, *, epochs: int = 3, loss: str = "kd", lr: float | None = None,
             temperature: float = 4.0, alpha: float = 0.5, seed: int = 0, out: str | Path | None = None,
             resume: bool = False, train_limit: int | None = None, progress: bool = True,
             token_selector: str = "as-pruned", ratio_weight: float = 0.1) -> tuple[nn.Module, FinetuneResult]:
    """Fine-tune the pruned model in ``model_dir`` (a folder written by ``save_pruned``) on ``study``.

    Args:
        study: the study the model was pruned from (its checkpoint is the teacher; its splits the data).
        model_dir: the pruned model (e.g. ``RUN/best``).
        epochs: training epochs (>= 1).
        loss: ``kd`` (distillation from the unpruned model plus cross-entropy) or ``ce``.
        lr: AdamW learning rate (default: a quarter of the study's ``[train] lr``), cosine schedule.
        temperature / alpha: distillation temperature and weight of the distillation term.
        seed: seeds the shuffling and augmentation.
        out: output folder (default ``<model_dir>-finetuned``), same format as ``model_dir``.
        resume: continue from ``out/finetune-state.pt`` (refused when it was made with other settings).
        train_limit: train on the first N samples only (quick checks).
        token_selector: ``as-pruned`` keeps the model's token scores; ``learned`` gives every token selector
            SPViT's trainable multi-head scorer (initialised to rank like ``activity``) and trains it with the
            model, adding the computation-aware term ``ratio_weight * Σ (mean keep score - keep ratio)²``
            (the keep ratios are the ones the search fixed for the budget; :func:`~hwsearch.pruning._tokens.
            keep_ratio_loss`). The scorer learns through the score-weighted package token.

    Returns:
        The fine-tuned model (the best epoch on the eval split) and a :class:`FinetuneResult`.
    """
    from hwsearch.checkpoints import file_sha256
    from hwsearch.loading import load_study_model, study_dataset
    from hwsearch.pruning import load_pruned, save_pruned
    from hwsearch.train import _loader, random_shift

    if epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    if loss not in LOSSES:
        raise UserError(f"unknown --loss '{loss}'; use one of {', '.join(LOSSES)}")
    if not temperature > 0 or not 0.0 <= alpha <= 1.0:
        raise UserError(f"--temperature must be > 0 and --alpha in [0, 1], got {temperature:g} and {alpha:g}")
    model_dir = Path(model_dir)
    out_dir = Path(out) if out is not None else model_dir.with_name(model_dir.name + "-finetuned")
    state_path = out_dir / STATE_FILE
    if state_path.exists() and not resume:
        raise UserError(f"{out_dir} already holds a fine-tuning run; pass --resume to continue it or --out to start anew")
    if token_selector not in TOKEN_SELECTORS:
        raise UserError(f"unknown --token-selector '{token_selector}'; use one of {', '.join(TOKEN_SELECTORS)}")
    student = load_pruned(model_dir)
    if token_selector == "learned" and not learn_token_scores(student) and not selectors(student):
        raise UserError(f"the pruned model in {model_dir} prunes no tokens, so it has no token selector to learn; "
                        "search with --axes ...,tokens or drop --token-selector")
    plan = getattr(student, "hwsearch_plan", None)
    if plan is not None and plan.model and plan.model != study.model:
        raise UserError(f"the pruned model in {model_dir} comes from '{plan.model}' but the study's model is "
                        f"'{study.model}'; pass the study it was pruned from with --study")
    sha = file_sha256(study.require_checkpoint())
    if plan is not None and plan.checkpoint_sha256 and plan.checkpoint_sha256 != sha:
        raise UserError(f"the pruned model in {model_dir} was pruned from another checkpoint than {study.checkpoint}; "
                        "pass the study it was pruned from with --study")
    spec = study.train
    rate = float(lr) if lr is not None else spec.lr / 4
    settings = {"model_dir": str(model_dir.resolve()), "epochs": epochs, "loss": loss, "lr": rate,
                "temperature": temperature, "alpha": alpha, "seed": seed, "train_limit": train_limit,
                "checkpoint": sha, **({"token_selector": token_selector, "ratio_weight": ratio_weight}
                                      if token_selector != "as-pruned" else {})}
    teacher = load_study_model(study).model.eval() if loss == "kd" else None
    for p in teacher.parameters() if teacher is not None else ():
        p.requires_grad_(False)

    train_ds = study_dataset(study, spec.train_split)
    if train_limit is not None:
        train_ds = torch.utils.data.Subset(train_ds, range(min(train_limit, len(train_ds))))  # type: ignore[arg-type]
    evals = _batches(study, study.data.eval_split, 256)
    steps_per_epoch = math.ceil(len(train_ds) / spec.batch_size)  # type: ignore[arg-type]
    opt = torch.optim.AdamW(student.parameters(), lr=rate, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, epochs * steps_per_epoch) / (epochs * steps_per_epoch))))
    t0 = time.perf_counter()
    eval_before = top1_accuracy(student, evals)
    best_acc, best_epoch, best_weights = eval_before, 0, copy.deepcopy(student.state_dict())
    start = 1
    spent = 0.0
    if resume and state_path.exists():
        saved = torch.load(state_path, weights_only=True)
        if json.loads(saved["settings"]) != settings:
            raise UserError(f"the fine-tuning run in {out_dir} was made with other settings; use a new --out")
        student.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        best_acc, best_epoch, best_weights = float(saved["best_acc"]), int(saved["best_epoch"]), saved["best_weights"]
        start, spent = int(saved["epoch"]) + 1, float(saved["seconds"])
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = progress_bar(total=(epochs - start + 1) * steps_per_epoch, desc=f"finetune {loss}", enabled=progress, unit="step")
    for epoch in range(start, epochs + 1):
        student.train()
        loader = _loader(train_ds, spec.batch_size, shuffle=True, seed=seed * 100_003 + epoch)
        aug = torch.Generator().manual_seed(seed * 100_003 + epoch + 50_000)
        for x, y in loader:
            x = random_shift(x, spec.max_shift, aug)
            functional.reset_net(student)
            logits = student(x)
            if teacher is not None:
                with torch.no_grad():
                    functional.reset_net(teacher)
                    target = teacher(x)
                    functional.reset_net(teacher)
                objective = distillation_loss(logits, target, y, temperature=temperature, alpha=alpha)
            else:
                objective = F.cross_entropy(logits, y)
            ratio = keep_ratio_loss(student)
            if ratio is not None:
                objective = objective + ratio_weight * ratio
            opt.zero_grad(set_to_none=True)
            objective.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            opt.step()
            sched.step()
            functional.reset_net(student)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{float(objective.detach()):.3f}", refresh=False)
        acc = top1_accuracy(student, evals)
        log.info("fine-tune epoch %d: eval top-1 %.2f", epoch, acc)
        if acc > best_acc:
            best_acc, best_epoch, best_weights = acc, epoch, copy.deepcopy(student.state_dict())
        _save_state(state_path, {"settings": json.dumps(settings), "epoch": epoch, "model": student.state_dict(),
                                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                 "best_acc": best_acc, "best_epoch": best_epoch, "best_weights": best_weights,
                                 "seconds": spent + time.perf_counter() - t0})
    bar.close()
    before = load_pruned(model_dir)
    student.load_state_dict(best_weights)
    student.eval()
    confirm = _batches(study, study.data.confirm_split, 256) if study.data.confirm_split else []
    test = _batches(study, study.data.test_split, 256)
    result = FinetuneResult(
        model_dir=str(model_dir), out_dir=str(out_dir), loss=loss, epochs=epochs, best_epoch=int(best_epoch),
        lr=rate, temperature=temperature, alpha=alpha, seed=seed, eval_before=eval_before, eval_after=float(best_acc),
        confirm_before=top1_accuracy(before, confirm) if confirm else None,
        confirm_after=top1_accuracy(student, confirm) if confirm else None,
        test_before=top1_accuracy(before, test), test_after=top1_accuracy(student, test),
        seconds=spent + time.perf_counter() - t0)
    save_pruned(student, out_dir)
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(result.to_dict(), indent=1) + "\n")
    return student, result


def finetune_run(study: Study, run_dir: Path, *, top: int = 1, out: str | Path | None = None, resume: bool = False,
                 progress: bool = True, **settings: Any) -> list[FinetuneResult]:
    """Fine-tune a run directory's answer and the ``top - 1`` plans after it; add them to its report.

    The answer ``best/`` goes to ``best-finetuned/`` (or ``out``); each runner-up ``pareto/<key>/``
    (:mod:`hwsearch.reports.runplans`: the feasible Pareto front first, then plans that miss only the drop
    limit) has its pruned model built there and goes to ``pareto/<key>-finetuned/``. A folder holding
    a stopped fine-tuning run continues it when ``resume``. ``settings``: :func:`finetune`'s
    (``epochs``, ``loss``, ``lr``, ...). Returns one result per model, the answer first.
    """
    from hwsearch.reports.report import append_finetune_section
    from hwsearch.reports.runplans import materialize, runner_up_dirs

    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}")
    if top > 1 and out is not None:
        raise UserError("--out names one folder; with --top K each model is written next to its pruned one (drop --out)")
    dirs = [run_dir / "best", *runner_up_dirs(run_dir)[: top - 1]]
    results = []
    for model_dir in dirs:
        if model_dir.name != "best":
            materialize(study, model_dir)
        target = Path(out) if out is not None else model_dir.with_name(model_dir.name + "-finetuned")
        _, res = finetune(study, model_dir, out=target, resume=resume and (target / STATE_FILE).exists(),
                          progress=progress, **settings)
        results.append(res)
    if (run_dir / "report.md").is_file():
        append_finetune_section(run_dir, results)
    return results


def finetune_run_answer(study: Study, run_dir: Path, epochs: int, *, top: int = 1, resume: bool = False,
                        progress: bool = True) -> FinetuneResult:
    """Fine-tune a run directory's answer (and ``top - 1`` runners-up, see :func:`finetune_run`) with
    distillation, and add the with/without table to its report (what ``run`` and ``compare`` do with
    ``--finetune-epochs``); returns the answer's result."""
    return finetune_run(study, run_dir, top=top, epochs=epochs, resume=resume, progress=progress)[0]
