"""Benchmark: candidate evaluation, fast path against spikingjelly's reference path, prefix reuse, streamed data.

Measured in one run on this machine:

1. **Demo study, evaluations per second** on the shared profile's candidates (every searched group
   alone at every rate, with the study's exact early stop, as ``hwsearch run`` evaluates them) and on
   ``--random`` random full plans, for three evaluators run interleaved candidate by candidate:
   ``reference`` (spikingjelly's LIF via ``reference_lif()``, no prefix reuse: the evaluator before
   issue 10), ``fast path`` (the bit-identical inference paths: ``search_spaces/_fastlif.py`` for the LIF
   neurons, ``search_spaces/_fastops.py`` for the CIFAR layout's batch norm and spike attention; no prefix
   reuse) and ``fast path + prefix``
   (the default). All three must return identical results.
2. **spikformer-8-512 at 224x224**, random weights made to fire (``calibrate_bn``), on a generated
   folder of ``--images`` JPEGs streamed through :class:`hwsearch.data.EvalBatches` (``--loader-workers``
   processes, uint8 until normalised, no cache): images per second and peak RSS of this process
   (sampled every 5 ms) against the goal ``2 x model + one batch`` (one batch = the memory one batch's
   forward needs on top of the loaded model, measured alone first).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_eval.py [--threads 1] [--random 8]
[--images 256] [--big-eval 256] [--batch-size 16]``. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 5 ms), in MB."""

    def __enter__(self) -> PeakRSS:
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _demo(args: argparse.Namespace) -> dict[str, object]:
    from hwsearch.search.session import prepare
    from hwsearch.search.evaluation import Evaluator
    from hwsearch.search.results import Candidate
    from hwsearch.search.profiling import sensitivity_candidates
    from search_spaces import reference_lif

    setup = prepare(ROOT / "studies" / "demo.toml", run_dir=tempfile.mkdtemp(prefix="bench-eval-"), progress=False,
                    threads=args.threads)
    spec = setup.spec
    evaluators: dict[str, tuple[Evaluator, bool]] = {
        "reference": (Evaluator(replace(spec, prefix_cache_mb=0)), True),
        "fast path": (Evaluator(replace(spec, prefix_cache_mb=0)), False),
        "fast path + prefix": (Evaluator(spec), False),
    }
    rng = np.random.default_rng(0)
    workloads = {
        "profile": sensitivity_candidates(setup.space)[: args.limit],
        "random": [Candidate(levels={v.name: int(rng.integers(0, len(v.levels))) for v in setup.space.variables})
                   for _ in range(args.random)],
    }
    out: dict[str, object] = {"threads": torch.get_num_threads()}
    for load, cands in workloads.items():
        seconds = dict.fromkeys(evaluators, 0.0)
        results: dict[str, list[tuple[object, ...]]] = {k: [] for k in evaluators}
        for c in cands:  # interleaved: a busy neighbour slows every evaluator alike
            for name, (ev, ref) in evaluators.items():
                t0 = time.perf_counter()
                if ref:
                    with reference_lif():
                        r = ev(c)
                else:
                    r = ev(c)
                seconds[name] += time.perf_counter() - t0
                results[name].append((r.status, r.accuracy, r.samples))
        same = len({tuple(v) for v in results.values()}) == 1
        rates = {k: len(cands) / s for k, s in seconds.items()}
        out[load] = {"candidates": len(cands), "eval_per_s": rates, "seconds": seconds, "same_results": same}
        if load == "profile":
            reused = sum(evaluators["fast path + prefix"][0].reusable_prefix(c) > 0 for c in cands)
            out[load]["with_prefix"] = reused  # type: ignore[index]
    stats = evaluators["fast path + prefix"][0].prefix.stats  # type: ignore[union-attr]
    out["prefix_cache"] = {"hits": stats.hits, "misses": stats.misses, "stored_mb": stats.stored_bytes / 1e6}
    return out


def _make_folder(root: Path, n: int, classes: int = 8, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / "val" / f"class{i % classes:02d}"
        d.mkdir(parents=True, exist_ok=True)
        h, w = int(rng.integers(240, 400)), int(rng.integers(240, 400))
        base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)  # smooth-ish, JPEG-like
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
        img.save(d / f"img{i:04d}.jpg", quality=90)
    return root


def _big(args: argparse.Namespace) -> dict[str, object]:
    from spikingjelly.activation_based import functional

    from hwsearch.data import build_dataset, stream_batches
    from hwsearch.heap import release_free_heap
    from hwsearch.search.metrics import correct_per_batch
    from hwsearch.testing.calibrate import calibrate_bn, firing_rates
    from search_spaces import create_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-folder-"))
    t0 = time.perf_counter()
    _make_folder(tmp, args.images)
    make_s = time.perf_counter() - t0
    ds = build_dataset("imagefolder", root=tmp, split="val", img_size=224)
    if args.big_eval < len(ds):
        ds = torch.utils.data.Subset(ds, range(args.big_eval))
    batches = stream_batches(ds, args.batch_size, workers=args.loader_workers, cache_mb=0)
    release_free_heap(0)  # the demo part's freed heap must not inflate the baseline (it would flatter the figure)
    rss_start = _rss_mb()
    torch.manual_seed(0)
    model = create_model("spikformer-8-512")
    model_mb = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 1e6
    calib = batches[0][0][:4]
    calibrate_bn(model, calib)
    rates = firing_rates(model, calib[:1])
    del calib
    release_free_heap(0)  # what calibration (a benchmark artefact: random weights made to fire) left held
    rss_model = _rss_mb()
    x, _ = batches[0]
    with PeakRSS() as one, torch.no_grad():  # one batch alone: what its forward needs
        functional.reset_net(model)
        model(x)
        functional.reset_net(model)
    del x
    one_batch_mb = one.peak - rss_model
    seen = 0
    with PeakRSS() as full:
        t0 = time.perf_counter()
        for _, n in correct_per_batch(model, batches):
            seen += n
        seconds = time.perf_counter() - t0
    for p in sorted(tmp.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    tmp.rmdir()
    bound = 2 * model_mb + one_batch_mb
    return {"images": seen, "folder_images": args.images, "batch_size": args.batch_size,
            "loader_workers": args.loader_workers, "images_per_s": seen / seconds, "seconds": seconds,
            "model_mb": model_mb, "rss_before_model_mb": rss_start, "rss_with_model_mb": rss_model,
            "one_batch_mb": one_batch_mb, "peak_rss_mb": full.peak, "peak_over_start_mb": full.peak - rss_start,
            "goal_mb": bound, "goal_met": full.peak - rss_start <= bound, "fp32_split_mb": seen * 3 * 224 * 224 * 4 / 1e6,
            "min_firing_rate": min(rates.values()), "lifs_firing": sum(r > 0 for r in rates.values()),
            "lifs": len(rates), "make_folder_s": make_s}


def _table(demo: dict, big: dict) -> None:  # noqa: ANN001
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
          f"load average {os.getloadavg()[0]:.1f}, torch threads {demo['threads']}")
    for load in ("profile", "random"):
        d = demo[load]
        r = d["eval_per_s"]
        extra = f", {d['with_prefix']} with a reusable prefix" if "with_prefix" in d else ""
        print(f"\ndemo, {load} candidates ({d['candidates']}{extra}); identical results: {d['same_results']}")
        for k, v in r.items():
            print(f"  {k:<19} {v:6.2f} evaluations/s  ({d['seconds'][k]:.1f} s)")
        print(f"  new / reference    {r['fast path + prefix'] / r['reference']:.2f}x   "
              f"(prefix reuse alone {r['fast path + prefix'] / r['fast path']:.2f}x, fast path alone "
              f"{r['fast path'] / r['reference']:.2f}x)")
    pc = demo["prefix_cache"]
    print(f"  prefix cache       {pc['hits']} batches replayed, {pc['misses']} computed, {pc['stored_mb']:.1f} MB stored")
    print(f"\nspikformer-8-512 224x224, random calibrated weights ({big['lifs_firing']}/{big['lifs']} LIFs fire), "
          f"{big['images']} of {big['folder_images']} generated JPEGs, batch {big['batch_size']}, "
          f"{big['loader_workers']} loader workers")
    print(f"  throughput         {big['images_per_s']:.2f} images/s ({big['seconds']:.1f} s)")
    print(f"  model              {big['model_mb']:.0f} MB; one batch's forward {big['one_batch_mb']:.0f} MB")
    print(f"  peak RSS           {big['peak_rss_mb']:.0f} MB ({big['peak_over_start_mb']:.0f} MB over the process "
          f"before the model); goal 2 x model + one batch = {big['goal_mb']:.0f} MB: "
          f"{'met' if big['goal_met'] else 'NOT met'}")
    print(f"  (the split as fp32 in RAM would be {big['fp32_split_mb']:.0f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--random", type=int, default=8, help="random full plans on the demo (default 8)")
    ap.add_argument("--images", type=int, default=256, help="images in the generated folder (default 256)")
    ap.add_argument("--big-eval", type=int, default=256, help="of them, how many to evaluate (default all)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--loader-workers", type=int, default=2)
    ap.add_argument("--skip-big", action="store_true", help="only the demo part")
    ap.add_argument("--skip-demo", action="store_true", help="only the spikformer-8-512 part (JSON only)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N profile candidates (quick checks)")
    args = ap.parse_args()
    demo = _demo(args) if not args.skip_demo else {}
    big = _big(args) if not args.skip_big else {}
    if big and demo:
        _table(demo, big)
    print(json.dumps({"demo": demo, "spikformer_8_512": big}, default=float))


if __name__ == "__main__":
    main()
