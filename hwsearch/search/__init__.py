"""The search: the plan encoding, candidate evaluation, strategies, the ask/tell loop, runners, storage.

Public face (loaded lazily, so ``import hwsearch.search.encoding`` stays free of torch)::

    from hwsearch.search import prepare, run_strategy, create_strategy
    setup = prepare("studies/demo.toml")            # model, encoding, data, baseline, budgets
    problem = setup.problem(eval_budget=40)
    # run_strategy(setup, create_strategy("tpe"), make_runner(1), study_name="tpe", problem=problem, ...)

Modules: ``encoding`` (:class:`PlanEncoding`: variables and levels), ``results`` (candidates, results,
constraints, best-feasible and Pareto rules), ``evaluation`` / ``prefix`` / ``costing`` / ``metrics``
(one candidate's accuracy and costs), ``strategies/`` (registered ask/tell strategies), ``loop``
(the ask/tell loop every command uses), ``runners/`` (serial, Ray), ``storage`` (Optuna storage),
``profiling`` / ``sensitivity`` (the shared single-group profile), ``prior``, ``halving``, ``fisher``,
``session`` (:func:`prepare`: what a run's strategies share).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PlanEncoding": "hwsearch.search.encoding",
    "Variable": "hwsearch.search.encoding",
    "Candidate": "hwsearch.search.results",
    "Constraints": "hwsearch.search.results",
    "Result": "hwsearch.search.results",
    "non_dominated": "hwsearch.search.results",
    "rank_feasible": "hwsearch.search.results",
    "select_best": "hwsearch.search.results",
    "Evaluator": "hwsearch.search.evaluation",
    "EvaluatorSpec": "hwsearch.search.evaluation",
    "Problem": "hwsearch.search.strategies",
    "Strategy": "hwsearch.search.strategies",
    "create_strategy": "hwsearch.search.strategies",
    "register_strategy": "hwsearch.search.strategies",
    "run_strategy": "hwsearch.search.loop",
    "make_runner": "hwsearch.search.runners",
    "SearchSetup": "hwsearch.search.session",
    "prepare": "hwsearch.search.session",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hwsearch.search' has no attribute {name!r}")
