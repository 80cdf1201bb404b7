"""Plain data passed between strategies, evaluators, runners and storage."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Candidate", "Result", "Constraints", "candidate_key", "COST_KEYS", "OBJECTIVES", "select_best",
           "rank_feasible", "objective_value", "ANALYTIC_BUDGETS", "MEASURED_BUDGETS", "BUDGET_KEYS", "non_dominated"]

T = TypeVar("T")

#: Cost metrics every Result carries (analytic, exact for params and MACs).
COST_KEYS: tuple[str, ...] = ("params", "param_mb", "macs_g", "act_mb")
#: Budgets on analytic costs: predicted exactly from a plan, so strategies plan on them.
ANALYTIC_BUDGETS: tuple[str, ...] = ("param_mb", "macs_g", "act_mb")
#: Budgets on costs measured on each evaluated candidate's own forward (SOPs and energy from its firing
#: rates, latency from timing it): checked after the evaluation, never predicted.
MEASURED_BUDGETS: tuple[str, ...] = ("sops_g", "energy_mj", "latency_ms")
BUDGET_KEYS: tuple[str, ...] = ANALYTIC_BUDGETS + MEASURED_BUDGETS
#: What a search optimises among the feasible candidates: top-1 (``accuracy``, the default when a cost
#: budget is set) or one cost to minimise under the accuracy-drop limit (the default without a budget).
OBJECTIVES: tuple[str, ...] = ("accuracy", "param_mb", "macs_g", "act_mb")


def candidate_key(levels: Mapping[str, int]) -> str:
    """Stable identity of a candidate: the non-zero levels, sorted, hashed."""
    norm = {k: int(v) for k, v in sorted(levels.items()) if int(v)}
    return hashlib.sha256(json.dumps(norm, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A point of the search space: variable name -> level index (0 = unpruned; omitted = 0).

    ``tag`` says why a strategy asked for it (``profile``, ``greedy``, ``tpe``, ...); it is recorded but
    does not change the identity: the same levels are the same candidate, evaluated once. ``rungs`` are
    successive-halving bars set by the driver at submission (``(images seen, correct needed)``: the
    evaluation stops as ``halved`` when a bar is missed); like the tag they do not change the identity,
    and they are not stored.
    """

    levels: Mapping[str, int]
    tag: str = ""
    rungs: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", {k: int(v) for k, v in sorted(self.levels.items()) if int(v)})

    @property
    def key(self) -> str:
        return candidate_key(self.levels)

    def to_dict(self) -> dict[str, Any]:
        return {"levels": dict(self.levels), "tag": self.tag}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(levels=dict(data.get("levels", {})), tag=str(data.get("tag", "")))


@dataclass(frozen=True, slots=True, kw_only=True)
class Constraints:
    """The user's budget; None means unconstrained.

    Attributes:
        param_mb: parameter memory in MB (10^6 bytes) at ``dtype``.
        macs_g: dense MACs per image in G (10^9).
        act_mb: spike-activation memory in MB.
        sops_g: synaptic operations per image in G, from the candidate's own firing rates on the eval
            split (measured).
        energy_mj: energy estimate per image in mJ (E_MAC·MACs(non-binary inputs) + E_AC·SOPs, measured
            firing rates; an estimate that ignores data movement).
        latency_ms: median latency of one forward of ``latency_batch`` images on the evaluating machine
            (measured).
        latency_batch: images per timed forward (for ``latency_ms``).
        max_acc_drop: largest allowed top-1 drop from the baseline, percentage points.
        dtype: deployment dtype of the weights.
    """

    param_mb: float | None = None
    macs_g: float | None = None
    act_mb: float | None = None
    sops_g: float | None = None
    energy_mj: float | None = None
    latency_ms: float | None = None
    latency_batch: int = 1
    max_acc_drop: float | None = None
    dtype: str = "fp32"

    def budgets(self) -> dict[str, float]:
        """Every cost budget that is set: metric key -> limit."""
        return {k: float(getattr(self, k)) for k in BUDGET_KEYS if getattr(self, k) is not None}

    def measured_budgets(self) -> dict[str, float]:
        """The budgets that only a measurement of the candidate itself can check (:data:`MEASURED_BUDGETS`)."""
        return {k: v for k, v in self.budgets().items() if k in MEASURED_BUDGETS}

    def cost_violations(self, costs: Mapping[str, float]) -> dict[str, float]:
        """Amount by which each analytic cost budget is exceeded (> 0), for the budgets set.

        Only the budgets a plan's predicted costs can answer (:data:`ANALYTIC_BUDGETS`): what strategies
        plan on. :meth:`violations` adds the measured budgets.
        """
        out = {}
        for key in ANALYTIC_BUDGETS:
            limit = getattr(self, key)
            if limit is not None:
                out[key] = float(costs[key]) - float(limit)
        return out

    def violations(self, costs: Mapping[str, float], acc_drop: float | None) -> dict[str, float]:
        """Every constraint's excess (feasible when all are <= 0).

        The accuracy drop and the measured budgets need a measurement: without one (a failed or stopped
        candidate, one answered from the shared profile) their excess is ``inf``.
        """
        out = self.cost_violations(costs)
        for key, limit in self.measured_budgets().items():
            value = costs.get(key)
            out[key] = float("inf") if value is None or value != value else float(value) - limit
        if self.max_acc_drop is not None:
            out["acc_drop"] = float("inf") if acc_drop is None else float(acc_drop) - float(self.max_acc_drop)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; the measured budgets only when set (older run fingerprints stay valid)."""
        out: dict[str, Any] = {"param_mb": self.param_mb, "macs_g": self.macs_g, "act_mb": self.act_mb,
                               "max_acc_drop": self.max_acc_drop, "dtype": self.dtype}
        out.update(self.measured_budgets())
        if self.latency_ms is not None:
            out["latency_batch"] = self.latency_batch
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The measurement of one candidate.

    Attributes:
        candidate: what was evaluated.
        status: ``ok``; ``stopped`` (multi-fidelity early stop: the errors seen on the first ``samples``
            images already break the drop limit, so ``accuracy`` is the most it could have reached and
            ``acc_drop`` the least drop: exact bounds, never estimates); ``halved`` (successive halving:
            its top-1 on the first ``samples`` images was below the bar of that rung, so it was not
            measured further; ``accuracy`` and ``acc_drop`` are the same exact bounds, but unlike a
            stopped candidate it might have met the drop limit); or ``failed`` (the evaluation raised or
            its worker died; ``error`` says why).
        accuracy: top-1 in percent on the evaluation split (None when failed; an upper bound when stopped).
        acc_drop: baseline accuracy minus ``accuracy``, percentage points (a lower bound when stopped).
        costs: analytic costs (:data:`COST_KEYS` at least; params and MACs are exact).
        violations: constraint -> excess (feasible when all <= 0).
        seconds: wall time of the evaluation.
        number: evaluation order within the run (set by the driver).
        samples: evaluation images the accuracy was measured on (fewer than the split when stopped).
        stage_correct: cumulative correct predictions after each evaluated batch (successive halving
            compares candidates on them).
        measured_on: where the measured costs (``costs`` keys of :data:`MEASURED_BUDGETS`) were
            measured: the latency's device label (CPU model, threads, torch, batch), '' when none were.
    """

    candidate: Candidate
    status: str
    accuracy: float | None = None
    acc_drop: float | None = None
    costs: Mapping[str, float] = field(default_factory=dict)
    violations: Mapping[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""
    number: int = -1
    samples: int = 0
    stage_correct: tuple[int, ...] = ()
    measured_on: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def stopped(self) -> bool:
        return self.status == "stopped"

    @property
    def halved(self) -> bool:
        return self.status == "halved"

    @property
    def partial(self) -> bool:
        """Measured on part of the split (stopped or halved): ``accuracy`` is an upper bound."""
        return self.status in ("stopped", "halved")

    @property
    def feasible(self) -> bool:
        return self.ok and all(v <= 1e-12 for v in self.violations.values())

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate.to_dict(), "status": self.status, "accuracy": self.accuracy,
                "acc_drop": self.acc_drop, "costs": dict(self.costs), "violations": dict(self.violations),
                "seconds": self.seconds, "error": self.error, "number": self.number,
                "samples": self.samples, "stage_correct": list(self.stage_correct),
                **({"measured_on": self.measured_on} if self.measured_on else {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        return cls(candidate=Candidate.from_dict(data["candidate"]), status=str(data["status"]),
                   accuracy=data.get("accuracy"), acc_drop=data.get("acc_drop"), costs=dict(data.get("costs", {})),
                   violations=dict(data.get("violations", {})), seconds=float(data.get("seconds", 0.0)),
                   error=str(data.get("error", "")), number=int(data.get("number", -1)),
                   samples=int(data.get("samples", 0)),
                   stage_correct=tuple(int(c) for c in data.get("stage_correct", ())),
                   measured_on=str(data.get("measured_on", "")))


def objective_value(result: Result, objective: str) -> float:
    """The quantity ``objective`` ranks by, as a number to maximise (costs are negated)."""
    if objective == "accuracy":
        return float(result.accuracy if result.accuracy is not None else -math.inf)
    return -float(result.costs.get(objective, math.inf))


def non_dominated(items: Sequence[T], point: Callable[[T], Sequence[float]]) -> list[T]:
    """The items whose ``point`` no other item's point dominates (every component minimised), in order.

    The one Pareto rule of hwsearch (``pareto.csv``, NSGA-II's front): ``a`` dominates ``b`` when it is no
    worse in every component and better in one.

    >>> non_dominated([(1, 2), (2, 1), (2, 2)], lambda p: p)
    [(1, 2), (2, 1)]
    """
    pts = [tuple(point(x)) for x in items]

    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))

    return [x for i, x in enumerate(items) if not any(dominates(pts[j], pts[i]) for j in range(len(items)) if j != i)]


def rank_feasible(results: Iterable[Result], objective: str = "accuracy") -> list[Result]:
    """The feasible results, best first: the highest top-1 (``accuracy``) or the smallest cost ``objective``.

    Ties: for ``accuracy`` the smaller parameter memory, for a cost the higher top-1; then the earlier
    result. This is the one rule every strategy, the driver and the reports use.
    """
    keyed = []
    for i, r in enumerate(results):
        if not r.feasible or r.accuracy is None:
            continue
        second = -float(r.costs.get("param_mb", 0.0)) if objective == "accuracy" else float(r.accuracy)
        keyed.append(((-objective_value(r, objective), -second, i), r))
    keyed.sort(key=lambda t: t[0])
    return [r for _, r in keyed]


def select_best(results: Iterable[Result], objective: str = "accuracy") -> Result | None:
    """The best feasible result under ``objective`` (:func:`rank_feasible`'s first; None if none)."""
    ranked = rank_feasible(results, objective)
    return ranked[0] if ranked else None
