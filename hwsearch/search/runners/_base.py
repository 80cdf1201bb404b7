"""The Runner interface: *where, and how many at once* candidates are evaluated."""

from __future__ import annotations

import abc

from hwsearch.search.evaluation import EvaluatorSpec
from hwsearch.search.results import Candidate, Result

__all__ = ["Runner"]


class Runner(abc.ABC):
    """Evaluates submitted candidates, ``capacity`` at a time.

    The driver submits up to :meth:`free_slots` candidates, then calls :meth:`next_result`, which blocks
    until the OLDEST submitted candidate is done and returns its Result (results of younger candidates
    that finished earlier are kept and returned in their turn). Handing results back in submission order
    makes a search independent of timing: serial and parallel runners with the same capacity produce the
    same trials. :meth:`poll_finished` hands out finished results early, for durable storage only.
    """

    capacity: int = 1

    @abc.abstractmethod
    def start(self, spec: EvaluatorSpec) -> None:
        """Prepare the workers (build evaluators, ship the model once)."""

    @abc.abstractmethod
    def submit(self, candidate: Candidate) -> None: ...

    @abc.abstractmethod
    def in_flight(self) -> int: ...

    @abc.abstractmethod
    def next_result(self) -> Result:
        """The Result of the oldest submitted candidate (blocks)."""

    def poll_finished(self) -> list[Result]:
        """Results finished so far but not yet returned by :meth:`next_result` (no blocking)."""
        return []

    def free_slots(self) -> int:
        return max(0, self.capacity - self.in_flight())

    def close(self) -> None:  # noqa: B027 - optional
        """Release workers."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
