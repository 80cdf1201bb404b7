"""Writing a run directory: trials.csv, pareto.csv, pareto.png, best/, report.md."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_outputs", "report_markdown"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def report_markdown(setup: Any, res: Any) -> str:
    """The run report: requested vs achieved first, then constraints, per-layer rates, top candidates."""
    c, base, best = setup.constraints, res.baseline, res.best
    lines = [f"# hwsearch run: {setup.study.name} / {res.strategy}", ""]
    if res.interrupted:
        lines += ["**Interrupted**: the results below are partial; continue with `--resume`.", ""]
    lines += ["## Requested vs achieved", "", "| metric | requested | baseline | pruned | ratio |", "| --- | ---: | ---: | ---: | ---: |"]
    rows = [("parameters", None, "params"), (f"parameter memory (MB, {c.dtype})", c.param_mb, "param_mb"),
            ("dense MACs (G / image)", c.macs_g, "macs_g"), ("spike-activation memory (MB)", c.act_mb, "act_mb")]
    for label, req, key in rows:
        b = base.costs.get(key)
        p = best.costs.get(key) if best else None
        ratio = f"{p / b:.3f}" if best and b else "-"
        lines.append(f"| {label} | {'≤ ' + _fmt(req) if req is not None else '-'} | {_fmt(b)} | {_fmt(p)} | {ratio} |")
    drop_req = f"drop ≤ {c.max_acc_drop:g}" if c.max_acc_drop is not None else "-"
    lines.append(f"| top-1 eval split ({setup.study.data.eval_split}, %) | {drop_req} | {_fmt(base.accuracy)} | "
                 f"{_fmt(best.accuracy if best else None)} | {'-' if not best else f'{best.accuracy - base.accuracy:+.2f} pt'} |")
    if res.baseline_test_accuracy is not None:
        lines.append(f"| top-1 test split ({setup.study.data.test_split}, %) | - | {_fmt(res.baseline_test_accuracy)} | "
                     f"{_fmt(res.best_test_accuracy)} | "
                     f"{'-' if res.best_test_accuracy is None else f'{res.best_test_accuracy - res.baseline_test_accuracy:+.2f} pt'} |")
    lines.append("")
    if best is None:
        lines += ["**No evaluated candidate met every constraint.** Relax the budget or the accuracy-drop limit.", ""]
    lines += ["## Run", "", f"- model `{setup.space.model}`, checkpoint sha256 `{setup.space.checkpoint_sha256[:12]}`",
              f"- strategy `{res.strategy}`, {res.evaluations} accuracy evaluations, {res.seconds:.1f} s",
              f"- searched groups: {len(setup.space)} ({', '.join(sorted({v.kind for v in setup.space.variables}))}), "
              f"ranking `{setup.space.criterion}`",
              f"- constraints: {json.dumps(c.to_dict())}", ""]
    if res.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in res.notes], ""]
    if best is not None:
        lines += ["## Per-group rates of the best candidate", "", "| group | kind | width | kept | rate |", "| --- | --- | ---: | ---: | ---: |"]
        for v in setup.space.variables:
            lv = best.candidate.levels.get(v.name, 0)
            lines.append(f"| {v.name} | {v.kind} | {v.width} | {v.levels[lv]} | {v.rates[lv]:.2f} |")
        lines.append("")
    ok = sorted([r for r in res.results if r.feasible], key=lambda r: -(r.accuracy or 0))[:10]
    if ok:
        lines += ["## Top feasible candidates", "", "| # | top-1 | drop | param MB | GMACs | act MB | tag |", "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in ok:
            lines.append(f"| {r.number} | {r.accuracy:.2f} | {r.acc_drop:.2f} | {r.costs['param_mb']:.4g} | "
                         f"{r.costs['macs_g']:.4g} | {r.costs['act_mb']:.4g} | {r.candidate.tag} |")
        lines.append("")
    lines += ["Files: `trials.csv` (every candidate), `pareto.csv`, `pareto.png`, `best/` (pruned model), "
              "`optuna.journal` (open with optuna-dashboard).", ""]
    return "\n".join(lines)


def write_outputs(setup: Any, res: Any) -> None:
    """Write every output of a finished (or interrupted) search into its run directory."""
    from hwsearch.pareto import plot_pareto

    out: Path = setup.run_dir
    out.mkdir(parents=True, exist_ok=True)
    res.trials.to_csv(out / "trials.csv", index=False)
    res.pareto.to_csv(out / "pareto.csv", index=False)
    budgets = {"param_mb": setup.constraints.param_mb, "macs_g": setup.constraints.macs_g}
    plot_pareto({res.strategy: res.results}, str(out / "pareto.png"), baseline=res.baseline, budgets=budgets,
                title=f"{setup.study.name}: {res.strategy}")
    if res.best_model is not None:
        from hwsearch.pruning import save_pruned

        save_pruned(res.best_model, out / "best")
        summary = {"accuracy_eval": res.best.accuracy, "accuracy_test": res.best_test_accuracy, **res.best.costs}
        _atomic_write(out / "best" / "summary.json", json.dumps(summary, indent=1) + "\n")
    _atomic_write(out / "report.md", report_markdown(setup, res))
