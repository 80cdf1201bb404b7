"""A global relaxation: multiple-choice knapsack over the sensitivity table, solved as a MILP.

Binary ``x[v, l]`` picks one level per variable (``sum_l x[v, l] = 1``); the objective is the predicted
loss ``sum x[v, l] * max(drop(v, l), 0)`` (single-variable drops from the sensitivity table, assumed
additive; unmeasured or failed levels are forbidden); every budgeted cost (``param_mb``, ``macs_g``,
``act_mb``) must stay within its budget.

Exact costs, never approximated. The cost model is taken from ``problem.predict`` itself:

1. *Separable* costs: ``cost = base + sum_v delta(v, l_v)``, each ``delta`` the prediction of that
   single-variable candidate minus the unpruned model's.
2. *Pairwise* interactions: pairs whose joint prediction differs from the sum of their deltas (at their
   strongest and middle levels) are interacting; in Spikformer the SPS convolution chain (``c1 x c2``
   weights) and, for MACs, ``qk x v`` of each block (``k^T v`` is ``N d_qk d_v``), and the embedding
   width with every block. Their exact interaction table ``I(u, v)[l_u][l_v]`` (predicted for every level
   pair) enters the MILP through continuous ``y[u, v, l, m]`` whose row and column sums equal
   ``x[u, l]`` and ``x[v, m]``: with one-hot binary ``x`` that forces ``y = x[u, l] x[v, m]`` exactly.
3. *Verification*: the model (1 + 2) is compared with ``problem.predict`` at the all-strongest candidate,
   the all-middle one and seeded random ones, within :data:`MODEL_RTOL` of the unpruned cost (the
   analytic model rounds activation memory to whole bytes per tensor; the largest error seen is kept in
   :attr:`KnapsackMILP.model_error`, and named in :meth:`notes` when above float noise). If it fails (an
   interaction of three or more variables, e.g. heads x qk x v of one block: ``k^T v`` runs per head),
   each connected group of interacting variables is merged into one multiple-choice item whose options
   are its members' level combinations (costs predicted exactly; at most ``max_enumeration`` per group),
   and that model is verified the same way. If a group has more combinations than ``max_enumeration``
   because T or the token keep ratios scale every block (``tokens``/``time`` axes next to channel axes),
   the MILP is solved once per allowed combination of those levels, with them fixed (the channel costs
   are separable or pairwise again), and the best solutions over all combinations are kept. If that
   fails too, or a group is too large otherwise (the embedding width joins every block into one group),
   the strategy refuses with :class:`NonSeparableError`.

Ties (drops clipped at 0 tie easily on a small evaluation subset) are broken towards the least total
pruning rate (a second solve with the loss held at its optimum): among plans predicted equally good,
the one that removes least. Every solution is also checked with the exact prediction (a rejected one is
cut and re-solved). The
``k`` best solutions (no-good cuts ``sum_v x[v, l_v] <= V - 1``, re-solved) are asked in one batch (tag
``milp``); :attr:`KnapsackMILP.solutions` records predicted against measured drop for the report.
:func:`solve_milp` is the bare solver.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate
from hwsearch.search.encoding import Variable
from hwsearch.search.strategies._base import Problem, register_strategy
from hwsearch.search.strategies._stepwise import COST_BUDGET_KEYS, Steps, StepwiseStrategy

__all__ = ["KnapsackMILP", "MilpRecord", "MilpSolution", "NonSeparableError", "solve_milp"]

#: Variable kinds that scale whole blocks (token keep ratios, T): conditioned on when costs do not separate.
WORK_KINDS = ("tokens", "time")
#: Random points (besides the strongest and uniform ones) at which the cost model is verified.
VERIFY_SAMPLES = 16
#: Largest model error accepted, relative to the unpruned cost: the analytic model rounds activation
#: memory to whole bytes per tensor, a few bytes off linear; every solution is re-checked exactly anyway.
MODEL_RTOL = 1e-5
#: Extra re-solves allowed for solutions the exact prediction rejects at the budget's edge.
EDGE_RETRIES = 20
#: Min-cost mode: bisection stops when the failing and passing budgets are this close (fraction of base).
SCAN_TOL = 0.01

#: (u, v) variable indices (u < v) -> cost key -> interaction matrix [l_u][l_v].
Pairs = Mapping[tuple[int, int], Mapping[str, Sequence[Sequence[float]]]]


class NonSeparableError(UserError):
    """A budgeted cost is neither separable nor pairwise in the levels, even with a cover enumerated."""


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


#: One multiple-choice item: its options, each a partial level map (option 0 = unpruned, ``{}``).
Item = list[dict[str, int]]


@dataclass(kw_only=True)
class _CostModel:
    """An exact linear(ised) cost model: per item option deltas, pairwise tables and the budgets' room."""

    items: list[Item]
    deltas: dict[str, list[list[float]]]
    pairs: dict[tuple[int, int], dict[str, list[list[float]]]] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)


def solve_milp(loss: Sequence[Sequence[float]], deltas: Mapping[str, Sequence[Sequence[float]]],
               limits: Mapping[str, float], *, pairs: Pairs | None = None, k: int = 1,
               exclude: Sequence[Sequence[int]] = (), tiebreak: Sequence[Sequence[float]] | None = None,
               accept: Callable[[tuple[int, ...]], bool] | None = None) -> list[MilpSolution]:
    """The ``k`` cheapest one-level-per-variable choices under linear budgets (best first).

    Minimises ``sum_v loss[v][l_v]`` subject to, for every cost ``c`` in ``limits``,
    ``sum_v deltas[c][v][l_v] + sum_(u,v) pairs[(u, v)][c][l_u][l_v] <= limits[c]``. Each next solution
    excludes the previous ones with a no-good cut ``sum_v x[v, l_v] <= V - 1``.

    Args:
        loss: per variable, the loss of each level (``inf``: level forbidden).
        deltas: per cost, per variable, each level's cost change (same shape as ``loss``).
        limits: per cost, the allowed total change (``budget - base``).
        pairs: exact pairwise interaction terms (linearised with continuous product variables).
        k: solutions wanted.
        exclude: choices excluded from the start.
        tiebreak: optional secondary objective (same shape as ``loss``), minimised among the choices of
            optimal loss (a second solve with the loss held at its optimum).
        accept: optional exact check; a rejected solution is cut and does not count towards ``k``.

    Returns:
        Up to ``k`` solutions, fewer when the problem runs out of feasible choices.

    >>> [s.choice for s in solve_milp([[0, 1, 3], [0, 2]], {"mb": [[0, -1, -2], [0, -2]]}, {"mb": -2.5}, k=2)]
    [(1, 1), (2, 1)]
    """
    sizes = [len(row) for row in loss]
    nv = len(sizes)
    if not nv:
        return [MilpSolution(choice=(), objective=0.0)] if k > 0 and all(x >= 0 for x in limits.values()) else []
    xoff = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    edges = sorted(pairs or {})
    yoff = [int(xoff[-1])]
    for u, v in edges:
        yoff.append(yoff[-1] + sizes[u] * sizes[v])
    n, n_x = yoff[-1], int(xoff[-1])
    flat = np.array([float(x) for row in loss for x in row], dtype=float)
    allowed = np.isfinite(flat)
    c = np.concatenate([np.where(allowed, flat, 0.0), np.zeros(n - n_x)])
    rows: list[dict[int, float]] = []
    lo: list[float] = []
    hi: list[float] = []
    for v in range(nv):  # one level per variable
        rows.append({j: 1.0 for j in range(xoff[v], xoff[v + 1])})
        lo.append(1.0)
        hi.append(1.0)
    for e, (u, v) in enumerate(edges):  # y[e, l, m] sums to x[u, l] over m and to x[v, m] over l
        for a, b, by_row in ((u, v, True), (v, u, False)):
            for i in range(sizes[a]):
                row = {yoff[e] + (i * sizes[v] + j if by_row else j * sizes[v] + i): 1.0 for j in range(sizes[b])}
                row[int(xoff[a]) + i] = -1.0
                rows.append(row)
                lo.append(0.0)
                hi.append(0.0)
    for key, limit in limits.items():
        row = {j: float(x) for j, x in enumerate(x for r in deltas[key] for x in r) if x}
        for e, edge in enumerate(edges):
            mat = (pairs or {})[edge].get(key)
            if mat is not None:
                row.update({yoff[e] + j: float(x) for j, x in enumerate(x for r in mat for x in r) if x})
        scale = max([abs(x) for x in row.values()] + [abs(float(limit)), 1e-300])
        rows.append({j: x / scale for j, x in row.items()})
        lo.append(-np.inf)
        hi.append(float(limit) / scale)
    ub = np.concatenate([allowed.astype(float), np.ones(n - n_x)])
    integrality = np.concatenate([np.ones(n_x), np.zeros(n - n_x)])
    out: list[MilpSolution] = []
    cuts = [tuple(int(x) for x in ch) for ch in exclude]
    retries = 0
    second = None if tiebreak is None else np.concatenate([[float(x) for r in tiebreak for x in r], np.zeros(n - n_x)])

    def solve(objective: np.ndarray, extra: list[dict[int, float]], extra_hi: list[float]) -> Any:
        a = _sparse(rows + extra, n)
        return milp(objective, integrality=integrality, bounds=Bounds(0.0, ub),
                    constraints=LinearConstraint(a, np.array(lo + [-np.inf] * len(extra)), np.array(hi + extra_hi)),
                    options={"mip_rel_gap": 0.0})

    while len(out) < k:
        cut_rows = [{int(xoff[v]) + lv: 1.0 for v, lv in enumerate(ch)} for ch in cuts]
        res = solve(c, cut_rows, [nv - 1.0] * len(cuts))
        if res.status != 0 or res.x is None:
            break
        if second is not None:  # among the optimal-loss choices, the smallest secondary objective
            best = float(c[:n_x] @ res.x[:n_x])
            held = {j: float(c[j]) for j in range(n_x) if c[j]}
            res2 = solve(second, cut_rows + [held], [nv - 1.0] * len(cuts) + [best + 1e-9 * max(1.0, abs(best))])
            res = res2 if res2.status == 0 and res2.x is not None else res
        choice = tuple(int(np.argmax(res.x[xoff[v]:xoff[v + 1]])) for v in range(nv))
        cuts.append(choice)
        if accept is not None and not accept(choice):
            retries += 1
            if retries > EDGE_RETRIES:
                break
            continue
        out.append(MilpSolution(choice=choice, objective=float(sum(flat[xoff[v] + choice[v]] for v in range(nv)))))
    return out


def _sparse(rows: Sequence[Mapping[int, float]], n: int) -> csr_array:
    r = [i for i, row in enumerate(rows) for _ in row]
    cols = [j for row in rows for j in row]
    vals = [x for row in rows for x in row.values()]
    return csr_array((vals, (r, cols)), shape=(len(rows), n))


@register_strategy("knapsack")
class KnapsackMILP(StepwiseStrategy):
    """The multiple-choice knapsack relaxation (see the module docstring).

    Args:
        seed: seeds the random points at which the cost model is verified.
        k: solutions asked for real evaluation (best predicted first).
        max_enumeration: most level combinations enumerated outside the MILP when costs have
            interactions of three or more variables (pairwise ones need no enumeration).
    """

    needs_sensitivity = True

    def __init__(self, *, seed: int = 0, k: int = 5, max_enumeration: int = 1024) -> None:
        self.seed = seed
        self.k = k
        self.max_enumeration = max_enumeration

    def setup(self, problem: Problem) -> None:
        if int(self.k) < 1:
            raise UserError(f"knapsack: k must be >= 1, got {self.k}")
        super().setup(problem)
        self.solutions: list[MilpRecord] = []
        self.interactions: list[tuple[str, str]] = []
        self.enumerated: list[str] = []
        self.model_error: dict[str, float] = {}
        self.scan: list[tuple[float, dict[str, int], float]] = []  # min-cost mode: (budget, levels, drop)
        self._cons = problem.constraints
        self._noted = False

    def _loss(self, table: Any) -> dict[str, list[float]]:
        """Per variable and level, the single-group drop clipped at 0 (inf: unmeasured, or outside the prior)."""
        p = self.problem
        out = {}
        for v in p.space.variables:
            allowed = set(p.prior.allowed[v.name]) if p.prior is not None else set(range(len(v.levels)))
            out[v.name] = [0.0] + [max(table.drop(v.name, lv), 0.0) if lv in allowed else math.inf
                                   for lv in range(1, len(v.levels))]
        return out

    def _steps(self) -> Steps:
        table = yield from self._sensitivity()
        p = self.problem
        if p.objective != "accuracy":
            yield from self._min_cost(table)
            return
        loss = self._loss(table)
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
            rec = replace(rec, measured_drop=self.measured_drop(res), feasible=self.is_feasible(cand, res))
            done.append(rec)
            self._notes.append(f"milp #{len(done)}: predicted drop {rec.predicted_drop:.3g} "
                               f"(loss {rec.predicted_loss:.3g}), measured {rec.measured_drop:.3g} points, "
                               f"{'feasible' if rec.feasible else 'infeasible'}; {self.describe_costs(rec.levels)}")
        self.solutions = done

    def _min_cost(self, table: Any) -> Steps:
        """Smallest ``objective`` cost within the drop limit: bisection over a budget on that cost.

        For a budget ``B`` the MILP gives the plan of least predicted loss with cost <= B. First, without
        evaluating, ``B`` is lowered while the predicted drop (additive, rescaled by the prior's
        observations) stays within the limit; then each evaluation halves the interval between the
        largest budget known to fail and the smallest known to pass, until they are within
        :data:`SCAN_TOL` of the unpruned cost or the evaluation budget is spent.
        """
        p = self.problem
        key = p.objective
        loss = self._loss(table)
        base = float(p.baseline_costs[key])
        smallest = float(p.predict({v.name: max(i for i, x in enumerate(loss[v.name]) if math.isfinite(x))
                                    for v in p.space.variables})[key])
        scale = p.prior.scale() if p.prior is not None else 1.0
        limit = self.max_drop()

        def solve(budget: float) -> tuple[dict[str, int], float] | None:
            limit_of_key: dict[str, Any] = {key: budget}  # key: one of the cost fields (float | None)
            self._cons = replace(p.constraints, **limit_of_key)
            try:
                sols = self.plan(loss, k=1, quiet=True)
            finally:
                self._cons = p.constraints
            return sols[0] if sols else None

        lo, hi = smallest, base
        for _ in range(30):  # predicted frontier: no evaluation
            mid = (lo + hi) / 2
            sol = solve(mid)
            if sol is not None and scale * sol[1] <= limit:
                hi = mid
            else:
                lo = mid
            if hi - lo < SCAN_TOL * base / 4:
                break
        guess = hi
        lo, hi = smallest, base  # lo: assumed failing, hi: passing (the unpruned model)
        budget = guess
        while hi - lo > SCAN_TOL * base and self.budget_left() > 0:
            sol = solve(budget)
            if sol is None:
                lo = budget
            else:
                cand = Candidate(levels=sol[0], tag="milp")
                res = (yield [cand])[cand.key]
                drop = self.measured_drop(res)
                self.scan.append((budget, dict(cand.levels), drop))
                cost = float(p.predict(cand.levels)[key])
                if self.is_feasible(cand, res):
                    hi = min(budget, cost)
                else:
                    lo = budget
            budget = (lo + hi) / 2
        self._notes.append(f"knapsack (min {key}): {len(self.scan)} budgets evaluated by bisection; smallest passing "
                           f"{key} {hi:.4g} ({100 * (1 - hi / base):.1f}% saved)")

    def plan(self, loss: Mapping[str, Sequence[float]], *, k: int | None = None,
             quiet: bool = False) -> list[tuple[dict[str, int], float]]:
        """The ``k`` best (levels, predicted loss) under the budgets (see the module docstring)."""
        p = self.problem
        keys = [key for key in COST_BUDGET_KEYS if getattr(self._cons, key) is not None]
        variables = list(p.space.variables)
        items = [[{v.name: lv} if lv else {} for lv in range(len(v.levels))] for v in variables]
        edges = self._edges(items, keys)
        self.interactions = [(variables[i].name, variables[j].name) for i, j in edges]
        model = self._model(items, keys, edges)
        if model is not None:
            if edges and not quiet and not self._noted:
                self._noted = True
                self._notes.append(f"knapsack: {len(edges)} pairwise cost interaction(s) (e.g. "
                                   f"{' x '.join(self.interactions[0])}) modelled exactly by product terms")
            return self._solve(model, loss, k)
        groups = _components(len(variables), edges)
        sizes = [math.prod(len(variables[i].levels) for i in g) for g in groups]
        worst = max(range(len(groups)), key=lambda g: sizes[g])
        names = ", ".join(variables[i].name for i in groups[worst])
        if sizes[worst] > int(self.max_enumeration):
            conditioned = self._conditioned(loss, keys, k)
            if conditioned is not None:
                if not quiet and not self._noted:
                    self._noted = True
                    self._notes.append("knapsack: T and the token keep ratios scale every block's cost, so one MILP "
                                       "is solved per allowed combination of their levels (the channel costs are "
                                       "separable or pairwise once they are fixed)")
                return conditioned
            raise NonSeparableError(f"knapsack: budgeted costs are neither separable nor pairwise; the interacting "
                                    f"group {names} has {sizes[worst]} level combinations > max_enumeration "
                                    f"{self.max_enumeration}; leave those axes out, raise max_enumeration or use "
                                    "another strategy")
        joint = [_joint([variables[i] for i in g]) for g in groups]
        model = self._model(joint, keys, [])
        if model is None:
            raise NonSeparableError("knapsack: budgeted costs are not separable even with interacting groups "
                                    f"merged ({names}, ...); use another strategy for this space")
        merged = [g for g in groups if len(g) > 1]
        self.enumerated = [", ".join(variables[i].name for i in g) for g in merged]
        if not quiet and not self._noted:
            self._noted = True
            self._notes.append(f"knapsack: costs have interactions of three or more variables; {len(merged)} group(s) "
                               f"merged into joint items (largest: {names}, {sizes[worst]} combinations)")
        return self._solve(model, loss, k)

    def _conditioned(self, loss: Mapping[str, Sequence[float]], keys: Sequence[str],
                     k: int | None) -> list[tuple[dict[str, int], float]] | None:
        """The ``k`` best plans when the work variables (tokens, T) make the costs non-separable: for each
        allowed combination of their levels (at most ``max_enumeration``), the MILP over the other
        variables with those levels fixed; None when there are none or a fixed model fails too."""
        p = self.problem
        work = [v for v in p.space.variables if v.kind in WORK_KINDS]
        rest = [v for v in p.space.variables if v.kind not in WORK_KINDS]
        choices = [[lv for lv in range(len(v.levels)) if math.isfinite(loss[v.name][lv])] for v in work]
        if not work or not rest or math.prod(len(c) for c in choices) > int(self.max_enumeration):
            return None
        items = [[{v.name: lv} if lv else {} for lv in range(len(v.levels))] for v in rest]
        found: dict[tuple[tuple[str, int], ...], tuple[dict[str, int], float]] = {}
        notes = len(self._notes)
        try:
            for combo in itertools.product(*choices):
                fixed = {v.name: lv for v, lv in zip(work, combo) if lv}

                def predict(levels: Mapping[str, int], fixed: dict[str, int] = fixed) -> Mapping[str, float]:
                    return p.predict({**fixed, **levels})

                self.problem = replace(p, predict=predict)
                model = self._model(items, keys, self._edges(items, keys))
                if model is None:
                    return None
                extra = sum(loss[n][lv] for n, lv in fixed.items())
                for levels, objective in self._solve(model, loss, k):
                    full = {**fixed, **levels}
                    found.setdefault(tuple(sorted(full.items())), (full, objective + extra))
        finally:
            self.problem = p
            self._notes[notes:] = list(dict.fromkeys(self._notes[notes:]))
        def rates(lv: Mapping[str, int]) -> float:  # tie-break: least pruning
            return sum(p.space[n].rates[x] for n, x in lv.items())

        return sorted(found.values(), key=lambda s: (s[1], rates(s[0])))[: int(k or self.k)]

    def _solve(self, model: _CostModel, loss: Mapping[str, Sequence[float]],
               k: int | None = None) -> list[tuple[dict[str, int], float]]:
        """The ``k`` best of a cost model, as level maps with their predicted loss."""
        p, items = self.problem, model.items

        def full(choice: Sequence[int]) -> dict[str, int]:
            return {n: lv for i, o in enumerate(choice) for n, lv in items[i][o].items()}

        item_loss = [[sum(loss[n][lv] for n, lv in opt.items()) for opt in item] for item in items]
        rates = [[sum(p.space[n].rates[lv] for n, lv in opt.items()) for opt in item] for item in items]
        sols = solve_milp(item_loss, model.deltas, model.limits, pairs=model.pairs, k=int(k or self.k), tiebreak=rates,
                          accept=lambda ch: all(v <= 1e-12 for v in self._cons.cost_violations(p.predict(full(ch))).values()))
        return [(full(s.choice), s.objective) for s in sols]

    # --------------------------------------------------------------------------------- cost model
    def _model(self, items: Sequence[Item], keys: Sequence[str], edges: Sequence[tuple[int, int]]) -> _CostModel | None:
        """Option deltas and pair tables of ``items``, or None when the model misses a probe point."""
        p = self.problem
        base = p.predict({})
        single = [[p.predict(opt) for opt in item] for item in items]
        deltas = {key: [[float(c[key]) - float(base[key]) for c in row] for row in single] for key in keys}
        pairs: dict[tuple[int, int], dict[str, list[list[float]]]] = {}
        for i, j in edges:
            both = [[p.predict({**a, **b}) for b in items[j]] for a in items[i]]
            pairs[(i, j)] = {key: [[float(both[a][b][key]) - deltas[key][i][a] - deltas[key][j][b] - float(base[key])
                                    for b in range(len(items[j]))] for a in range(len(items[i]))] for key in keys}
        rng = np.random.default_rng(self.seed)
        points = [[len(it) - 1 for it in items], [len(it) // 2 for it in items]]
        points += [[int(rng.integers(len(it))) for it in items] for _ in range(VERIFY_SAMPLES)]
        error = dict.fromkeys(keys, 0.0)
        for point in points:
            costs = p.predict({n: lv for i, o in enumerate(point) for n, lv in items[i][o].items()})
            for key in keys:
                model = float(base[key]) + sum(deltas[key][i][o] for i, o in enumerate(point))
                model += sum(pairs[(i, j)][key][point[i]][point[j]] for i, j in edges)
                if not _close(float(costs[key]), model, float(base[key])):
                    return None
                error[key] = max(error[key], abs(float(costs[key]) - model))
        for key, err in error.items():
            if err > 1e-9 * max(1.0, abs(float(base[key]))):
                self._notes.append(f"knapsack: the {key} model is within {err:.2g} of the exact prediction (rounding "
                                   "in the cost model); every solution is checked with the exact prediction")
        self.model_error = error
        limits = {key: float(getattr(self._cons, key)) - float(base[key]) for key in keys}
        return _CostModel(items=list(items), deltas=deltas, pairs=pairs, limits=limits)

    def _edges(self, items: Sequence[Item], keys: Sequence[str]) -> list[tuple[int, int]]:
        """Pairs whose joint prediction differs from the sum of their own (strongest and middle options)."""
        p = self.problem
        if not keys:
            return []
        base = p.predict({})
        probes = [(item[-1], item[max(1, len(item) // 2)]) for item in items]
        single = [[p.predict(opt) for opt in pr] for pr in probes]
        edges = []
        for i, j in itertools.combinations(range(len(items)), 2):
            for t in range(2):
                both = p.predict({**probes[i][t], **probes[j][t]})
                if any(not _close(float(both[key]), float(single[i][t][key]) + float(single[j][t][key])
                                  - float(base[key]), float(base[key])) for key in keys):
                    edges.append((i, j))
                    break
        return edges


def _components(n: int, edges: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Connected components of the interaction graph (singletons included), by first member."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


def _joint(members: Sequence[Variable]) -> Item:
    """Every level combination of ``members`` as one item's options (all-unpruned first)."""
    return [{v.name: lv for v, lv in zip(members, combo) if lv}
            for combo in itertools.product(*(range(len(v.levels)) for v in members))]


def _close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= MODEL_RTOL * max(1.0, abs(scale), abs(a))
