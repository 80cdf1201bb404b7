"""RayRunner: parallel evaluation on Ray actors, locally or on an existing Ray cluster.

The evaluator spec (source weights and evaluation batches included) goes into Ray's object store once;
each actor builds its Evaluator from it once and then evaluates many candidates. A worker that dies
mid-evaluation fails that candidate only: the actor is restarted and the search goes on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from hwsearch.errors import UserError
from hwsearch.evaluation import EvaluatorSpec
from hwsearch.results import Candidate, Result
from hwsearch.runners._base import Runner

__all__ = ["RayRunner"]

log = logging.getLogger(__name__)


def _actor_class() -> Any:
    import ray

    @ray.remote(max_restarts=-1, max_task_retries=0)
    class EvalActor:
        def __init__(self, spec: EvaluatorSpec) -> None:
            from hwsearch.evaluation import Evaluator

            self.evaluator = Evaluator(spec)

        def evaluate(self, candidate: Candidate) -> Result:
            return self.evaluator(candidate)

        def ready(self) -> bool:
            return True

    return EvalActor


class RayRunner(Runner):
    """Evaluates on ``workers`` Ray actors (one CPU thread each by default).

    Args:
        workers: number of actors (= candidates evaluated at once).
        address: an existing Ray cluster (``ray://host:10001`` or ``auto``); None starts Ray locally.
        threads_per_worker: torch threads inside each actor.
    """

    def __init__(self, *, workers: int = 2, address: str | None = None, threads_per_worker: int = 1) -> None:
        self.capacity = workers
        self.workers = workers
        self.address = address
        self.threads_per_worker = threads_per_worker
        self._pending: OrderedDict[Any, tuple[Candidate, Any]] = OrderedDict()  # ref -> (candidate, actor)
        self._done: dict[Any, Result] = {}
        self._actors: list[Any] = []
        self._started_ray = False

    def start(self, spec: EvaluatorSpec) -> None:
        import ray

        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            except Exception as e:  # noqa: BLE001 - connection problems are user errors
                raise UserError(f"cannot start or join Ray ({self.address or 'local'}): {str(e).splitlines()[0]}; "
                                "check --ray-address or use --workers 1") from None
            self._started_ray = True
        spec.threads = self.threads_per_worker
        spec_ref = self._spec_ref = ray.put(spec)  # the weights and batches travel once; kept alive for restarts
        actor_cls = _actor_class()
        self._actors = [actor_cls.options(num_cpus=1).remote(spec_ref) for _ in range(self.workers)]
        ray.get([a.ready.remote() for a in self._actors])
        self._idle = list(self._actors)

    def submit(self, candidate: Candidate) -> None:
        actor = self._idle.pop(0)
        ref = actor.evaluate.remote(candidate)
        self._pending[ref] = (candidate, actor)

    def in_flight(self) -> int:
        return len(self._pending)

    def _collect(self, ref: Any) -> Result:
        import ray

        candidate, actor = self._pending[ref]
        try:
            result = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError) as e:
            reason = "worker died during the evaluation" if not isinstance(e, ray.exceptions.RayTaskError) else str(e)
            result = Result(candidate=candidate, status="failed", error=reason.splitlines()[0][:300])
        self._done[ref] = result
        return result

    def poll_finished(self) -> list[Result]:
        import ray

        waiting = [r for r in self._pending if r not in self._done]
        if not waiting:
            return []
        ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
        return [self._collect(r) for r in ready]

    def next_result(self) -> Result:
        ref = next(iter(self._pending))
        if ref not in self._done:
            self._collect(ref)
        result = self._done.pop(ref)
        _, actor = self._pending.pop(ref)
        self._idle.append(actor)
        return result

    def close(self) -> None:
        import ray

        for a in self._actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
        self._spec_ref = None
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False
