"""Token pruning (SPViT package token), T, and channel pruning on the demo under one MAC budget.

For each axis set, the same search meets ``--budget`` x the unpruned dense MACs (default 0.6):

* ``channel``: the default channel axes (SPS, q/k, v, MLP widths);
* ``tokens``: the token keep ratio before each block only; on the demo the SPS stem holds 64 % of the
  MACs, so tokens alone cannot reach 0.6 (their floor, one token per block, is 0.650): this row uses
  ``--tokens-budget`` (default 0.75) instead and says so;
* ``tokens+T``: the token keep ratios and the number of time steps T (the work axes);
* ``both``: channel axes + tokens + T.

Search per axis set: the knapsack relaxation on the shared profile (the profile is computed once per
axis set and cached), then ``local`` hill climbing for ``--local-evals`` evaluations warm-started from
the knapsack answer (for ``both`` also from the ``channel`` and ``tokens+T`` answers, whose levels are
levels of the combined space, so the combined search starts where either axis alone ended). Every
answer is then fine-tuned (``--epochs``, cross-entropy) and measured: top-1 on the eval / confirm /
test splits without and with fine-tuning, dense MACs (analytic, exact), SOPs (measured: firing rates of
the pruned model on the eval images x its dense MACs of binary-input layers), parameter memory.

Run: ``.venv/bin/python benchmarks/bench_tokens.py [--budget 0.6] [--epochs 3] [--local-evals 30]``;
writes ``benchmarks/results/tokens.json`` and prints the README table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hwsearch  # noqa: E402
from hwsearch.search.encoding import DEFAULT_AXES  # noqa: E402

AXES = {
    "channel": tuple(DEFAULT_AXES),
    "tokens": ("tokens",),
    "tokens+T": ("tokens", "time"),
    "both": (*DEFAULT_AXES, "tokens", "time"),
}


def _sops_g(model: torch.nn.Module, batches: list) -> float:
    from costmodels import MeasuredCostModel

    cost = MeasuredCostModel(calibration=[x for x, _ in batches]).measure(model)
    return float(cost.sops) / 1e9


def _accuracies(setup, model) -> dict[str, float]:
    ev = setup.local
    return {"eval": ev.accuracy(model), "confirm": ev.accuracy(model, setup.confirm_batches),
            "test": ev.accuracy(model, setup.test_batches)}


def run_axes(label: str, axes: tuple[str, ...], budget_g: float, args: argparse.Namespace, out: Path,
             warm: list[dict[str, int]]) -> dict:
    from hwsearch.search.session import prepare
    from hwsearch.finetune import finetune
    from hwsearch.pruning import load_pruned
    from hwsearch.study import default_study_path, load_study

    study = load_study(default_study_path())
    cons = {"macs_g": budget_g, "param_mb": "none", "max_acc_drop": "none"}  # the most accurate within the MACs
    t0 = time.perf_counter()
    knap = hwsearch.run(study, strategy="knapsack", constraints=cons, axes=axes, out=out / f"{label}-knapsack",
                           progress=False)
    starts = ([dict(knap.best.candidate.levels)] if knap.best else []) + warm
    res = hwsearch.run(study, strategy="local", constraints=cons, axes=axes, out=out / f"{label}-local",
                          trials=args.local_evals, warm_start=starts, progress=False)
    search_s = time.perf_counter() - t0
    if res.best is None:
        return {"axes": label, "budget_macs_g": budget_g, "feasible": False, "search_s": round(search_s, 1)}
    setup = prepare(study, constraints=cons, axes=axes, run_dir=out / f"{label}-local", progress=False)
    model = load_pruned(res.run_dir / "best")
    before = _accuracies(setup, model)
    sops = _sops_g(model, setup.spec.batches)
    t1 = time.perf_counter()
    tuned, ft = finetune(study, res.run_dir / "best", epochs=args.epochs, loss="ce", out=res.run_dir / "best-finetuned",
                         progress=False)
    after = _accuracies(setup, tuned)
    plan = dict(model.hwsearch_plan.counts())
    return {"axes": label, "budget_macs_g": budget_g, "feasible": True, "levels": dict(res.best.candidate.levels),
            "plan_counts": plan,
            "macs_g": res.best.costs["macs_g"], "param_mb": res.best.costs["param_mb"], "sops_g": sops,
            "acc": before, "acc_finetuned": after, "finetune_s": round(time.perf_counter() - t1, 1),
            "search_s": round(search_s, 1), "evaluations": knap.evaluations + res.evaluations,
            "sops_finetuned_g": _sops_g(tuned, setup.spec.batches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=0.6, help="MAC budget as a fraction of the unpruned model")
    ap.add_argument("--tokens-budget", type=float, default=0.75, help="budget of the tokens-only row")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--local-evals", type=int, default=30)
    ap.add_argument("--out", default="/tmp/hwsearch-bench-tokens")
    ap.add_argument("--only", default=",".join(AXES))
    ap.add_argument("--previous", default=None, help="a log of an earlier run: its JSON rows are reused")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from hwsearch.search.session import prepare
    from hwsearch.study import default_study_path, load_study

    study = load_study(default_study_path())
    setup = prepare(study, constraints={"param_mb": "none"}, run_dir=Path(args.out) / "base", progress=False)
    base_macs = setup.local.costs({})["macs_g"]
    base = {"macs_g": base_macs, "param_mb": setup.local.costs({})["param_mb"],
            "sops_g": _sops_g(setup.local.model, setup.spec.batches), "acc": _accuracies(setup, setup.local.model)}
    rows, answers = [], {}
    if args.previous:
        for line in Path(args.previous).read_text().splitlines():
            if line.startswith('{"axes"'):
                row = json.loads(line)
                if row["axes"] not in args.only.split(","):
                    rows.append(row)
                    if row.get("feasible"):
                        answers[row["axes"]] = row["levels"]
    for label in args.only.split(","):
        frac = args.tokens_budget if label == "tokens" else args.budget
        warm = [answers[k] for k in ("channel", "tokens+T") if label == "both" and k in answers]
        row = run_axes(label, AXES[label], frac * base_macs, args, Path(args.out), warm)
        row["budget_fraction"] = frac
        rows.append(row)
        if row.get("feasible"):
            answers[label] = row["levels"]
        print(json.dumps(row), flush=True)
    out = {"base": base, "rows": rows, "args": vars(args)}
    dest = ROOT / "benchmarks" / "results" / "tokens.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print("| axes | MAC budget | GMACs | GSOPs | param MB | top-1 eval / confirm / test | fine-tuned eval / confirm / test |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    a = base["acc"]
    print(f"| unpruned | - | {base_macs:.4f} | {base['sops_g']:.4f} | {base['param_mb']:.3f} | "
          f"{a['eval']:.2f} / {a['confirm']:.2f} / {a['test']:.2f} | - |")
    for r in rows:
        if not r.get("feasible"):
            print(f"| {r['axes']} | {r['budget_fraction']:.2f} | - | - | - | infeasible | - |")
            continue
        a, f = r["acc"], r["acc_finetuned"]
        print(f"| {r['axes']} | {r['budget_fraction']:.2f} | {r['macs_g']:.4f} | {r['sops_g']:.4f} | {r['param_mb']:.3f} | "
              f"{a['eval']:.2f} / {a['confirm']:.2f} / {a['test']:.2f} | {f['eval']:.2f} / {f['confirm']:.2f} / {f['test']:.2f} |")


if __name__ == "__main__":
    main()
