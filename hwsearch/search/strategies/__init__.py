"""Search strategies (ask/tell), registered by name; ``hwsearch strategies`` lists them.

Implementations live in private modules and register on import.
"""

from hwsearch.search.strategies._base import STRATEGIES, Problem, Strategy, create_strategy, list_strategies, register_strategy

__all__ = ["STRATEGIES", "Problem", "Strategy", "create_strategy", "list_strategies", "register_strategy"]

from hwsearch.search.strategies._random import RandomSearch  # noqa: E402  (registers "random")
from hwsearch.search.strategies._tpe import OptunaSearch, TPESearch  # noqa: E402  (registers "tpe")
from hwsearch.search.strategies._nsga2 import NSGA2Search  # noqa: E402  (registers "nsga2")

__all__ += ["NSGA2Search", "OptunaSearch", "RandomSearch", "TPESearch"]

from hwsearch.search.strategies._prioritized import PrioritizedGreedy  # noqa: E402  (registers "prioritized")
from hwsearch.search.strategies._psvit import PSViTSensitivity  # noqa: E402  (registers "sensitivity")
from hwsearch.search.strategies._knapsack import KnapsackMILP, solve_milp  # noqa: E402  (registers "knapsack")
from hwsearch.search.strategies._analytic import AnalyticScan  # noqa: E402  (registers "analytic")
from hwsearch.search.strategies._local import LocalSearch  # noqa: E402  (registers "local")

__all__ += ["AnalyticScan", "KnapsackMILP", "LocalSearch", "PSViTSensitivity", "PrioritizedGreedy", "solve_milp"]
