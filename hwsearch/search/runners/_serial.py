"""SerialRunner: evaluates in this process, one candidate at a time."""

from __future__ import annotations

from collections import deque

from hwsearch.search.evaluation import Evaluator, EvaluatorSpec
from hwsearch.search.results import Candidate, Result
from hwsearch.search.runners._base import Runner

__all__ = ["SerialRunner"]


class SerialRunner(Runner):
    """In-process evaluation. ``capacity`` > 1 only batches asks (to mirror a parallel runner's asks)."""

    def __init__(self, *, capacity: int = 1) -> None:
        self.capacity = capacity
        self._queue: deque[Candidate] = deque()
        self.evaluator: Evaluator | None = None

    def start(self, spec: EvaluatorSpec) -> None:
        self.evaluator = Evaluator(spec)

    def submit(self, candidate: Candidate) -> None:
        self._queue.append(candidate)

    def in_flight(self) -> int:
        return len(self._queue)

    def next_result(self) -> Result:
        assert self.evaluator is not None, "start() first"
        return self.evaluator(self._queue.popleft())
