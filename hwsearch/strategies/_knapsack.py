"""A global relaxation: multiple-choice knapsack over the sensitivity table, solved as a MILP.

Binary ``x[v, l]`` picks one level per variable (``sum_l x[v, l] = 1``); the objective is the predicted
loss ``sum x[v, l] * max(drop(v, l), 0)`` (single-variable drops from the sensitivity table, assumed
additive; unmeasured or failed levels are forbidden); every budgeted cost (``param_mb``, ``macs_g``,
``act_mb``) must stay within its budget: ``base + sum x[v, l] * delta_c(v, l) <= budget``.

Exactness. Each ``delta_c(v, l)`` is ``problem.predict`` of that single-variable candidate minus the
unpruned model's cost, and additivity is *verified*: the all-strongest candidate, the uniform ones and a
few seeded random ones are predicted and compared with the sum of deltas. When a cost is not separable
(embedding or stage widths multiply every block's widths), the interacting variables are found pairwise,
a small set covering every interaction (greedy vertex cover, e.g. the embedding width) is enumerated
*outside* the MILP, one MILP per combination with the deltas taken relative to that combination, and
additivity is verified again for each. If it still fails, or the combinations exceed ``max_enumeration``,
the strategy refuses with a :class:`~hwsearch.errors.UserError`; it never approximates.

The ``k`` best solutions (no-good cuts, re-solved; merged over combinations) are asked in one batch
(tag ``milp``); :attr:`KnapsackMILP.solutions` records predicted against measured drop for the report.
:func:`solve_milp` is the bare solver.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from hwsearch.errors import UserError
from hwsearch.results import Candidate
from hwsearch.space import Variable
from hwsearch.strategies._base import Problem, register_strategy
from hwsearch.strategies._stepwise import COST_BUDGET_KEYS, StepwiseStrategy, Steps

__all__ = ["KnapsackMILP", "MilpSolution", "MilpRecord", "solve_milp", "NonSeparableError"]

#: Random points (besides the strongest and uniform ones) checked for additivity, per base.
ADDITIVITY_SAMPLES = 8
#: Extra re-solves allowed for solutions the exact prediction rejects at the budget's edge.
EDGE_RETRIES = 20


class NonSeparableError(UserError):
    """A budgeted cost is not a sum of per-variable terms, even with the interacting variables fixed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MilpSolution:
    """One solution of :func:`solve_milp`: a level index per variable, and its objective."""

    choice: tuple[int, ...]
    objective: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MilpRecord:
    """A solution asked for evaluation: predicted and (once told) measured.

    Attributes:
        levels: the candidate's levels.
        predicted_loss: the MILP objective (sum of drops clipped at 0), points.
        predicted_drop: sum of the single-variable drops (unclipped), points.
        costs: predicted costs.
        measured_drop: the measured drop (None until told; inf when the evaluation failed).
        feasible: whether the measured result meets every constraint.
    """

    levels: dict[str, int]
    predicted_loss: float
    predicted_drop: float
    costs: dict[str, float]
    measured_drop: float | None = None
    feasible: bool = False


def solve_milp(loss: Sequence[Sequence[float]], deltas: Mapping[str, Sequence[Sequence[float]]],
               limits: Mapping[str, float], *, k: int = 1, exclude: Sequence[Sequence[int]] = (),
               accept: Callable[[tuple[int, ...]], bool] | None = None) -> list[MilpSolution]:
    """The ``k`` cheapest one-level-per-variable choices under linear budgets (best first).

    Minimises ``sum_v loss[v][l_v]`` subject to ``sum_v deltas[c][v][l_v] <= limits[c]`` for every ``c``.
    Each next solution excludes the previous ones with a no-good cut ``sum_v x[v, l_v] <= V - 1``.

    Args:
        loss: per variable, the loss of each level (``inf``: level forbidden).
        deltas: per cost, per variable, each level's cost change (same shape as ``loss``).
        limits: per cost, the allowed total change (``budget - base``).
        k: solutions wanted.
        exclude: choices excluded from the start.
        accept: optional exact check; a rejected solution is cut and does not count towards ``k``.

    Returns:
        Up to ``k`` solutions, fewer when the problem runs out of feasible choices.

    >>> [s.choice for s in solve_milp([[0, 1, 3], [0, 2]], {"mb": [[0, -1, -2], [0, -2]]}, {"mb": -2.5}, k=2)]
    [(1, 1), (2, 1)]
    """
    sizes = [len(row) for row in loss]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    n, nv = int(offsets[-1]), len(sizes)
    flat = np.array([float(x) for row in loss for x in row], dtype=float)
    allowed = np.isfinite(flat)
    c = np.where(allowed, flat, 0.0)
    rows, lo, hi = [], [], []
    for v in range(nv):
        row = np.zeros(n)
        row[offsets[v]:offsets[v + 1]] = 1.0
        rows.append(row), lo.append(1.0), hi.append(1.0)
    for key, limit in limits.items():
        row = np.array([float(x) for r in deltas[key] for x in r], dtype=float)
        scale = max(float(np.abs(row).max(initial=0.0)), abs(float(limit)), 1e-300)
        rows.append(row / scale), lo.append(-np.inf), hi.append(float(limit) / scale)
    cuts = [tuple(int(x) for x in ch) for ch in exclude]
    out: list[MilpSolution] = []
    retries = 0
    while len(out) < k and nv:
        a = np.array(rows + [_cut(ch, offsets, n) for ch in cuts])
        b_lo = np.array(lo + [-np.inf] * len(cuts))
        b_hi = np.array(hi + [nv - 1.0] * len(cuts))
        res = milp(c, integrality=np.ones(n), bounds=Bounds(0.0, allowed.astype(float)),
                   constraints=LinearConstraint(a, b_lo, b_hi), options={"mip_rel_gap": 0.0})
        if res.status != 0 or res.x is None:
            break
        choice = tuple(int(np.argmax(res.x[offsets[v]:offsets[v + 1]])) for v in range(nv))
        cuts.append(choice)
        if accept is not None and not accept(choice):
            retries += 1
            if retries > EDGE_RETRIES:
                break
            continue
        out.append(MilpSolution(choice=choice, objective=float(sum(flat[offsets[v] + choice[v]] for v in range(nv)))))
    if not nv and all(limit >= 0 for limit in limits.values()) and k > 0:
        out.append(MilpSolution(choice=(), objective=0.0))
    return out


def _cut(choice: Sequence[int], offsets: np.ndarray, n: int) -> np.ndarray:
    row = np.zeros(n)
    for v, lv in enumerate(choice):
        row[offsets[v] + lv] = 1.0
    return row


@register_strategy("knapsack")
class KnapsackMILP(StepwiseStrategy):
    """The multiple-choice knapsack relaxation (see the module docstring).

    Args:
        seed: seeds the random additivity checks.
        k: solutions asked for real evaluation (best predicted first).
        max_enumeration: most combinations of non-separable variables enumerated outside the MILP.
    """

    needs_sensitivity = True

    def __init__(self, *, seed: int = 0, k: int = 5, max_enumeration: int = 256) -> None:
        self.seed = seed
        self.k = k
        self.max_enumeration = max_enumeration

    def setup(self, problem: Problem) -> None:
        if int(self.k) < 1:
            raise UserError(f"knapsack: k must be >= 1, got {self.k}")
        super().setup(problem)
        self.solutions: list[MilpRecord] = []
        self.enumerated: list[str] = []

    def _steps(self) -> Steps:
        table = yield from self._sensitivity()
        p = self.problem
        loss = {v.name: [0.0] + [max(table.drop(v.name, lv), 0.0) for lv in range(1, len(v.levels))]
                for v in p.space.variables}
        raw = {v.name: [0.0] + [table.drop(v.name, lv) for lv in range(1, len(v.levels))] for v in p.space.variables}
        plans = self.plan(loss)
        if not plans:
            self._notes.append("knapsack: no choice of levels meets the budgets even at the strongest rates; "
                               "raise the budget or add axes")
            return
        cands = [Candidate(levels=levels, tag="milp") for levels, _ in plans]
        for (levels, objective), cand in zip(plans, cands):
            self.solutions.append(MilpRecord(levels=dict(cand.levels), predicted_loss=objective,
                                             predicted_drop=sum(raw[n][lv] for n, lv in cand.levels.items()),
                                             costs={k: float(x) for k, x in p.predict(cand.levels).items()}))
        answers = yield cands
        done = []
        for rec, cand in zip(self.solutions, cands):
            res = answers[cand.key]
            rec = MilpRecord(levels=rec.levels, predicted_loss=rec.predicted_loss, predicted_drop=rec.predicted_drop,
                             costs=rec.costs, measured_drop=self.measured_drop(res), feasible=self.is_feasible(cand, res))
            done.append(rec)
            self._notes.append(f"milp #{len(done)}: predicted drop {rec.predicted_drop:.3g} (loss {rec.predicted_loss:.3g}), "
                               f"measured {rec.measured_drop:.3g} points, {'feasible' if rec.feasible else 'infeasible'}; "
                               f"{self.describe_costs(rec.levels)}")
        self.solutions = done

    def plan(self, loss: Mapping[str, Sequence[float]]) -> list[tuple[dict[str, int], float]]:
        """The ``k`` best (levels, predicted loss) under the budgets, enumerating non-separable variables."""
        p = self.problem
        keys = [key for key in COST_BUDGET_KEYS if getattr(p.constraints, key) is not None]
        variables = list(p.space.variables)
        fixed_vars = self._interacting(variables, keys) if keys else []
        if fixed_vars:
            combos = math.prod(len(v.levels) for v in fixed_vars)
            names = ", ".join(v.name for v in fixed_vars)
            if combos > int(self.max_enumeration):
                raise NonSeparableError(f"knapsack: costs are not separable in {names} ({combos} level combinations "
                                        f"> max_enumeration {self.max_enumeration}); leave those axes out or raise "
                                        "max_enumeration")
            self.enumerated = [v.name for v in fixed_vars]
            self._notes.append(f"knapsack: costs not separable in {names}; enumerated {combos} combination(s) outside the MILP")
        free = [v for v in variables if v not in fixed_vars]
        found: list[tuple[float, int, dict[str, int]]] = []
        for idx, combo in enumerate(itertools.product(*(range(len(v.levels)) for v in fixed_vars))):
            base_levels = {v.name: lv for v, lv in zip(fixed_vars, combo) if lv}
            base_loss = sum(loss[n][lv] for n, lv in base_levels.items())
            if not math.isfinite(base_loss):
                continue
            deltas, limits = self._linearise(free, base_levels, keys)

            def accept(choice: tuple[int, ...], base_levels: dict[str, int] = base_levels) -> bool:
                return p.cost_feasible({**base_levels, **{v.name: lv for v, lv in zip(free, choice)}})

            sols = solve_milp([loss[v.name] for v in free], deltas, limits, k=int(self.k), accept=accept)
            for s in sols:
                levels = {**base_levels, **{v.name: lv for v, lv in zip(free, s.choice) if lv}}
                found.append((base_loss + s.objective, idx, levels))
        found.sort(key=lambda t: (t[0], t[1]))
        return [(levels, obj) for obj, _, levels in found[:int(self.k)]]

    # --------------------------------------------------------------------------------- separability
    def _linearise(self, free: Sequence[Variable], base_levels: dict[str, int],
                   keys: Sequence[str]) -> tuple[dict[str, list[list[float]]], dict[str, float]]:
        """Per-cost deltas of each free variable's levels relative to ``base_levels``, verified additive."""
        p = self.problem
        base = p.predict(base_levels)
        deltas = self._deltas(free, base_levels, keys)
        bad = self._additivity_error(free, base_levels, deltas, keys)
        if bad:
            where = f" with {base_levels} fixed" if base_levels else ""
            raise NonSeparableError(f"knapsack: cost {bad} is not a sum of per-variable terms{where}; "
                                    "the MILP would be an approximation; use another strategy for this space")
        limits = {key: float(getattr(p.constraints, key)) - float(base[key]) for key in keys}
        return deltas, limits

    def _deltas(self, free: Sequence[Variable], base_levels: dict[str, int],
                keys: Sequence[str]) -> dict[str, list[list[float]]]:
        """Per cost, per free variable, each level's predicted cost minus that of ``base_levels``."""
        p = self.problem
        base = p.predict(base_levels)
        deltas: dict[str, list[list[float]]] = {key: [] for key in keys}
        for v in free:
            per_level = [p.predict({**base_levels, v.name: lv}) for lv in range(len(v.levels))]
            for key in keys:
                deltas[key].append([float(c[key]) - float(base[key]) for c in per_level])
        return deltas

    def _probe_points(self, free: Sequence[Variable]) -> list[list[int]]:
        rng = np.random.default_rng(self.seed)
        points = [[len(v.levels) - 1 for v in free]]
        for r in (0.3, 0.6):
            points.append([v.level_for_rate(r) for v in free])
        for _ in range(ADDITIVITY_SAMPLES):
            points.append([int(rng.integers(len(v.levels))) for v in free])
        return points

    def _additivity_error(self, free: Sequence[Variable], base_levels: dict[str, int],
                          deltas: Mapping[str, list[list[float]]], keys: Sequence[str]) -> str | None:
        """The first cost key whose prediction differs from the sum of deltas at a probe point, or None."""
        base = self.problem.predict(base_levels)
        for point in self._probe_points(free):
            costs = self.problem.predict({**base_levels, **{v.name: lv for v, lv in zip(free, point)}})
            for key in keys:
                additive = float(base[key]) + sum(deltas[key][i][lv] for i, lv in enumerate(point))
                if not _close(float(costs[key]), additive, float(base[key])):
                    return key
        return None

    def _interacting(self, variables: Sequence[Variable], keys: Sequence[str]) -> list[Variable]:
        """Variables to enumerate: none when additive; else a greedy cover of the pairwise interactions."""
        p = self.problem
        if self._additivity_error(variables, {}, self._deltas(variables, {}, keys), keys) is None:
            return []
        base = p.predict({})
        single = {v.name: p.predict({v.name: len(v.levels) - 1}) for v in variables}
        edges: set[tuple[int, int]] = set()
        for i, j in itertools.combinations(range(len(variables)), 2):
            u, v = variables[i], variables[j]
            both = p.predict({u.name: len(u.levels) - 1, v.name: len(v.levels) - 1})
            for key in keys:
                additive = float(single[u.name][key]) + float(single[v.name][key]) - float(base[key])
                if not _close(float(both[key]), additive, float(base[key])):
                    edges.add((i, j))
        cover: list[int] = []
        while edges:
            degree: dict[int, int] = {}
            for i, j in edges:
                degree[i] = degree.get(i, 0) + 1
                degree[j] = degree.get(j, 0) + 1
            pick = min(degree, key=lambda i: (-degree[i], len(variables[i].levels), i))
            cover.append(pick)
            edges = {e for e in edges if pick not in e}
        return [variables[i] for i in sorted(cover)]


def _close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(scale), abs(a))
