"""Pareto fronts and the trial tables written to a run directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from hwsearch.search.results import COST_KEYS, MEASURED_BUDGETS, Result, non_dominated, objective_value
from hwsearch.search.encoding import PlanEncoding

__all__ = ["trials_frame", "pareto_front", "plot_pareto", "runner_ups"]


def trials_frame(results: Sequence[Result], space: PlanEncoding) -> pd.DataFrame:
    """One row per evaluated candidate: per-group rates, accuracy, every cost, feasibility.

    Measured costs (``sops_g``, ``energy_mj``, ``latency_ms``) and ``measured_on`` (where the latency was
    timed) are columns only when some candidate was measured; unmeasured candidates leave them empty.
    """
    rows = []
    measured = [k for k in MEASURED_BUDGETS if any(k in r.costs for r in results)]  # only when a model measured them
    where = any(r.measured_on for r in results)
    for r in results:
        row: dict[str, object] = {"number": r.number, "tag": r.candidate.tag, "status": r.status,
                                  "accuracy": r.accuracy, "acc_drop": r.acc_drop}
        row.update({k: r.costs.get(k) for k in ("params", "param_mb", "macs_g", "act_mb")})
        row.update({k: r.costs.get(k) for k in measured})
        row["feasible"] = r.feasible
        row.update({f"over_{k}": v for k, v in r.violations.items()})
        for v in space.variables:
            row[f"rate:{v.name}"] = round(v.rates[r.candidate.levels.get(v.name, 0)], 4)
        row["samples"] = r.samples
        row["seconds"] = round(r.seconds, 3)
        row["error"] = r.error
        row["key"] = r.candidate.key
        if where:
            row["measured_on"] = r.measured_on
        rows.append(row)
    if not rows:  # the header alone, so an empty table still reads back
        cols = ["number", "tag", "status", "accuracy", "acc_drop", *COST_KEYS, "feasible",
                *[f"rate:{v.name}" for v in space.variables], "samples", "seconds", "error", "key"]
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows)


def pareto_front(results: Sequence[Result], cost_keys: Sequence[str] = ("param_mb", "macs_g"),
                 feasible_only: bool = True) -> list[Result]:
    """Non-dominated results: maximise accuracy, minimise each of ``cost_keys`` (one per candidate key)."""
    pool: dict[str, Result] = {}
    for r in results:
        if r.ok and r.accuracy is not None and (r.feasible or not feasible_only):
            pool.setdefault(r.candidate.key, r)
    front = non_dominated(list(pool.values()),
                          lambda r: (-float(r.accuracy), *(float(r.costs[c]) for c in cost_keys)))  # type: ignore[arg-type]
    return sorted(front, key=lambda r: float(r.costs[cost_keys[0]]))


def runner_ups(results: Sequence[Result], best: Result | None, objective: str = "accuracy") -> list[Result]:
    """The plans after the answer, best first: the feasible Pareto front in ``objective`` order, then the
    candidates that meet every cost budget and miss only the drop limit (non-dominated, most accurate
    first: fine-tuning may bring them within it). The answer itself is left out."""
    front = pareto_front(results)
    front.sort(key=lambda r: -objective_value(r, objective))
    near = [r for r in results if r.ok and not r.feasible
            and all(v <= 1e-12 for k, v in r.violations.items() if k != "acc_drop")]
    near_front = pareto_front(near, feasible_only=False)
    near_front.sort(key=lambda r: -float(r.accuracy or 0.0))
    skip = {best.candidate.key} if best is not None else set()
    out = []
    for r in [*front, *near_front]:
        if r.candidate.key not in skip:
            skip.add(r.candidate.key)
            out.append(r)
    return out


def plot_pareto(series: Mapping[str, Sequence[Result]], path: str, *, baseline: Result | None = None,
                budgets: dict[str, float | None] | None = None, title: str = "") -> None:
    """Accuracy vs parameter memory and vs MACs: every candidate faint, the feasible front bold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "param_mb", "parameter memory (MB)"), (axes[1], "macs_g", "dense GMACs / image")):
        for i, (name, results) in enumerate(series.items()):
            color = f"C{i}"
            ok = [r for r in results if r.ok and r.accuracy is not None]
            color = "grey" if name == "profile" else color
            ax.scatter([r.costs[key] for r in ok], [r.accuracy for r in ok], s=10, alpha=0.25, color=color)
            front = pareto_front(results, (key,))
            ax.plot([r.costs[key] for r in front], [r.accuracy for r in front], "o-", color=color, ms=4, label=name)
        if baseline is not None and baseline.accuracy is not None:
            ax.scatter([baseline.costs[key]], [baseline.accuracy], marker="*", s=120, color="k", label="baseline")
        limit = (budgets or {}).get(key)
        if limit is not None:
            ax.axvline(limit, ls="--", color="grey", lw=1, label="budget")
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
