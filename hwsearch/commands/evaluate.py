"""``hwsearch evaluate``: top-1 of the study's checkpoint on a split, its parameters and memory."""

from __future__ import annotations

import argparse
import json

from hwsearch.commands._values import positive_int
from hwsearch.commands._base import Command, add_model_dir_argument, add_study_argument, pruned_from_args, study_from_args
from hwsearch.commands._compute import add_compute_options, compute_from_args


def _add(p: argparse.ArgumentParser) -> None:
    add_study_argument(p)
    add_model_dir_argument(p)
    p.add_argument("--split", default=None, help="data split to evaluate on (default: the study's test_split)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="evaluation batch size (default: the study's)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="evaluate on a seeded subset of N samples")
    p.add_argument("--firing-rates", action="store_true", help="also print the firing rate of every LIF layer")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16", "int8", "int4"],
                   help="deployment dtype for the parameter memory (default: the study's, fp32)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object instead of a table")
    add_compute_options(p)


def _run(args: argparse.Namespace) -> int:
    from hwsearch.data import stream_batches
    from hwsearch.loading import load_study_model, study_dataset
    from hwsearch.search.metrics import count_params, measure_firing_rates, param_memory_mb, top1_accuracy

    study = study_from_args(args)
    compute = compute_from_args(args)
    split = args.split or study.data.test_split
    dtype = args.dtype or study.constraints.dtype
    ds = study_dataset(study, split, subset=args.limit)  # data errors first: cheaper than loading the model
    if args.model_dir is not None:
        from hwsearch.checkpoints import file_sha256
        from hwsearch.pruning import WEIGHTS_FILE

        model = pruned_from_args(args, study)
        folder = args.model_dir if args.model_dir.is_dir() else args.model_dir.parent
        config, ckpt_path = f"{study.model} (pruned)", folder / WEIGHTS_FILE
        sha = file_sha256(ckpt_path)
    else:
        loaded = load_study_model(study)
        model, config, ckpt_path, sha = loaded.model, loaded.config, loaded.checkpoint.path, loaded.checkpoint.sha256
    params = count_params(model)
    model = model.to(compute.device)
    loader = stream_batches(ds, args.batch_size or study.data.batch_size)  # read on demand, uint8 until normalised
    top1 = top1_accuracy(model, loader, progress=not args.json, desc=f"evaluate {split}", total=len(loader),
                         device=compute.device)
    result: dict[str, object] = {
        "study": study.name, "model": config, "checkpoint": str(ckpt_path),
        "checkpoint_sha256": sha, "split": split, "samples": len(ds),  # type: ignore[arg-type]
        "top1": round(top1, 4), "params": params, "dtype": dtype, "param_mb": round(param_memory_mb(params, dtype), 6),
    }
    rates: dict[str, float] = {}
    if args.firing_rates:
        rates = measure_firing_rates(model, loader, max_batches=4, device=compute.device)
        result["firing_rates"] = rates
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"study         {study.name} ({study.path})")
    print(f"model         {config}")
    print(f"checkpoint    {ckpt_path} (sha256 {sha[:12]})")
    print(f"split         {split} ({result['samples']} samples)")
    print(f"top-1         {top1:.2f} %")
    print(f"params        {params:,}")
    print(f"param memory  {result['param_mb']:.4f} MB ({dtype}, 1 MB = 10^6 bytes)")
    if args.firing_rates:
        print("\nfiring rates (first 4 batches)")
        width = max(map(len, rates)) if rates else 0
        for name, rate in rates.items():
            print(f"  {name:<{width}}  {rate:.4f}")
    return 0


EVALUATE = Command(name="evaluate", help="measure top-1, parameters and parameter memory of the study's checkpoint",
                   add_arguments=_add, run=_run)
