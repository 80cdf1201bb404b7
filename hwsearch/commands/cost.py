"""``hwsearch cost``: the cost table of the study's model, unpruned or pruned by a plan."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import cast

from hwsearch.commands._base import Command, add_model_dir_argument, add_study_argument, pruned_from_args, study_from_args
from hwsearch.commands._values import count


def _add(p: argparse.ArgumentParser) -> None:
    add_study_argument(p)
    add_model_dir_argument(p)
    p.add_argument("--plan", type=Path, default=None, help="plan.json to apply (default: the unpruned model)")
    p.add_argument("--per-layer", action="store_true", help="print one row per layer (params, MACs, spikes, SOPs)")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16", "int8", "int4"],
                   help="deployment dtype for weight memory (default: the study's)")
    p.add_argument("--spike-bits", type=int, default=1, choices=[1, 8, 32],
                   help="bits per stored spike for activation memory (1 = bit-packed, default)")
    p.add_argument("--sops", type=count, default=0, metavar="N",
                   help="measure firing rates on N batches of the eval split and add SOPs and energy (default 0: off)")
    p.add_argument("--measured", action="store_true",
                   help="also count on the physically pruned model (fvcore MACs, monitored spikes) and compare")
    p.add_argument("--latency", action="store_true", help="also measure CPU latency (median of repeated forwards)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def _run(args: argparse.Namespace) -> int:
    from itertools import islice

    import pandas as pd

    from costmodels import ENERGY_CAVEAT, AnalyticCostModel, MeasuredCostModel, create_cost_model
    from hwsearch.data import make_loader
    from hwsearch.errors import UserError
    from hwsearch.loading import load_study_model, study_dataset
    from costmodels import plan_widths
    from hwsearch.pruning import PlanError, PruningPlan, groups_of, prune, resolve_plan
    from hwsearch.reports.report import plan_token_flow

    study = study_from_args(args)
    dtype = args.dtype or study.constraints.dtype
    if args.model_dir is not None and args.plan is not None:
        raise UserError("--model-dir already holds its plan; drop --plan (or drop --model-dir to apply a plan)")
    plan = PruningPlan.load(args.plan) if args.plan else None
    if plan is not None and plan.model and plan.model != study.model:
        raise PlanError(f"plan {args.plan} is for '{plan.model}' but the study's model is '{study.model}'")
    need_model = args.sops or args.measured or args.latency
    pruned_model = pruned_from_args(args, study) if args.model_dir is not None else None
    loaded = load_study_model(study) if pruned_model is None and (need_model or plan is not None) else None
    model = loaded.model if loaded else pruned_model
    widths = None
    if pruned_model is not None:
        # the plan it was pruned with (exact indices); prune() sets it, nn.Module's typing only knows Tensor | Module
        plan = cast(PruningPlan, pruned_model.hwsearch_plan)
        widths = plan_widths(None, plan)
        args.plan = args.model_dir
    elif plan is not None and model is not None:
        groups = groups_of(model)
        plan = resolve_plan(model, plan, groups)  # exact indices: which blocks go matters for the costs
        widths = plan_widths(groups, plan)
    rates, batches = None, None
    if args.sops:
        batches = list(islice(make_loader(study_dataset(study, study.data.eval_split), study.data.batch_size), args.sops))
        if pruned_model is None:  # rates of the unpruned model, in the numbering the analytic model uses
            rates = MeasuredCostModel().firing_rates(model, [x for x, _ in batches])
    learned = {"token_score": plan.token_score} if plan is not None and plan.token_score != "activity" else None
    analytic = AnalyticCostModel(dtype=dtype, spike_bits=args.spike_bits, firing_rates=rates).cost(
        study.model, widths, model_kwargs=learned)
    costs = {"analytic": analytic}
    if args.measured or args.latency:
        assert model is not None  # need_model: loaded above unless --model-dir gave it
        pruned = pruned_model if pruned_model is not None else prune(model, plan) if plan else model
        if args.measured:
            costs["measured"] = MeasuredCostModel(dtype=dtype, spike_bits=args.spike_bits).measure(
                pruned, calibration=[x for x, _ in batches] if batches else None)
            if costs["measured"].params != analytic.params or costs["measured"].macs != analytic.macs:
                raise UserError("analytic and measured counts disagree (a bug: please report it with the plan)")
        if args.latency:
            costs["latency"] = create_cost_model("latency", dtype=dtype).measure(pruned)
    if args.json:
        print(json.dumps({k: c.to_dict(layers=args.per_layer) for k, c in costs.items()}))
        return 0
    rows = []
    for name, c in costs.items():
        rows.append({"source": name, "params": f"{c.params:,}", "live params": f"{c.live_params:,}",
                     f"weights MB ({dtype})": round(c.weight_mb, 4), "GMACs/image": round(c.gmacs, 5),
                     "spikes MB total": round(c.act_mb, 4), "spikes MB peak": round(c.peak_act_mb, 4),
                     "SOPs (G)": None if c.sops is None else round(c.sops / 1e9, 5),
                     "energy mJ": None if c.energy_mj is None else round(c.energy_mj, 5),
                     "latency ms": None if c.latency_ms is None else round(c.latency_ms, 2)})
    with pd.option_context("display.width", 220, "display.max_rows", None, "display.max_columns", None):
        print(f"{study.model}{' pruned by ' + str(args.plan) if plan else ''} (MB = 10^6 bytes, T={analytic.T})")
        print(pd.DataFrame(rows).dropna(axis=1, how="all").to_string(index=False))
        flow = plan_token_flow(plan) if plan is not None else None
        if flow:
            print(flow)
        if args.per_layer:
            print()
            print(analytic.to_frame().to_string(index=False))
    if analytic.energy_mj is not None:
        print(f"\nenergy is an estimate: {ENERGY_CAVEAT}")
    return 0


COST = Command(name="cost", help="cost table (params, memory, MACs, spike memory, SOPs, energy, latency) of a model or plan",
               add_arguments=_add, run=_run)
