"""Benchmark: analytic cost-model throughput vs. build + prune + count (measured path).

Target (cost models): >= 50,000 analytic plan evaluations per second on spikformer-8-768 (params, MACs,
activation memory: one ``Cost`` per plan). The measured path builds the model, prunes it and counts it
(``sum(p.numel())``, fvcore dense MACs, monitored spikes); both give the same numbers, which is checked.

Run: ``.venv/bin/python benchmarks/bench_costmodel.py [--model spikformer-8-768] [--plans 20000]
[--measured-plans 2] [--threads 1] [--json out.json]``. Prints a table, then the results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from typing import Any

import torch

from costmodels import AnalyticCostModel, MeasuredCostModel, build_pruned, plan_widths
from costmodels._latency import cpu_name
from hwsearch.pruning import ChannelGroup, DepthGroup, groups_of
from search_spaces import get_config

FIELDS = ("params", "live_params", "macs", "act_elements", "peak_activation_bytes")


def random_plans(name: str, n: int, seed: int, depth_fraction: float) -> list[dict[str, Any]]:
    """Random widths for every channel group; a fraction of plans also drop blocks/branches."""
    with torch.device("meta"):
        groups = groups_of(get_config(name).build())
    rng = random.Random(seed)
    plans = []
    for _ in range(n):
        keep: dict[str, Any] = {g.name: rng.choice(g.allowed_counts()) for g in groups if isinstance(g, ChannelGroup)}
        if rng.random() < depth_fraction:
            for g in groups:
                if isinstance(g, DepthGroup):
                    k = rng.randint(max(g.min_width, 1), g.width)
                    keep[g.name] = tuple(sorted(rng.sample(range(g.width), k)))
        plans.append(keep)
    return plans


def bench_analytic(name: str, plans: list[dict[str, Any]]) -> dict[str, float]:
    model = AnalyticCostModel()
    t0 = time.perf_counter()
    compiled = model.compile(name)
    compile_s = time.perf_counter() - t0
    for w in plans[:200]:  # warm-up
        compiled.cost(w)
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        for w in plans:
            compiled.cost(w)
        rates.append(len(plans) / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    for w in plans:
        model.cost(name, w, per_layer=False)  # through the registry-facing API (compiled-cache lookup)
    api_rate = len(plans) / (time.perf_counter() - t0)
    X = compiled.matrix(plans)
    t0 = time.perf_counter()
    compiled.batch(X)
    batch_rate = len(plans) / (time.perf_counter() - t0)
    return {"compile_s": compile_s, "evals_per_s": statistics.median(rates), "api_evals_per_s": api_rate,
            "batch_evals_per_s": batch_rate, "us_per_eval": 1e6 / statistics.median(rates)}


def bench_measured(name: str, plans: list[dict[str, Any]]) -> dict[str, Any]:
    analytic, measured = AnalyticCostModel(), MeasuredCostModel()
    times, build_times, agree = [], [], True
    for w in plans:
        t0 = time.perf_counter()
        model = build_pruned(name, w)
        t1 = time.perf_counter()
        cost = measured.measure(model)
        times.append(time.perf_counter() - t0)
        build_times.append(t1 - t0)
        expected = analytic.cost(name, plan_widths(None, model.hwsearch_plan),
                                 per_layer=False)
        agree &= all(getattr(cost, f) == getattr(expected, f) for f in FIELDS)
        del model
    return {"plans": len(plans), "s_per_eval": statistics.median(times), "build_prune_s": statistics.median(build_times),
            "evals_per_s": 1 / statistics.median(times), "analytic_equals_measured": agree}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="spikformer-8-768")
    ap.add_argument("--plans", type=int, default=20_000, help="random plans for the analytic throughput")
    ap.add_argument("--measured-plans", type=int, default=2, help="plans for build + prune + count (slow)")
    ap.add_argument("--depth-fraction", type=float, default=0.25, help="fraction of plans that also drop depth")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the measured path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    plans = random_plans(args.model, args.plans, args.seed, args.depth_fraction)
    analytic = bench_analytic(args.model, plans)
    measured = bench_measured(args.model, plans[: args.measured_plans]) if args.measured_plans else None
    result = {
        "benchmark": "costmodel", "model": args.model,
        "machine": {"cpu": cpu_name(), "nproc": os.cpu_count(), "torch_threads": args.threads,
                    "python": platform.python_version(), "torch": torch.__version__},
        "analytic": analytic, "measured": measured,
        "speedup_analytic_vs_measured": (analytic["evals_per_s"] / measured["evals_per_s"]) if measured else None,
        "target_evals_per_s": 50_000, "meets_target": analytic["evals_per_s"] >= 50_000,
    }
    print(f"model {args.model} on {result['machine']['cpu']} ({result['machine']['nproc']} CPUs)")
    print(f"analytic  {analytic['evals_per_s']:>12,.0f} plans/s  ({analytic['us_per_eval']:.1f} us each; "
          f"registry API {analytic['api_evals_per_s']:,.0f}/s; numpy batch {analytic['batch_evals_per_s']:,.0f}/s; "
          f"compile {analytic['compile_s'] * 1e3:.1f} ms)")
    if measured:
        print(f"measured  {measured['evals_per_s']:>12.4f} plans/s  ({measured['s_per_eval']:.1f} s each, "
              f"build+prune {measured['build_prune_s']:.1f} s; equal to analytic: {measured['analytic_equals_measured']})")
        print(f"ratio     {result['speedup_analytic_vs_measured']:>12,.0f}x")
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
