"""Writing a run directory: trials.csv, pareto.csv, pareto.png, best/, report.md."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwsearch.atomic import atomic_write_text
from hwsearch.search.costing import METRICS
from hwsearch.search.results import MEASURED_BUDGETS, rank_feasible

log = logging.getLogger(__name__)

__all__ = ["write_outputs", "report_markdown", "token_flow", "work_columns", "plan_token_flow"]


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


TOKENS_NOTE = ("`tokens`: the tokens the group's block runs on (kept image tokens + 1 package token once any "
               "selection pruned; a token group's `kept` is its keep ratio of the tokens reaching it); "
               "`T` rows: time steps.")


def token_flow(space: Any, levels: Mapping[str, int]) -> dict[str, str]:
    """Block path (and ``T``) -> tokens (and steps) of a candidate, when the space searches tokens or T."""
    from hwsearch.pruning import token_schedule

    tokens = [v for v in space.variables if v.kind == "tokens"]
    steps = [v for v in space.variables if v.kind == "time"]
    if not tokens and not steps:
        return {}
    out: dict[str, str] = {}
    if tokens:
        points = [(v.levels[levels.get(v.name, 0)], True) for v in tokens]
        for v, p in zip(tokens, token_schedule(tokens[0].width, points)):
            out[v.name.removesuffix(".tokens")] = f"{p.image} + 1" if p.package else str(p.image)
    for v in steps:
        out["T"] = f"T = {v.levels[levels.get(v.name, 0)]}"
    return out


def work_columns(space: Any, best: Any) -> dict[str, str | None]:
    """``comparison.csv`` columns of an answer: ``tokens`` (per token block, kept + package) and ``T``;
    empty when the space searches neither."""
    flow = token_flow(space, best.candidate.levels if best is not None else {})
    if not flow:
        return {}
    blocks = "; ".join(f"{b}: {t}" for b, t in flow.items() if b != "T")
    return {"tokens": blocks if best is not None else None, "T": flow.get("T", "").removeprefix("T = ") or None}


def plan_token_flow(plan: Any) -> str | None:
    """One line: the tokens each token block of a (resolved) plan runs on, and T; None when it prunes neither."""
    import torch

    from hwsearch.pruning import TimeGroup, groups_of
    from hwsearch.pruning import selection_points
    from search_spaces import get_config

    with torch.device("meta"):
        skeleton = get_config(plan.model).build(**dict(plan.model_kwargs))
    groups = groups_of(skeleton)
    points = selection_points(groups, plan.keep)
    steps = next((g for g in groups if isinstance(g, TimeGroup)), None)
    t = plan.counts().get("T") if steps is not None else None
    if not any(p.active for _, p in points) and (steps is None or t is None or t == steps.width):
        return None
    flow = ", ".join(f"{g.block} {p.image}{' + 1' if p.package else ''}" for g, p in points)
    return f"tokens per block (kept + package): {flow}" + (f"; T = {t}" if t is not None else "")


def _tokens_cell(flow: Mapping[str, str], name: str) -> str:
    if name == "T":
        return flow.get("T", "-")
    block = max((b for b in flow if b != "T" and name.startswith(b + ".")), key=len, default=None)
    return flow[block] if block is not None else "all"


def report_markdown(setup: Any, res: Any) -> str:
    """The run report: requested vs achieved first, then constraints, per-layer rates, top candidates."""
    c, base, best = setup.constraints, res.baseline, res.best
    lines = [f"# hwsearch run: {setup.study.name} / {res.strategy}", ""]
    if res.interrupted:
        lines += ["**Interrupted**: the results below are partial; continue with `--resume`.", ""]
    lines += ["## Requested vs achieved", "", "| metric | requested | baseline | pruned | ratio |", "| --- | ---: | ---: | ---: | ---: |"]
    rows = [("parameters", None, "params"), (f"parameter memory (MB, {c.dtype})", c.param_mb, "param_mb"),
            ("dense MACs (G / image)", c.macs_g, "macs_g"), ("spike-activation memory (MB)", c.act_mb, "act_mb")]
    rows += [(f"{METRICS[k].label} ({METRICS[k].unit}, measured)", getattr(c, k), k) for k in MEASURED_BUDGETS
             if getattr(c, k) is not None or k in base.costs]
    for label, req, key in rows:
        b = base.costs.get(key)
        p = best.costs.get(key) if best else None
        ratio = f"{p / b:.3f}" if best and b else "-"
        lines.append(f"| {label} | {'≤ ' + _fmt(req) if req is not None else '-'} | {_fmt(b)} | {_fmt(p)} | {ratio} |")
    drop_req = f"drop ≤ {c.max_acc_drop:g}" if c.max_acc_drop is not None else "-"
    d = setup.study.data
    splits = [("eval", d.eval_split, base.accuracy, best.accuracy if best else None, drop_req, "selected on"),
              ("confirm", d.confirm_split, res.baseline_confirm_accuracy, res.best_confirm_accuracy, "-", "re-measured"),
              ("test", d.test_split, res.baseline_test_accuracy, res.best_test_accuracy, "-", "re-measured")]
    for label, split, b_acc, p_acc, req, _ in splits:
        if split is None or b_acc is None:
            continue
        delta = "-" if p_acc is None else f"{p_acc - b_acc:+.2f} pt"
        lines.append(f"| top-1 {label} split ({split}, %) | {req} | {_fmt(b_acc)} | {_fmt(p_acc)} | {delta} |")
    lines.append("")
    if best is None:
        lines += ["**No evaluated candidate met every constraint.** Relax the budget or the accuracy-drop limit.", ""]
    else:
        drops = [("eval", best.acc_drop), ("confirm", res.confirm_drop), ("test", res.test_drop)]
        lines += ["Accuracy drop of the answer (points): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in drops if v is not None) + ".", ""]
        if c.max_acc_drop is not None and res.test_drop is not None and res.test_drop > c.max_acc_drop:
            lines += [f"**Warning**: on the test split the drop is {res.test_drop:.2f} points, above the limit "
                      f"{c.max_acc_drop:g} that the eval split met: the eval split is small or the answer over-fits "
                      "the selection. Use a larger eval split (or `eval_subset`), or a stricter --max-acc-drop.", ""]
    objective = "top-1 within the budgets" if res.objective == "accuracy" else f"smallest {res.objective} within the drop limit"
    lines += ["## Run", "", f"- model `{setup.space.model}`, checkpoint sha256 `{setup.space.checkpoint_sha256[:12]}`",
              f"- strategy `{res.strategy}`, objective: {objective}; {res.evaluations} new accuracy evaluations, "
              f"{res.seconds:.1f} s",
              f"- shared profile: {res.profile_evaluations} new evaluations ({res.profile_source or 'none'})",
              f"- evaluator: batch-norm re-estimation on {setup.spec.bn_recalibrate} batches of "
              f"`{setup.study.data.calib_split}`; early stop {'on' if setup.spec.stop_drop is not None else 'off'}",
              f"- searched groups: {len(setup.space)} ({', '.join(sorted({v.kind for v in setup.space.variables}))}), "
              f"ranking `{setup.space.criterion}`",
              f"- constraints: {json.dumps(c.to_dict())}", ""]
    lines += cost_model_lines(setup, res)
    if res.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in res.notes], ""]
    if best is not None:
        flow = token_flow(setup.space, best.candidate.levels)
        head, rule = (" tokens |", " ---: |") if flow else ("", "")
        lines += ["## Per-group rates of the best candidate", "", f"| group | kind | width | kept | rate |{head}",
                  f"| --- | --- | ---: | ---: | ---: |{rule}"]
        for v in setup.space.variables:
            lv = best.candidate.levels.get(v.name, 0)
            cell = f" {_tokens_cell(flow, v.name)} |" if flow else ""
            lines.append(f"| {v.name} | {v.kind} | {v.width} | {v.levels[lv]} | {v.rates[lv]:.2f} |{cell}")
        lines.append("")
        if flow:
            lines += [TOKENS_NOTE, ""]
    if res.confirmations:
        lines += ["## Re-measured on the confirmation and test splits", "",
                  "| candidate | eval top-1 | confirm top-1 | test top-1 |", "| --- | ---: | ---: | ---: |"]
        for i, cf in enumerate(res.confirmations):
            label = "answer" if i == 0 and best is not None else f"pareto {cf.key[:8]}"
            lines.append(f"| {label} | {cf.eval_accuracy:.2f} | {_fmt(cf.confirm_accuracy)} | {_fmt(cf.test_accuracy)} |")
        lines.append("")
    ok = rank_feasible(res.results)[:10]  # the most accurate first, as the answer is picked
    if ok:
        extra = [k for k in MEASURED_BUDGETS if k in res.baseline.costs]
        heads = {"sops_g": "GSOPs", "energy_mj": "mJ", "latency_ms": "latency ms"}
        lines += ["## Top feasible candidates", "",
                  "| # | top-1 | drop | param MB | GMACs | act MB | " + "".join(f"{heads[k]} | " for k in extra) + "tag |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | " + "---: | " * len(extra) + "--- |"]
        for r in ok:
            lines.append(f"| {r.number} | {r.accuracy:.2f} | {r.acc_drop:.2f} | {r.costs['param_mb']:.4g} | "
                         f"{r.costs['macs_g']:.4g} | {r.costs['act_mb']:.4g} | "
                         + "".join(f"{_fmt(r.costs.get(k))} | " for k in extra) + f"{r.candidate.tag} |")
        lines.append("")
    out = Path(getattr(res, "run_dir", None) or setup.run_dir)  # in a comparison: this strategy's folder
    files = [("trials.csv", "every candidate"), ("pareto.csv", "non-dominated feasible candidates"),
             ("pareto.png", "the front"), ("best", "the pruned model"), ("sensitivity.csv", "the shared profile"),
             ("optuna.journal", "open with optuna-dashboard")]
    present = []
    for n, what in files:  # only files that are there, named relative to this report
        if (out / n).exists() or (n == "best" and res.best_model is not None):
            present.append(f"`{n}{'/' if n == 'best' else ''}` ({what})")
        elif n in ("sensitivity.csv", "optuna.journal") and (out.parent / n).exists():
            present.append(f"`../{n}` ({what}, shared by the comparison)")
    lines += ["Files: " + ", ".join(present) + ".", ""]
    return "\n".join(lines)


def write_outputs(setup: Any, res: Any, *, report_only: bool = False) -> None:
    """Write every output of a finished (or interrupted) search into its run directory (or only report.md)."""
    from hwsearch.reports.pareto import plot_pareto

    out: Path = setup.run_dir
    out.mkdir(parents=True, exist_ok=True)
    if report_only:
        atomic_write_text(out / "report.md", report_markdown(setup, res))
        return
    res.trials.to_csv(out / "trials.csv", index=False)
    res.pareto.to_csv(out / "pareto.csv", index=False)
    budgets = {"param_mb": setup.constraints.param_mb, "macs_g": setup.constraints.macs_g}
    plot_pareto({res.strategy: res.results}, str(out / "pareto.png"), baseline=res.baseline, budgets=budgets,
                title=f"{setup.study.name}: {res.strategy}")
    if res.best_model is not None:
        from hwsearch.pruning import save_pruned

        save_pruned(res.best_model, out / "best")
        summary = {"key": res.best.candidate.key, "accuracy_eval": res.best.accuracy,
                   "accuracy_confirm": res.best_confirm_accuracy, "accuracy_test": res.best_test_accuracy,
                   **res.best.costs}
        atomic_write_text(out / "best" / "summary.json", json.dumps(summary, indent=1) + "\n")
    if not res.interrupted:
        from hwsearch.reports.runplans import write_runner_ups

        write_runner_ups(setup, res, out)  # the plans `finetune --top K` fine-tunes after the answer
    atomic_write_text(out / "report.md", report_markdown(setup, res))
    log.info("wrote %s: trials.csv (%d rows), pareto.csv (%d), pareto.png, report.md%s", out, len(res.trials),
             len(res.pareto), ", best/" if res.best_model is not None else "")


def cost_model_lines(setup: Any, res: Any) -> list[str]:
    """The report's "Cost models" section: which numbers are analytic, which measured, and where."""
    names = tuple(getattr(setup.spec, "cost_models", ("analytic",)))
    d = setup.study.data
    lines = ["## Cost models", "",
             f"- cost models: {', '.join(f'`{n}`' for n in names)}",
             "- **analytic** (predicted from each plan, exact: equal to the pruned model): parameters, parameter "
             "memory, dense MACs, spike-activation memory; the strategies plan on these"]
    measured = [k for k in MEASURED_BUDGETS if k in res.baseline.costs]
    if not measured:
        return lines + ["- **measured**: none (no SOP, energy or latency budget, and no forward-needing cost model)", ""]
    images = getattr(setup.local, "total", None)
    if "sops_g" in measured or "energy_mj" in measured:
        lines.append("- **measured** on each fully evaluated candidate's own pruned model: SOPs"
                     + (" and the energy estimate" if "energy_mj" in measured else "")
                     + f" from its firing rates over the eval split `{d.eval_split}`"
                     + (f" ({images} images)" if images else "")
                     + "; SOP = rate of the input LIF x dense MACs of binary-input layers (cost-conventions §4)")
    if "energy_mj" in measured:
        from costmodels import ENERGY_CAVEAT

        lines.append(f"- energy is an {ENERGY_CAVEAT}")
    if "latency_ms" in measured:
        where = (res.best.measured_on if res.best is not None and res.best.measured_on else res.baseline.measured_on)
        lines.append(f"- **measured** latency: median of timed forwards of {_latency_batch(setup)} image(s) on the machine "
                     f"that evaluated the candidate: {where or 'unknown'}")
    lines += ["- the shared profile's single-group candidates are not measured: a measured budget counts them "
              "infeasible; candidates stopped early are not measured either", ""]
    return lines


def _latency_batch(setup: Any) -> int:
    return int(getattr(setup.constraints, "latency_batch", 1))


FINETUNE_HEADING = "## Fine-tuning"
#: Columns the fine-tuned models add to pareto.csv and trials.csv (on their candidate's row).
FINETUNE_COLUMNS = ("finetuned_eval_accuracy", "finetuned_confirm_accuracy", "finetuned_test_accuracy",
                    "finetune_epochs", "finetune_s")


def _summary(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _found_finetunes(run_dir: Path) -> list[Any]:
    """Fine-tuning results already in a run directory (``best-finetuned/``, ``pareto/<key>-finetuned/``)."""
    from hwsearch.finetune import SUMMARY_FILE, FinetuneResult

    out = []
    for path in [run_dir / "best-finetuned" / SUMMARY_FILE, *sorted(run_dir.glob(f"pareto/*-finetuned/{SUMMARY_FILE}"))]:
        try:
            out.append(FinetuneResult.from_dict(json.loads(path.read_text())))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError):
            continue
    return out


def append_finetune_section(run_dir: Path, results: Any) -> None:
    """Add (or replace) the with/without fine-tuning table in ``report.md`` and the fine-tuned columns
    (:data:`FINETUNE_COLUMNS`) of each fine-tuned candidate's row in ``pareto.csv`` and ``trials.csv``.

    ``results``: :class:`~hwsearch.finetune.FinetuneResult` (one or a sequence); fine-tuned models
    already in the run directory (``best-finetuned/``, ``pareto/<key>-finetuned/``) stay in the table.
    """
    import pandas as pd

    given = [results] if not isinstance(results, (list, tuple)) else list(results)
    merged = {str(Path(r.out_dir).resolve()): r for r in _found_finetunes(run_dir)}
    merged.update({str(Path(r.out_dir).resolve()): r for r in given})
    rows = sorted(merged.values(), key=lambda r: (Path(r.model_dir).name != "best",
                                                  _summary(r.model_dir).get("rank", 0), r.out_dir))
    report = run_dir / "report.md"
    text = report.read_text()
    if FINETUNE_HEADING in text:
        text = text[: text.index(FINETUNE_HEADING)].rstrip() + "\n"
    lines = [FINETUNE_HEADING, "",
             "Each model fine-tuned with surrogate gradients on the training split, the epoch best on the eval split "
             "kept (0 = as pruned); top-1 without -> with fine-tuning.", "",
             "| model | folder | loss | epochs | kept epoch | eval top-1 | confirm top-1 | test top-1 | time |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        info = _summary(r.model_dir)
        label = ("answer" if Path(r.model_dir).name == "best" else
                 f"pareto #{info.get('rank', '?')}" + ("" if info.get("feasible", True) else " (missed the drop limit)"))
        loss = ("distillation" if r.loss == "kd" else "cross-entropy") + f", lr {r.lr:g}"
        cells = [f"{b:.2f} -> {a:.2f} %" if b is not None and a is not None else "-"
                 for b, a in ((r.eval_before, r.eval_after), (r.confirm_before, r.confirm_after),
                              (r.test_before, r.test_after))]
        folder, base = Path(r.out_dir).resolve(), run_dir.resolve()
        shown = folder.relative_to(base) if folder.is_relative_to(base) else folder
        lines.append(f"| {label} | `{shown}` | {loss} | {r.epochs} | {r.best_epoch} | {' | '.join(cells)} | "
                     f"{r.seconds:.1f} s |")
    atomic_write_text(report, text.rstrip() + "\n\n" + "\n".join(lines) + "\n")
    by_key = {str(_summary(r.model_dir).get("key")): r for r in rows if _summary(r.model_dir).get("key")}
    for name in ("pareto.csv", "trials.csv"):
        path = run_dir / name
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        for col in FINETUNE_COLUMNS:
            if col not in frame.columns:
                frame[col] = None
        if "key" in frame.columns:
            for key, r in by_key.items():
                row = frame["key"].astype(str) == key
                for col, value in zip(FINETUNE_COLUMNS, (r.eval_after, r.confirm_after, r.test_after, r.epochs,
                                                         round(r.seconds, 1))):
                    frame.loc[row, col] = value
        atomic_write_text(path, frame.to_csv(index=False))
