"""ProfileAll: asks every single-variable candidate once (the sensitivity profile); not registered."""

from __future__ import annotations

from hwsearch.search.results import Candidate, Result
from hwsearch.search.strategies import Strategy

__all__ = ["ProfileAll"]


class ProfileAll(Strategy):
    """Every variable alone at every level >= 1, in network order; used to build the sensitivity table."""

    name = "profile"

    def setup(self, problem) -> None:  # type: ignore[no-untyped-def]
        from hwsearch.search.profiling import sensitivity_candidates

        super().setup(problem)
        self._todo = list(sensitivity_candidates(problem.space))

    def ask(self, n: int) -> list[Candidate]:
        out, self._todo = self._todo[:n], self._todo[n:]
        return out

    def tell(self, candidate: Candidate, result: Result) -> None:
        pass

    def finished(self) -> bool:
        return not self._todo
