"""Successive halving across candidates (ASHA, Li et al. 2020), on top of the staged evaluation.

The evaluation split is measured in stages (:data:`hwsearch.search.session._STAGES`: a few images first); the
rungs are the image counts at the stage boundaries. Asynchronous successive halving promotes a
candidate past a rung only if its correct count there is among the top ``1/eta`` of every candidate
measured at that rung so far; the others stop (status ``halved``). Unlike the exact early stop, this is
a bet: a halved candidate might have met the drop limit. It only applies where accuracy is the
objective (the most accurate candidate within a cost budget) and to strategies that sample many
candidates (``Strategy.halving``: TPE, NSGA-II, random); procedures that act on each measured drop
(PrimeSVT, PSViT, knapsack, analytic) never see a halved result.

The bars of a candidate are computed by the driver when it is submitted, from the results told so far,
so a run is deterministic for a seed and replays exactly on resume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hwsearch.errors import UserError
from hwsearch.search.results import Result

__all__ = ["Halving", "MIN_RUNG_POPULATION", "stage_boundaries"]

#: Candidates measured at a rung before its bar applies (a bar from one or two results is noise).
MIN_RUNG_POPULATION = 3


def stage_boundaries(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    """Images seen after each batch, without the last (the whole split is no rung)."""
    out, seen = [], 0
    for n in batch_sizes[:-1]:
        seen += int(n)
        out.append(seen)
    return tuple(out)


class Halving:
    """The rung populations of one search and the bars they set for the next candidate.

    Args:
        eta: reduction factor (>= 2): the top ``1/eta`` at each rung go on.
        rungs: image counts at which candidates are compared (:func:`stage_boundaries`).
    """

    def __init__(self, eta: float, rungs: Sequence[int]) -> None:
        if not eta >= 2:
            raise UserError(f"successive halving needs eta >= 2, got {eta:g}; use --halving 3 (or 0 to turn it off)")
        self.eta = float(eta)
        self.rungs = tuple(int(r) for r in rungs)
        self.population: dict[int, list[int]] = {r: [] for r in self.rungs}
        self.halved = 0

    def observe(self, result: Result) -> None:
        """Add a measured candidate's correct counts at every rung it reached."""
        if result.halved:
            self.halved += 1
        if not (result.ok or result.partial):
            return
        for r, correct in zip(self.rungs, result.stage_correct):  # stage i ends at rung i
            self.population[r].append(int(correct))

    def bars(self) -> tuple[tuple[int, int], ...]:
        """``(images, correct needed)`` per rung with enough population: the top-``1/eta`` cut."""
        out = []
        for r in self.rungs:
            pop = sorted(self.population[r], reverse=True)
            if len(pop) >= MIN_RUNG_POPULATION:
                k = max(1, math.ceil(len(pop) / self.eta))
                out.append((r, pop[k - 1]))
        return tuple(out)
