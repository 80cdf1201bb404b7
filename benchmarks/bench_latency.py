"""Benchmark: measured CPU latency gain of pruned models against their dense-MAC reduction.

For uniform channel rates r (every SPS, embedding, q/k, v and MLP group at rate r), prints the measured
speed-up ``latency(dense) / latency(pruned)``, the MAC reduction ``MACs(dense) / MACs(pruned)`` and their
ratio (goal: >= 0.8, i.e. physical pruning turns at least 80 % of the MAC saving into wall-clock time).
Run: ``.venv/bin/python benchmarks/bench_latency.py [--model NAME] [--rates 0.25,0.5,0.75]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch


def main() -> None:
    from costmodels import AnalyticCostModel, plan_widths
    from costmodels._latency import LatencyCostModel
    from hwsearch.pruning import ChannelGroup, PruningPlan, groups_of, prune, resolve_plan
    from search_spaces import create_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="spikformer-cifar10-4-384")
    ap.add_argument("--rates", default="0.25,0.5,0.75")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model).eval()
    groups = groups_of(model)
    timer = LatencyCostModel(repeats=args.repeats, warmup=2, batch_size=args.batch_size, num_threads=args.threads)
    analytic = AnalyticCostModel()
    base_ms, device = timer.time_ms(model)
    base_macs = analytic.cost(args.model, None, per_layer=False).macs
    rows = []
    for rate in [float(r) for r in args.rates.split(",")]:
        keep = {}
        for g in groups:
            if isinstance(g, ChannelGroup) and g.kind in ("embed", "sps", "mlp", "qk", "v", "qkv", "q", "k", "stage", "patch"):
                keep[g.name] = min(g.allowed_counts(), key=lambda c: abs(c - g.width * (1 - rate)))
        plan = resolve_plan(model, PruningPlan(model=args.model, keep=keep), groups)
        pruned = prune(model, plan, groups)
        ms, _ = timer.time_ms(pruned)
        macs = analytic.cost(args.model, plan_widths(groups, plan), per_layer=False).macs
        speedup, reduction = base_ms / ms, base_macs / macs
        rows.append({"rate": rate, "latency_ms": ms, "speedup": speedup, "mac_reduction": reduction,
                     "ratio": speedup / reduction})
    print(f"{args.model}, batch {args.batch_size}, {device}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; dense latency {base_ms:.1f} ms, {base_macs / 1e9:.3f} GMACs/image")
    print(f"{'rate':>5} {'latency ms':>11} {'speed-up':>9} {'MAC reduction':>14} {'ratio':>6}")
    for r in rows:
        print(f"{r['rate']:>5} {r['latency_ms']:>11.1f} {r['speedup']:>9.2f} {r['mac_reduction']:>14.2f} {r['ratio']:>6.2f}")
    print(json.dumps({"model": args.model, "device": device, "dense_ms": base_ms, "rows": rows}))


if __name__ == "__main__":
    main()
