"""The sensitivity profile as the prior every strategy shares.

A :class:`Prior` turns the sensitivity table (each group pruned alone at each level) into four tools:

* :attr:`Prior.allowed`: per variable, the levels a strategy may choose. ``mode="exclude"`` keeps the
  unpruned level and the levels whose single-group drop is within the drop limit (a level a group cannot
  tolerate alone is not expected to pass with more pruned around it); ``weight`` keeps every measured
  level but draws the intolerant ones less often (weight ``exp(-drop / limit)``); ``none`` keeps all.
* :meth:`Prior.predicted_drop`: the additive table prediction the knapsack trusts (the sum of the
  single-group drops, clipped at 0), scaled by how far the measured multi-group candidates have fallen
  from it (:meth:`Prior.observe`: the median ratio of measured to predicted drop).
* :meth:`Prior.project`: a candidate that breaks a cost budget, moved onto it with the exact cost model:
  the variable whose next allowed level buys the most budget per point of predicted drop is stepped
  until every budget holds (None when even the strongest allowed levels miss it).
* :meth:`Prior.sample`: a random candidate drawn from the allowed levels (weighted), projected, and
  screened (:meth:`Prior.plausible`: predicted drop within the limit with a margin).

All of it is deterministic given the rng and the sequence of observations, so a resumed run replays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from hwsearch.search.results import Constraints, Result
from hwsearch.search.encoding import PlanEncoding

__all__ = ["Prior", "PRIOR_MODES", "SCREEN_SLACK", "SCREEN_MARGIN"]

PRIOR_MODES: tuple[str, ...] = ("exclude", "weight", "none")
#: Screening keeps a candidate unless its predicted drop exceeds ``SCREEN_SLACK * limit + SCREEN_MARGIN``:
#: the prediction is rough, so only candidates far past the limit are not evaluated.
SCREEN_SLACK = 1.5
SCREEN_MARGIN = 0.5
#: Measured candidates needed before the additive prediction is rescaled by them.
MIN_OBSERVATIONS = 3
#: Largest rescaling of the additive prediction (small eval splits make single ratios noisy).
MAX_SCALE = 2.0
_BUDGET_KEYS = ("param_mb", "macs_g", "act_mb")


class Prior:
    """The profile-derived prior of one search (see the module docstring).

    Args:
        space: the searched variables.
        table: the sensitivity table (``SensitivityTable``), or None (a flat prior: every level allowed,
            no prediction).
        constraints: budgets and the drop limit.
        predict: exact analytic costs of a candidate's levels.
        mode: one of :data:`PRIOR_MODES`.
    """

    def __init__(self, space: PlanEncoding, table: Any, constraints: Constraints,
                 predict: Callable[[Mapping[str, int]], Mapping[str, float]], *, mode: str = "exclude") -> None:
        if mode not in PRIOR_MODES:
            raise ValueError(f"unknown prior mode {mode!r}; use one of {', '.join(PRIOR_MODES)}")
        self.space, self.table, self.constraints, self.predict, self.mode = space, table, constraints, predict, mode
        limit = constraints.max_acc_drop
        self.limit = math.inf if limit is None else float(limit)
        self.drops: dict[str, list[float]] = {}
        self.allowed: dict[str, list[int]] = {}
        self.weights: dict[str, np.ndarray] = {}
        for v in space.variables:
            drops = [0.0] + [self._table_drop(v.name, lv) for lv in range(1, len(v.levels))]
            self.drops[v.name] = drops
            if mode == "exclude" and table is not None:
                levels = [0] + [lv for lv, d in enumerate(drops) if lv and d <= self.limit + 1e-12]
            elif table is not None:
                levels = [0] + [lv for lv, d in enumerate(drops) if lv and math.isfinite(d)]
            else:
                levels = list(range(len(v.levels)))
            w = np.ones(len(levels))
            if mode == "weight" and table is not None and math.isfinite(self.limit) and self.limit > 0:
                w = np.array([math.exp(-max(drops[lv], 0.0) / self.limit) for lv in levels])
            self.allowed[v.name] = levels
            self.weights[v.name] = w / w.sum()
        self._ratios: list[float] = []

    # ------------------------------------------------------------------------------------ prediction
    def _table_drop(self, name: str, level: int) -> float:
        return float(self.table.drop(name, level)) if self.table is not None else 0.0

    def additive_drop(self, levels: Mapping[str, int]) -> float:
        """Sum of the single-group drops of ``levels`` (clipped at 0; inf for an unmeasured level)."""
        return sum(max(self.drops[n][int(lv)], 0.0) for n, lv in levels.items() if lv and n in self.drops)

    def scale(self) -> float:
        """How much larger measured drops have been than the additive prediction (median ratio, 1..MAX_SCALE)."""
        if len(self._ratios) < MIN_OBSERVATIONS:
            return 1.0
        return min(MAX_SCALE, max(1.0, float(np.median(self._ratios))))

    def predicted_drop(self, levels: Mapping[str, int]) -> float:
        """The additive prediction rescaled by the observations so far."""
        return self.scale() * self.additive_drop(levels)

    def observe(self, result: Result) -> None:
        """Refine the prediction with a measured (or early-stopped: a lower bound) result."""
        if result.acc_drop is None or not (result.ok or result.stopped) or len(result.candidate.levels) < 2:
            return  # a single-group result is the table itself: it says nothing about interactions
        pred = self.additive_drop(result.candidate.levels)
        if pred > 0.25 and math.isfinite(pred):
            self._ratios.append(max(float(result.acc_drop), 0.0) / pred)

    def observe_all(self, results: Iterable[Result]) -> None:
        for r in results:
            self.observe(r)

    def plausible(self, levels: Mapping[str, int]) -> bool:
        """False when even the additive drop (which pruned-together groups rarely beat) is far beyond the
        limit: such candidates are not evaluated."""
        if not math.isfinite(self.limit) or self.table is None:
            return True
        return self.additive_drop(levels) <= SCREEN_SLACK * self.limit + SCREEN_MARGIN

    def in_prior(self, levels: Mapping[str, int]) -> bool:
        """Whether every level of ``levels`` is allowed."""
        return all(int(lv) in self.allowed[n] for n, lv in levels.items() if lv)

    # ------------------------------------------------------------------------------------ budgets
    def _excess(self, costs: Mapping[str, float]) -> float:
        """Summed budget excess, each relative to its budget (0 when every budget holds)."""
        out = 0.0
        for key in _BUDGET_KEYS:
            limit = getattr(self.constraints, key)
            if limit is not None:
                out += max(0.0, float(costs[key]) - float(limit)) / max(abs(float(limit)), 1e-12)
        return out

    def cost_feasible(self, levels: Mapping[str, int]) -> bool:
        """Every cost budget met by the exact prediction (the rule of ``Problem.cost_feasible``)."""
        return all(v <= 1e-12 for v in self.constraints.cost_violations(self.predict(levels)).values())

    def project(self, levels: Mapping[str, int]) -> dict[str, int] | None:
        """``levels`` moved onto the cost budgets within the allowed levels (None when impossible).

        Greedy on exact costs: each step raises one variable to its next stronger allowed level, the one
        with the largest budget excess removed per point of predicted drop added (ties: network order).
        A candidate already within the budgets comes back unchanged.
        """
        cur = {v.name: int(levels.get(v.name, 0)) for v in self.space.variables}
        for n, lv in list(cur.items()):  # snap disallowed levels to the nearest milder allowed one
            if lv not in self.allowed[n]:
                cur[n] = max([a for a in self.allowed[n] if a <= lv], default=0)
        excess = self._excess(self.predict(cur))
        while not self.cost_feasible(cur):
            best: tuple[float, int, str, int, float] | None = None
            for order, v in enumerate(self.space.variables):
                stronger = [a for a in self.allowed[v.name] if a > cur[v.name]]
                if not stronger:
                    continue
                nxt = stronger[0]
                trial = {**cur, v.name: nxt}
                new_excess = self._excess(self.predict(trial))
                gain = excess - new_excess
                if gain <= 0 and not self.cost_feasible(trial):
                    continue
                cost = max(self.drops[v.name][nxt], 0.0) - max(self.drops[v.name][cur[v.name]], 0.0) + 1e-3
                score = gain / cost
                if best is None or (score, -order) > (best[0], -best[1]):
                    best = (score, order, v.name, nxt, new_excess)
            if best is None:
                return None
            cur[best[2]] = best[3]
            excess = best[4]
        return {n: lv for n, lv in cur.items() if lv}

    # ------------------------------------------------------------------------------------ sampling
    def draw(self, rng: np.random.Generator) -> dict[str, int]:
        """Independent allowed levels per variable (weighted), not projected."""
        return {v.name: int(rng.choice(self.allowed[v.name], p=self.weights[v.name])) for v in self.space.variables}

    def fill(self, levels: Mapping[str, int], rng: np.random.Generator) -> dict[str, int]:
        """``levels`` pruned further, in a random variable order, while the predicted drop stays within the
        limit: a random point on the predicted frontier (what a search minimising a cost wants)."""
        cur = {v.name: int(levels.get(v.name, 0)) for v in self.space.variables}
        if not math.isfinite(self.limit) or self.table is None:
            return {n: lv for n, lv in cur.items() if lv}
        for i in rng.permutation(len(self.space.variables)):
            name = self.space.variables[int(i)].name
            # half the time as far as the prediction allows, else towards a random allowed level
            target = max(self.allowed[name]) if rng.random() < 0.5 else int(rng.choice(self.allowed[name], p=self.weights[name]))
            for lv in [a for a in self.allowed[name] if cur[name] < a <= max(target, cur[name])]:
                if self.predicted_drop({**cur, name: lv}) > self.limit:
                    break
                cur[name] = lv
        return {n: lv for n, lv in cur.items() if lv}

    def sample(self, rng: np.random.Generator, *, tries: int = 50, fill: bool = False) -> dict[str, int] | None:
        """A projected, plausible random candidate (None when ``tries`` draws found none).

        ``fill``: start from nothing pruned and raise randomly ordered variables towards random allowed
        targets while the predicted drop stays within the limit (:meth:`fill`), for searches that minimise
        a cost; else draw every variable independently and project onto the budgets.
        """
        for _ in range(tries):
            levels = self.project(self.fill({}, rng) if fill else self.draw(rng))
            if levels is not None and self.plausible(levels):
                return levels
        return None

    def sample_unseen(self, rng: np.random.Generator, seen: Callable[[str], bool], *, tries: int,
                      fill: bool = False) -> dict[str, int] | None:
        """A :meth:`sample` whose candidate key ``seen`` rejects not (None when ``tries`` draws found none)."""
        from hwsearch.search.results import candidate_key

        for _ in range(max(1, tries)):
            levels = self.sample(rng, tries=1, fill=fill)
            if levels is not None and not seen(candidate_key(levels)):
                return levels
        return None

    def describe(self) -> str:
        """One line for the report: how much of the space the prior keeps."""
        full = math.prod(len(v.levels) for v in self.space.variables)
        kept = math.prod(len(a) for a in self.allowed.values())
        fixed = [n for n, a in self.allowed.items() if len(a) == 1]
        tail = f"; fixed unpruned: {', '.join(fixed)}" if fixed else ""
        return f"prior '{self.mode}': {kept:.3g} of {full:.3g} level combinations kept{tail}"
