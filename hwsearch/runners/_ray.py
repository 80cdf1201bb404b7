"""RayRunner: parallel evaluation on Ray actors, locally or on an existing Ray cluster.

The evaluator spec (source weights and evaluation batches included) goes into Ray's object store once;
each actor builds its Evaluator from it once and then evaluates many candidates. A worker that dies
mid-evaluation fails that candidate only: the actor is restarted and the search goes on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import replace
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


def _actor_resources(cluster: dict[str, float], workers: int, threads: int | None, device: str) -> dict[str, Any]:
    """Ray options of each actor: CPUs (= its torch threads) and, for a CUDA spec, a share of the GPUs."""
    cpus = threads if threads is not None else max(1, int(cluster.get("CPU", workers)) // workers)
    options: dict[str, Any] = {"num_cpus": cpus}
    if device.startswith("cuda"):
        gpus = float(cluster.get("GPU", 0))
        if gpus <= 0:
            raise UserError("--device cuda with Ray: the cluster has no GPU; use --device cpu or add GPU nodes")
        options["num_gpus"] = min(1.0, gpus / workers)
    return options


class RayRunner(Runner):
    """Evaluates on ``workers`` Ray actors (one CPU thread each by default).

    Args:
        workers: number of actors (= candidates evaluated at once).
        address: an existing Ray cluster (``ray://host:10001`` or ``auto``); None starts Ray locally.
        threads_per_worker: torch threads (and Ray CPUs) of each actor; None: the cluster's CPUs shared out
            over the workers (at least 1). With a CUDA spec each actor also gets ``num_gpus``: the
            cluster's GPUs shared out (at most 1 each); Ray sets the actor's visible GPU.
    """

    def __init__(self, *, workers: int = 2, address: str | None = None, threads_per_worker: int | None = 1) -> None:
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
                    ray.init(num_cpus=self.workers * (self.threads_per_worker or 1), include_dashboard=False,
                             log_to_driver=False)
            except Exception as e:  # noqa: BLE001 - connection problems are user errors
                raise UserError(f"cannot start or join Ray ({self.address or 'local'}): {str(e).splitlines()[0]}; "
                                "check --ray-address or use --workers 1") from None
            self._started_ray = True
        options = _actor_resources(ray.cluster_resources(), self.workers, self.threads_per_worker, spec.device)
        spec.threads = options["num_cpus"]
        shipped = replace(spec, device="cuda") if "num_gpus" in options else spec  # Ray picks the actor's GPU
        spec_ref = self._spec_ref = ray.put(shipped)  # the weights and batches travel once; kept alive for restarts
        actor_cls = _actor_class()
        self._actors = [actor_cls.options(**options).remote(spec_ref) for _ in range(self.workers)]
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
