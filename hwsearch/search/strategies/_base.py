"""The Strategy interface: *what to try*, learning from results (ask/tell, like Optuna's samplers).

Lifecycle: the driver builds a strategy with keyword parameters (stored unchanged), calls
:meth:`Strategy.setup` once with the :class:`Problem`, then loops: ``ask(n)`` returns up to ``n``
candidates to evaluate (an empty list means finished, unless candidates are still in flight: then the
driver waits for their results and asks again); every result comes back through ``tell``, possibly out
of order when several evaluations run at once. A ``failed`` result (the evaluation raised or its worker
died) must never raise in ``tell``; strategies treat it as infeasible. Strategies are deterministic for a
seed and the same sequence of tells, which is how a run resumes: the driver replays stored results.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwsearch.errors import UserError
from hwsearch.registry import Registry
from hwsearch.search.results import Candidate, Constraints, Result, select_best
from hwsearch.search.encoding import PlanEncoding

__all__ = ["Problem", "Strategy", "STRATEGIES", "register_strategy", "create_strategy", "list_strategies"]


@dataclass(frozen=True, kw_only=True)
class Problem:
    """Everything a strategy may know about the task (none of it reaches into evaluation).

    Attributes:
        space: the variables and their levels.
        constraints: budgets and the maximum accuracy drop.
        baseline_accuracy: top-1 of the unpruned model on the evaluation split.
        baseline_costs: costs of the unpruned model.
        predict: analytic costs of a candidate's levels (cheap: call it freely); keys
            ``params``, ``param_mb``, ``macs_g``, ``act_mb``.
        eval_budget: the most accuracy evaluations the strategy may ask for (None: its own default).
        sensitivity: a precomputed per-variable x level accuracy table (``SensitivityTable``) or None.
        objectives: for multi-objective strategies, the costs traded against accuracy.
        objective: what the answer optimises among feasible candidates: ``accuracy`` (the most accurate
            within the budgets) or a cost key (the smallest within the budgets and the drop limit).
        prior: the shared :class:`~hwsearch.search.prior.Prior` built from the sensitivity table (allowed
            levels, predicted drop, projection onto the budgets), or None.
        history: results known before the strategy starts (the shared profile); strategies learn from
            them and may answer with them; asking one again costs no evaluation.
        importance: per variable, the estimated loss of pruning it to each level (index 0 = 0.0), from
            a cheap gradient importance (Taylor / Fisher) on a few batches; None when not computed.
        warm_start: known-good candidates (e.g. the greedy's and the knapsack's answers) that global
            strategies evaluate or are told first.
    """

    space: PlanEncoding
    constraints: Constraints
    baseline_accuracy: float
    baseline_costs: Mapping[str, float]
    predict: Callable[[Mapping[str, int]], Mapping[str, float]]
    eval_budget: int | None = None
    sensitivity: Any = None
    objectives: Sequence[str] = field(default_factory=lambda: ("param_mb",))
    objective: str = "accuracy"
    prior: Any = None
    history: Sequence[Result] = ()
    importance: Mapping[str, Sequence[float]] | None = None
    warm_start: Sequence[Mapping[str, int]] = ()

    def cost_feasible(self, levels: Mapping[str, int]) -> bool:
        """Whether a candidate meets every cost budget (prediction is exact for params and MACs)."""
        return all(v <= 1e-12 for v in self.constraints.cost_violations(self.predict(levels)).values())


class Strategy(abc.ABC):
    """Base class of search strategies; subclasses register with :func:`register_strategy`.

    Constructors take keyword-only parameters and store them unchanged (sklearn's rule), so
    ``type(s)(**s.get_params())`` rebuilds an identical strategy.
    """

    name: ClassVar[str] = ""
    #: whether the strategy needs the sensitivity table (profiles first when none is given).
    needs_sensitivity: ClassVar[bool] = False
    #: whether the strategy reads ``problem.importance`` (the driver computes it only then).
    needs_importance: ClassVar[bool] = False
    #: whether successive halving may stop its candidates early (``halved`` results: an accuracy upper
    #: bound only); procedures that act on each measured drop must not (:mod:`hwsearch.search.halving`).
    halving: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def setup(self, problem: Problem) -> None:
        """Receive the problem; called once before the first ``ask``."""
        self.problem = problem
        self.rng = np.random.default_rng(self.seed)

    @abc.abstractmethod
    def ask(self, n: int) -> list[Candidate]:
        """Up to ``n`` new candidates; ``[]`` when nothing more is to be asked now."""

    @abc.abstractmethod
    def tell(self, candidate: Candidate, result: Result) -> None:
        """The result of an asked candidate (any order; ``failed`` results included)."""

    def finished(self) -> bool:
        """True when the strategy will ask nothing more, whatever it is told."""
        return False

    def notes(self) -> list[str]:
        """Human-readable lines for the report (e.g. why the budget could not be met)."""
        return []

    def answer(self, results: Sequence[Result]) -> Result | None:
        """The strategy's own answer among ``results`` (every result it was told, history included).

        Default: the best feasible one under ``problem.objective`` (:func:`~hwsearch.search.results.select_best`)
        that meets every cost budget by the exact prediction. Procedures that end in a plan of their
        own (PrimeSVT's accepted levels) override this.
        """
        p = self.problem
        return select_best([r for r in results if p.cost_feasible(r.candidate.levels)], p.objective)


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", list_command="hwsearch strategies")


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator registering a strategy under ``name`` (append-only)."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        return STRATEGIES.register(name)(cls)

    return deco


def create_strategy(name: str, **params: Any) -> Strategy:
    """Build the registered strategy ``name``; params set to None are dropped (as timm does)."""
    cls = STRATEGIES.get(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    kwargs = {k: v for k, v in params.items() if v is not None}
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise UserError(f"strategy '{name}' has no parameter '{unknown[0]}'; its parameters: {', '.join(accepted)}")
    return cls(**kwargs)


def list_strategies(pattern: str | None = None) -> list[str]:
    return STRATEGIES.list(pattern)
