"""Search strategies (ask/tell), registered by name; ``hwsearch strategies`` lists them.

Implementations live in private modules and register on import.
"""

from hwsearch.strategies._base import STRATEGIES, Problem, Strategy, create_strategy, list_strategies, register_strategy

__all__ = ["STRATEGIES", "Problem", "Strategy", "create_strategy", "list_strategies", "register_strategy"]
