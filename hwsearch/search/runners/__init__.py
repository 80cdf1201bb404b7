"""Runners: where candidates are evaluated (in process, or on Ray actors)."""

from hwsearch.search.runners._base import Runner
from hwsearch.search.runners._ray import RayRunner, RayStats
from hwsearch.search.runners.cluster import check_workers
from hwsearch.search.runners._serial import SerialRunner

__all__ = ["RayRunner", "RayStats", "Runner", "SerialRunner", "check_workers", "make_runner"]


def make_runner(workers: int = 1, address: str | None = None, *, capacity: int | None = None,
                threads: int | None = None) -> Runner:
    """Serial for one worker and no cluster address, Ray otherwise.

    ``threads``: torch threads of each Ray worker (None: the cluster's CPUs shared out over the workers).
    """
    if workers <= 1 and not address:
        return SerialRunner(capacity=capacity or 1)
    return RayRunner(workers=max(1, workers), address=address, threads_per_worker=threads)
