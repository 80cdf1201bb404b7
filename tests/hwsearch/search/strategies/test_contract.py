"""Every registered strategy passes the strategy contract (hwsearch.testing.strategy_contract)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hwsearch.search.strategies import Strategy, create_strategy, list_strategies
from hwsearch.testing.strategy_contract import StrategyContract


@pytest.fixture(params=list_strategies())
def make_strategy(request: pytest.FixtureRequest) -> Callable[..., Strategy]:
    return lambda **kw: create_strategy(request.param, **{"seed": 0, **kw})


class TestEveryStrategy(StrategyContract):
    pass
