"""Benchmark: physical pruning time and peak memory on spikformer-8-768.

Targets (issue 4): pruning under 2 s; peak RSS growth under 2.5x the model's parameter bytes.
Run: ``.venv/bin/python benchmarks/bench_prune.py [--model NAME] [--rate 0.5]``. Prints a table and JSON.
Each measurement runs in a fresh subprocess so ``ru_maxrss`` is the peak of that pruning alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
torch.set_grad_enabled(False)
from search_spaces import create_model
from hwsearch.pruning import PruningPlan, groups_of, prune, ChannelGroup
name, rate = sys.argv[1], float(sys.argv[2])
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
torch.manual_seed(0)
model = create_model(name)
groups = groups_of(model)
keep = {g.name: max(g.allowed_counts()[0], next(c for c in g.allowed_counts() if c >= round(g.width * (1 - rate))))
        for g in groups if isinstance(g, ChannelGroup)}
plan = PruningPlan(model=name, keep=keep)
model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
base = rss_mb()  # imports + the source model
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
pruned = prune(model, plan, groups)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"model": name, "rate": rate, "prune_s": dt, "model_mb": model_mb, "rss_with_model_mb": base,
                  "peak_rss_mb": max(peak, peak_before), "extra_peak_mb": max(peak, peak_before) - base,
                  "params_before": sum(p.numel() for p in model.parameters()),
                  "params_after": sum(p.numel() for p in pruned.parameters())}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="spikformer-8-768")
    ap.add_argument("--rates", default="0.25,0.5")
    args = ap.parse_args()
    results = []
    for rate in [float(r) for r in args.rates.split(",")]:
        out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(rate)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores")
    print(f"{'rate':>5} {'prune s':>8} {'model MiB':>10} {'peak RSS MiB':>13} {'(peak-before)/model':>20}")
    for r in results:
        # peak RSS relative to the model: the process holds the source model (1x) plus the pruned copy.
        r["peak_over_model"] = r["peak_rss_mb"] / r["model_mb"]
        r["extra_over_model"] = r["extra_peak_mb"] / r["model_mb"]
        print(f"{r['rate']:>5} {r['prune_s']:>8.3f} {r['model_mb']:>10.1f} {r['peak_rss_mb']:>13.1f} {r['extra_over_model']:>20.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
