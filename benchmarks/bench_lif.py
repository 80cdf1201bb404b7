"""Benchmark: the fast inference paths (LIF neurons, CIFAR batch norm and spike attention) against spikingjelly 2.0's own path, on CPU.

Measures in one run, on one thread, the eval-mode ``no_grad`` forward of the demo model
(``studies/checkpoints/spikformer-digits-2-64.pth``, a batch of 120 bundled digits ``[120, 1, 32, 32]``)
with the reference path (``reference_lif()``) and the fast path, interleaved, median of ``--repeats``;
then the same for the neurons alone (every LIF of that forward on its recorded input). Checks that
logits and spikes are ``torch.equal`` on both paths. Prints a table and one JSON line.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lif.py [--repeats 7] [--batch-size 120]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "studies" / "checkpoints" / "spikformer-digits-2-64.pth"


def _median_pair(ref: Callable[[], object], fast: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall times (ms) of ``ref`` and ``fast``, run alternately after one warm-up each."""
    ref(), fast()
    times: dict[str, list[float]] = {"ref": [], "fast": []}
    for _ in range(repeats):
        for key, fn in (("ref", ref), ("fast", fast)):
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times["ref"]), statistics.median(times["fast"])


def main() -> None:
    import hwsearch
    from hwsearch.data import build_dataset
    from search_spaces._fastlif import reference_lif
    from spikingjelly.activation_based import functional, monitor, neuron

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = hwsearch.load_model(CHECKPOINT).model.eval()
    ds = build_dataset("digits", split="val")
    x = torch.stack([ds[i][0] for i in range(args.batch_size)])

    def forward() -> torch.Tensor:
        functional.reset_net(model)
        with torch.no_grad():
            out = model(x)
        functional.reset_net(model)
        return out

    def forward_ref() -> torch.Tensor:
        with reference_lif():
            return forward()

    # Equality first: logits and every LIF output, fast vs reference.
    spikes: dict[str, list[torch.Tensor]] = {}
    for key, fn in (("ref", forward_ref), ("fast", forward)):
        with monitor.OutputMonitor(model, neuron.BaseNode) as mon:
            logits = fn()
            spikes[key] = [logits] + [mon[name][0] for name in mon.monitored_layers]
    equal = len(spikes["ref"]) == len(spikes["fast"]) and all(
        torch.equal(a, b) for a, b in zip(spikes["ref"], spikes["fast"], strict=True))
    rate = statistics.mean(s.float().mean().item() for s in spikes["fast"][1:])

    model_ref, model_fast = _median_pair(forward_ref, forward, args.repeats)

    # Neurons alone: each LIF of the forward on the input it received there.
    inputs: list[tuple[neuron.BaseNode, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda m, a: inputs.append((m, a[0].clone())))
             for m in model.modules() if isinstance(m, neuron.BaseNode)]
    forward()
    for h in hooks:
        h.remove()

    def neurons() -> None:
        with torch.no_grad():
            for node, inp in inputs:
                node.reset()
                node(inp)
                node.reset()

    def neurons_ref() -> None:
        with reference_lif():
            neurons()

    lif_ref, lif_fast = _median_pair(neurons_ref, neurons, args.repeats)
    n_elems = sum(inp.numel() for _, inp in inputs)

    rows = [("model forward", model_ref, model_fast), ("LIF neurons only", lif_ref, lif_fast),
            ("rest of the model", model_ref - lif_ref, model_fast - lif_fast)]
    cpu = platform.processor() or platform.machine()
    print(f"spikformer-digits-2-64, batch {args.batch_size}, eval, no_grad, {args.threads} thread(s), {cpu}, "
          f"{os.cpu_count()} cores; {len(inputs)} LIF calls, {n_elems / 1e6:.1f} M neuron-steps; "
          f"mean firing rate {rate:.3f}; fast == reference (logits and spikes): {equal}")
    print(f"{'':<20} {'reference ms':>13} {'fast ms':>9} {'speed-up':>9}")
    for name, r, f in rows:
        print(f"{name:<20} {r:>13.1f} {f:>9.1f} {r / f:>8.2f}x")
    print(f"LIF share of the forward: reference {lif_ref / model_ref:.0%}, fast {lif_fast / model_fast:.0%}")
    print(json.dumps({
        "benchmark": "bench_lif", "model": "spikformer-digits-2-64", "batch_size": args.batch_size,
        "threads": args.threads, "repeats": args.repeats, "cpu": cpu, "cores": os.cpu_count(),
        "torch": torch.__version__, "bit_identical": equal,
        "model_ms": {"reference": round(model_ref, 2), "fast": round(model_fast, 2)},
        "model_speedup": round(model_ref / model_fast, 3),
        "lif_ms": {"reference": round(lif_ref, 2), "fast": round(lif_fast, 2)},
        "lif_speedup": round(lif_ref / lif_fast, 3),
    }))


if __name__ == "__main__":
    main()
