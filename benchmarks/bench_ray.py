"""Benchmark: candidate-evaluation throughput with Ray on N workers against 1 worker and serial (goal >= 0.85 per core).

Evaluates the same N random candidates of the demo study serially in this process (1 thread, then
torch's default threads), on a RayRunner with 1 single-threaded worker and on one with ``--workers``
single-threaded workers; Ray start-up and the one-time shipping of the model to the object store are
reported separately, not in the throughput. Scaling efficiency per core: N workers' throughput over N
times the single-threaded serial one, and over N times Ray's single worker (Ray's overheads on both
sides).
Then the prioritized run (PrimeSVT's walk, every target layer) serially and with ``--workers``: its
back-off ladder is evaluated speculatively on the free workers.
Run: ``.venv/bin/python benchmarks/bench_ray.py [--n 24] [--workers 2] [--skip-greedy]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def main() -> None:
    import numpy as np
    import torch

    from hwsearch.search.session import prepare
    from hwsearch.search.results import Candidate
    from hwsearch.search.runners import RayRunner, SerialRunner

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="studies/demo.toml")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-greedy", action="store_true", help="do not time the prioritized run")
    args = ap.parse_args()
    setup = prepare(args.study, run_dir="/tmp/hwsearch-bench-ray", progress=False)
    rng = np.random.default_rng(0)
    cands = [Candidate(levels={v.name: int(rng.integers(0, len(v.levels))) for v in setup.space.variables})
             for _ in range(args.n)]

    def throughput(runner) -> tuple[float, float, list[float]]:
        t0 = time.perf_counter()
        runner.start(setup.spec)
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        accs = []
        for c in cands:
            while not runner.free_slots():
                accs.append(runner.next_result().accuracy)
            runner.submit(c)
        while runner.in_flight():
            accs.append(runner.next_result().accuracy)
        return args.n / (time.perf_counter() - t0), start_s, accs

    default_threads = torch.get_num_threads()
    setup.spec.threads = 1
    with SerialRunner() as serial:  # one worker like each Ray worker: one thread
        s1_rate, _, s1_acc = throughput(serial)
    setup.spec.threads = default_threads
    with SerialRunner() as serial:  # the serial default: torch's intra-op threads on every core
        s_rate, _, s_acc = throughput(serial)
    with RayRunner(workers=1, threads_per_worker=1) as ray_runner:  # Ray's own overheads, one worker
        r1_rate, _, r1_acc = throughput(ray_runner)
    with RayRunner(workers=args.workers, threads_per_worker=1) as ray_runner:
        r_rate, r_start, r_acc = throughput(ray_runner)
    torch.set_num_threads(default_threads)
    same = s_acc == r_acc == s1_acc == r1_acc
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"serial, 1 thread              {s1_rate:.2f} evaluations/s")
    print(f"serial, {default_threads} threads (default)   {s_rate:.2f} evaluations/s")
    print(f"ray, 1 worker x 1 thread      {r1_rate:.2f} evaluations/s")
    print(f"ray, {args.workers} workers x 1 thread      {r_rate:.2f} evaluations/s (start-up {r_start:.1f} s, not counted)")
    print(f"ray / serial(1 thread)        {r_rate / s1_rate:.2f}x")
    print(f"ray / serial(default)         {r_rate / s_rate:.2f}x   (identical accuracies in all three: {same})")
    efficiency = r_rate / s1_rate / args.workers
    ray_efficiency = r_rate / r1_rate / args.workers
    print(f"scaling efficiency per core   {ray_efficiency:.2f}   (ray {args.workers} workers x 1 thread vs ray 1 worker x 1 "
          "thread; goal >= 0.85)")
    print(f"                              {efficiency:.2f}   (ray {args.workers} x 1 thread vs serial 1 x 1 thread, "
          "no Ray at all: stricter)")
    out = {"serial_1thread_eval_per_s": s1_rate, "serial_default_eval_per_s": s_rate,
           "serial_default_threads": default_threads, "ray_eval_per_s": r_rate,
           "ratio_vs_1thread": r_rate / s1_rate, "ratio_vs_default": r_rate / s_rate, "efficiency_per_core": efficiency,
           "ray_1worker_eval_per_s": r1_rate, "efficiency_vs_ray_1worker": ray_efficiency,
           "ray_startup_s": r_start, "n": args.n, "workers": args.workers, "same_results": same}
    if not args.skip_greedy:
        out.update(_greedy(args.study, args.workers))
    print(json.dumps(out))


def _greedy(study: str, workers: int) -> dict[str, object]:
    """PrimeSVT's walk (no memory budget: every target layer) serially and on ``workers`` Ray workers, the
    shared profile cached first; with workers the back-off ladder is evaluated speculatively."""
    import tempfile
    from pathlib import Path

    import hwsearch

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-greedy-"))
    kw = dict(strategy="prioritized", constraints={"param_mb": "none"}, progress=False)
    hwsearch.run(study, out=tmp / "warm", **kw)  # computes (or reuses) the shared profile
    t0 = time.perf_counter()
    serial = hwsearch.run(study, out=tmp / "serial", **kw)
    t_serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    parallel = hwsearch.run(study, out=tmp / "ray", workers=workers, **kw)
    t_ray = time.perf_counter() - t0
    same = serial.best is not None and parallel.best is not None and serial.best.candidate.key == parallel.best.candidate.key
    print(f"prioritized run, serial       {t_serial:.1f} s wall, {serial.evaluations} evaluations")
    print(f"prioritized run, {workers} workers    {t_ray:.1f} s wall (Ray start-up included), {parallel.evaluations} "
          f"evaluations (speculative rungs), same plan: {same}")
    return {"greedy_serial_s": t_serial, "greedy_ray_s": t_ray, "greedy_serial_evaluations": serial.evaluations,
            "greedy_ray_evaluations": parallel.evaluations, "greedy_same_plan": same}


if __name__ == "__main__":
    main()
