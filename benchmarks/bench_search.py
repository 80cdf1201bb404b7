"""Search benchmark on the demo study: every strategy x seeds x evaluation budgets, measured in one run.

Two problems, both with the demo's drop limit (3 points on the eval split):

* ``saving``: no memory budget; each strategy minimises the parameter memory (objective ``param_mb``),
  so "best memory saving at drop <= 3" is the answer's saving. Printed per strategy and seed at 60 and
  at 120 new evaluations: feasible candidates found, the answer's memory saving, its drop on the eval,
  confirm and test splits, and the evaluations a strategy needed to reach the prioritized greedy's
  saving. Global strategies run cold (no warm start from the greedy), so that count means something.
* ``budget``: the demo's 0.4 MB budget (objective top-1): does every strategy find a feasible plan?

The shared profile is computed once (or reused from the cache) and is not counted in any budget; the
deterministic strategies (prioritized, sensitivity, knapsack, analytic) ignore the seed and run once.
At 60 evaluations the numbers are those of the first 60 of the 120-evaluation run (the global samplers'
asks do not depend on their budget). The early-stop share is the fraction of the evaluation images
(and, estimated from the per-image time of each candidate, of evaluation time) the exact early stop
skipped.

Run: ``.venv/bin/python benchmarks/bench_search.py [--seeds 0,1,2] [--budgets 60,120] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwsearch.search.session import prepare  # noqa: E402
from hwsearch.search.loop import run_strategy  # noqa: E402
from hwsearch.search.profiling import ensure_profile  # noqa: E402
from hwsearch.search.results import Result, select_best  # noqa: E402
from hwsearch.search.runners import SerialRunner  # noqa: E402
from hwsearch.search.strategies import create_strategy  # noqa: E402

DETERMINISTIC = ("prioritized", "sensitivity", "knapsack", "analytic")
GLOBAL = ("local", "tpe", "nsga2", "random")


def _remeasure(setup, result: Result | None) -> tuple[float | None, float | None]:
    """Confirm and test drops (points) of a candidate."""
    if result is None:
        return None, None
    model = setup.local.pruned_model(result.candidate)
    conf = setup.baseline_confirm - setup.local.accuracy(model, setup.confirm_batches) if setup.confirm_batches else None
    test = setup.baseline_test - setup.local.accuracy(model, setup.test_batches)
    return conf, test


def run_one(setup, profile, name: str, seed: int, budget: int, tmp: Path) -> tuple[list[Result], float, object]:
    strat = create_strategy(name, seed=seed)
    problem = setup.problem(eval_budget=budget, profile=profile, importance=strat.needs_importance)
    sub = replace(setup, run_dir=tmp / f"{name}-{seed}-{budget}-{setup.objective}", storage_url=None)
    runner = SerialRunner()
    runner.start(setup.spec)
    t0 = time.perf_counter()
    out = run_strategy(sub, strat, runner, study_name=name, problem=problem, eval_budget=budget, progress=False,
                       history=profile.results)
    known = {r.candidate.key for r in profile.results}
    own, seen = [], set()
    for r in out.results:
        if r.candidate.key not in known and r.candidate.key not in seen:
            seen.add(r.candidate.key)
            own.append(r)
    return own, time.perf_counter() - t0, strat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default="60,120")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--strategies", default=",".join(DETERMINISTIC + GLOBAL))
    ap.add_argument("--skip-budget-problem", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = sorted(int(b) for b in args.budgets.split(","))
    names = [s for s in args.strategies.split(",") if s]
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    rows: list[dict[str, object]] = []
    stop_images = [0, 0]
    stop_seconds = [0.0, 0.0]

    def account(results: list[Result], total_images: int) -> None:
        for r in results:
            if r.samples:
                stop_images[0] += total_images - r.samples
                stop_images[1] += total_images
                per_image = r.seconds / r.samples
                stop_seconds[0] += per_image * (total_images - r.samples)
                stop_seconds[1] += per_image * total_images

    # ---- problem 1: the smallest memory within the drop limit ------------------------------------------
    setup = prepare(ROOT / "studies" / "demo.toml", constraints={"param_mb": "none"}, run_dir=tmp / "saving",
                    progress=False, objective="param_mb")
    total = sum(len(y) for _, y in setup.spec.batches)
    runner = SerialRunner()
    runner.start(setup.spec)
    t0 = time.perf_counter()
    profile = ensure_profile(setup, runner, progress=False)
    prof_s = time.perf_counter() - t0
    account(profile.results, total)
    base_mb = setup.baseline.costs["param_mb"]
    saving = lambda r: None if r is None else 100.0 * (1 - r.costs["param_mb"] / base_mb)  # noqa: E731
    # The ceiling of the space: the saving with every group at the strongest level it tolerates alone, and
    # with every group that tolerates any pruning at its strongest level whatever its drop (the groups
    # that fail alone at every level, the SPS stem on the demo, left unpruned).
    prior = setup.problem(eval_budget=None, profile=profile).prior
    tolerated = {n: max(a) for n, a in prior.allowed.items() if max(a)}
    prunable = {v.name: len(v.levels) - 1 for v in setup.space.variables if v.name in tolerated}
    ceiling = {"every_group_at_its_strongest_tolerated_level_%": 100.0 * (1 - setup.local.costs(tolerated)["param_mb"] / base_mb),
               "every_tolerant_group_at_its_strongest_level_%": 100.0 * (1 - setup.local.costs(prunable)["param_mb"] / base_mb)}
    greedy_saving = None
    greedy_evals = None
    for name in [n for n in DETERMINISTIC if n in names] + [n for n in GLOBAL if n in names]:
        for seed in ([0] if name in DETERMINISTIC else seeds):
            own, seconds, strat = run_one(setup, profile, name, seed, max(budgets), tmp)
            account(own, total)
            for budget in budgets:
                part = own[:budget]
                answer = strat.answer([*profile.results, *part]) if name in DETERMINISTIC else select_best(
                    [*profile.results, *part], "param_mb")
                conf, test = _remeasure(setup, answer)
                reach = None
                if greedy_saving is not None:
                    reach = next((i + 1 for i, r in enumerate(part) if r.feasible and saving(r) >= greedy_saving - 1e-9), None)
                rows.append({"problem": "saving", "strategy": name, "seed": seed if name not in DETERMINISTIC else "-",
                             "budget": budget, "evaluations": len(part), "feasible": sum(r.feasible for r in part),
                             "saving_%": saving(answer), "eval_drop": None if answer is None else answer.acc_drop,
                             "confirm_drop": conf, "test_drop": test, "evals_to_greedy": reach,
                             "seconds": round(seconds, 1) if budget == max(budgets) else None})
            if name == "prioritized":
                ans = strat.answer([*profile.results, *own])
                greedy_saving, greedy_evals = saving(ans), len(own)
            print(f"[{time.perf_counter() - t_all:7.1f} s] saving {name} seed {seed}: {len(own)} evaluations, "
                  f"{rows[-1]['saving_%']}", flush=True)

    # ---- problem 2: the demo's 0.4 MB budget ------------------------------------------------------------
    if not args.skip_budget_problem:
        setup2 = prepare(ROOT / "studies" / "demo.toml", run_dir=tmp / "budget", progress=False)
        runner2 = SerialRunner()
        runner2.start(setup2.spec)
        profile2 = ensure_profile(setup2, runner2, progress=False)
        b = min(budgets)
        for name in [n for n in DETERMINISTIC if n in names] + [n for n in GLOBAL if n in names]:
            for seed in ([0] if name in DETERMINISTIC else seeds):
                own, seconds, strat = run_one(setup2, profile2, name, seed, b, tmp)
                account(own, total)
                answer = strat.answer([*profile2.results, *own])
                conf, test = _remeasure(setup2, answer)
                rows.append({"problem": "budget", "strategy": name, "seed": seed if name not in DETERMINISTIC else "-",
                             "budget": b, "evaluations": len(own), "feasible": sum(r.feasible for r in own),
                             "saving_%": saving(answer), "eval_drop": None if answer is None else answer.acc_drop,
                             "confirm_drop": conf, "test_drop": test, "evals_to_greedy": None, "seconds": round(seconds, 1)})
                print(f"[{time.perf_counter() - t_all:7.1f} s] budget {name} seed {seed}: feasible "
                      f"{rows[-1]['feasible']}", flush=True)

    # ---- report -----------------------------------------------------------------------------------------
    def fmt(x: object) -> str:
        return "-" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)

    cols = ["problem", "strategy", "seed", "budget", "evaluations", "feasible", "saving_%", "eval_drop",
            "confirm_drop", "test_drop", "evals_to_greedy", "seconds"]
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    summary: dict[str, object] = {"greedy_saving_%": greedy_saving, "greedy_evaluations": greedy_evals,
                                  "profile_evaluations": profile.new_evaluations, "profile_seconds": round(prof_s, 1),
                                  "ceiling": ceiling,
                                  "goal_1.3x_greedy_saving_%": None if greedy_saving is None else 1.3 * greedy_saving}
    for budget in budgets:
        best_global = None
        for name in names:
            if name == "prioritized":
                continue
            vals = [r["saving_%"] for r in rows if r["problem"] == "saving" and r["strategy"] == name and r["budget"] == budget]
            if vals and all(v is not None for v in vals):
                worst = min(vals)  # type: ignore[type-var]
                if best_global is None or worst > best_global[1]:
                    best_global = (name, worst)
        if best_global is not None and greedy_saving:
            summary[f"best_global_at_{budget}"] = {"strategy": best_global[0], "saving_%_worst_seed": best_global[1],
                                                   "ratio_to_greedy": best_global[1] / greedy_saving}
    summary["all_feasible_budget_problem"] = all(r["feasible"] for r in rows if r["problem"] == "budget")
    summary["early_stop_images_saved_%"] = 100.0 * stop_images[0] / max(stop_images[1], 1)
    summary["early_stop_time_saved_%"] = 100.0 * stop_seconds[0] / max(stop_seconds[1], 1e-9)
    summary["wall_s"] = round(time.perf_counter() - t_all, 1)
    summary["threads"] = args.threads
    print()
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
