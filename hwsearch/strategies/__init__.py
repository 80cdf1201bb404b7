"""Search strategies (ask/tell), registered by name; ``hwsearch strategies`` lists them.

Implementations live in private modules and register on import.
"""

from hwsearch.strategies._base import STRATEGIES, Problem, Strategy, create_strategy, list_strategies, register_strategy

__all__ = ["STRATEGIES", "Problem", "Strategy", "create_strategy", "list_strategies", "register_strategy"]

from hwsearch.strategies._random import RandomSearch  # noqa: E402  (registers "random")
from hwsearch.strategies._tpe import OptunaSearch, TPESearch  # noqa: E402  (registers "tpe")
from hwsearch.strategies._nsga2 import NSGA2Search  # noqa: E402  (registers "nsga2")

__all__ += ["NSGA2Search", "OptunaSearch", "RandomSearch", "TPESearch"]

from hwsearch.strategies._prioritized import PrioritizedGreedy  # noqa: E402  (registers "prioritized")
from hwsearch.strategies._psvit import PSViTSensitivity  # noqa: E402  (registers "sensitivity")
from hwsearch.strategies._knapsack import KnapsackMILP, solve_milp  # noqa: E402  (registers "knapsack")
from hwsearch.strategies._analytic import AnalyticScan  # noqa: E402  (registers "analytic")
from hwsearch.strategies._local import LocalSearch  # noqa: E402  (registers "local")

__all__ += ["AnalyticScan", "KnapsackMILP", "LocalSearch", "PSViTSensitivity", "PrioritizedGreedy", "solve_milp"]
