"""RayRunner: parallel evaluation on Ray actors, on a private local instance or on an existing Ray cluster.

The evaluator spec (source weights and evaluation batches included) goes into Ray's object store once;
each actor builds its Evaluator from it once and then evaluates many candidates, one at a time. Candidates
wait in the driver until an actor is known to be ready, so a worker that dies fails exactly the candidate
it was running: the actor is restarted, probed until it answers, and the candidates queued meanwhile go
to the other actors or wait for it. A candidate Ray reports as never started on a restarting actor is
sent again. Results are handed back in submission order (see :class:`~hwsearch.search.runners.Runner`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from hwsearch.errors import UserError
from hwsearch.search.evaluation import EvaluatorSpec
from hwsearch.search.results import Candidate, Result
from hwsearch.search.runners._base import Runner
from hwsearch.search.runners.cluster import start_ray

__all__ = ["RayRunner", "RayStats"]

log = logging.getLogger(__name__)

#: Substring of Ray's error for a task that reached an actor while it was restarting (never started).
_NOT_STARTED = "actor is restarting"
#: Seconds between readiness probes of a restarting actor.
PROBE_INTERVAL_S = 0.5


def _actor_class() -> Any:
    import ray

    @ray.remote(max_restarts=-1, max_task_retries=0)
    class EvalActor:
        # No constructor arguments: a restarted actor gets the spec again from ``setup`` (arguments held in
        # the object store would make Ray warn on every run, Ray issue 53727).
        def __init__(self) -> None:
            self.evaluator: Any = None

        def evaluate(self, candidate: Candidate) -> Result:
            return self.evaluator(candidate)  # type: ignore[no-any-return]

        def setup(self, boxed_spec: list[Any]) -> tuple[int, str]:
            """Build the evaluator (once per incarnation); this worker's pid and node id."""
            import os

            from hwsearch.search.evaluation import Evaluator

            if self.evaluator is None:
                self.evaluator = Evaluator(ray.get(boxed_spec[0]))
            return os.getpid(), ray.get_runtime_context().get_node_id()

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


@dataclass(slots=True)
class RayStats:
    """What happened to the workers during a run."""

    failed_by_death: int = 0   # candidates failed because their worker died while running them
    resent: int = 0            # candidates sent again because they never started (actor restarting)
    restarts: int = 0          # actor restarts waited for
    nodes: int = 0             # distinct Ray nodes the actors ran on


class RayRunner(Runner):
    """Evaluates on ``workers`` Ray actors (one CPU thread each by default).

    Args:
        workers: number of actors (= candidates evaluated at once).
        address: an existing Ray cluster (``HOST:PORT``, ``ray://host:10001`` or ``auto``); None starts a
            private local instance bound to 127.0.0.1 (shut down, with every process it started, by
            :meth:`close`).
        threads_per_worker: torch threads (and Ray CPUs) of each actor; None: the cluster's CPUs shared out
            over the workers (at least 1). With a CUDA spec each actor also gets ``num_gpus``: the
            cluster's GPUs shared out (at most 1 each); Ray sets the actor's visible GPU.
        capacity: candidates in flight at once (default ``workers``); those beyond the ready actors wait
            in the driver.
    """

    def __init__(self, *, workers: int = 2, address: str | None = None, threads_per_worker: int | None = 1,
                 capacity: int | None = None) -> None:
        self.capacity = capacity or workers
        self.workers = workers
        self.address = address
        self.threads_per_worker = threads_per_worker
        self.stats = RayStats()
        self._order: deque[int] = deque()                       # submission numbers, oldest first
        self._queue: deque[tuple[int, Candidate]] = deque()      # waiting for a ready actor
        self._running: dict[Any, tuple[int, Candidate, Any]] = {}  # task ref -> (number, candidate, actor)
        self._probing: dict[Any, Any] = {}                      # setup() ref -> restarting actor
        self._later: list[tuple[float, Any]] = []               # (time, actor): probe again then
        self._results: dict[int, Result] = {}
        self._polled: set[int] = set()
        self._idle: list[Any] = []
        self._actors: list[Any] = []
        self._count = 0
        self._started_ray = False
        self._spec_ref: Any = None

    def start(self, spec: EvaluatorSpec) -> None:
        import ray

        self._started_ray = start_ray(self.workers, self.address, self.threads_per_worker)
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]  # ray: unannotated
        options = _actor_resources(resources, self.workers, self.threads_per_worker, spec.device)
        spec.threads = options["num_cpus"]
        shipped = replace(spec, device="cuda") if "num_gpus" in options else spec  # Ray picks the actor's GPU
        self._spec_ref = ray.put(shipped)  # the weights and batches travel once; kept alive for restarts
        actor_cls = _actor_class()
        self._actors = [actor_cls.options(**options).remote() for _ in range(self.workers)]
        where = ray.get([a.setup.remote([self._spec_ref]) for a in self._actors])
        self.pids = [pid for pid, _ in where]
        self.stats.nodes = len({node for _, node in where})
        log.info("%d Ray workers on %d node(s), pids %s", self.workers, self.stats.nodes, self.pids)
        self._idle = list(self._actors)

    def submit(self, candidate: Candidate) -> None:
        number = self._count
        self._count += 1
        self._order.append(number)
        self._queue.append((number, candidate))
        self._dispatch()

    def in_flight(self) -> int:
        return len(self._order)

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            number, candidate = self._queue.popleft()
            actor = self._idle.pop(0)
            self._running[actor.evaluate.remote(candidate)] = (number, candidate, actor)

    def _probe(self, actor: Any, *, again: bool = False) -> None:
        if not again:
            if any(a is actor for a in self._probing.values()) or any(a is actor for _, a in self._later):
                return  # one probe per restart
            self.stats.restarts += 1
        self._probing[actor.setup.remote([self._spec_ref])] = actor

    def _handle(self, ref: Any) -> None:
        """Collect one finished task or probe."""
        import ray

        if ref in self._probing:
            actor = self._probing.pop(ref)
            try:
                ray.get(ref)
                self._idle.append(actor)
            except ray.exceptions.ActorUnavailableError:  # still restarting: ask again shortly
                self._later.append((time.monotonic() + PROBE_INTERVAL_S, actor))
            except ray.exceptions.RayActorError as e:  # gone for good (e.g. its node died): drop it
                log.warning("a Ray worker is gone for good: %s", str(e).splitlines()[0][:200])
                self._actors.remove(actor)
            return
        number, candidate, actor = self._running.pop(ref)
        try:
            result = ray.get(ref)
            self._idle.append(actor)
        except ray.exceptions.RayTaskError as e:  # the evaluation raised (Evaluator catches most): worker alive
            result = Result(candidate=candidate, status="failed", error=str(e).splitlines()[0][:300])
            self._idle.append(actor)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
            self._probe(actor)  # ready again once restarted; until then its candidates wait or go elsewhere
            if _NOT_STARTED in str(e):  # reached the actor while it restarted: never ran, send it again
                self.stats.resent += 1
                self._queue.appendleft((number, candidate))
                return
            self.stats.failed_by_death += 1
            result = Result(candidate=candidate, status="failed", error="worker died during the evaluation")
        self._results[number] = result

    def _wait(self, timeout: float | None) -> bool:
        """Handle whatever finishes within ``timeout`` (None: block for one); False if nothing could."""
        import ray

        now = time.monotonic()
        for at, actor in [x for x in self._later if x[0] <= now]:
            self._later.remove((at, actor))
            self._probe(actor, again=True)
        refs = [*self._running, *self._probing]
        block = timeout is None
        if not refs:
            if not self._later or not block:
                return False
            time.sleep(max(0.0, min(at for at, _ in self._later) - now))  # only restarting actors: wait for one
            return True
        if block and self._later:  # wake up for the next probe
            timeout = max(0.01, min(at for at, _ in self._later) - now)
        ready, _ = ray.wait(refs, num_returns=1 if block else len(refs), timeout=timeout)
        for ref in ready:
            self._handle(ref)
        self._dispatch()
        return True

    def wait_ready(self, timeout_s: float = 60.0) -> int:
        """Wait (at most ``timeout_s``) until no actor is restarting; the number of actors ready for work."""
        deadline = time.monotonic() + timeout_s
        while (self._probing or self._later) and time.monotonic() < deadline:
            self._wait(None if not self._running else 0.1)
        return len(self._actors) - len(self._probing) - len(self._later)

    def poll_finished(self) -> list[Result]:
        self._wait(0)
        fresh = [n for n in self._results if n not in self._polled]
        self._polled.update(fresh)
        return [self._results[n] for n in sorted(fresh)]

    def next_result(self) -> Result:
        number = self._order[0]
        while number not in self._results:
            if not self._actors:
                self._fail_queued("no Ray worker left (every actor is gone)")
                break
            self._wait(None)
        self._order.popleft()
        self._polled.discard(number)
        return self._results.pop(number)

    def _fail_queued(self, why: str) -> None:
        while self._queue:
            number, candidate = self._queue.popleft()
            self._results[number] = Result(candidate=candidate, status="failed", error=why)

    def close(self) -> None:
        from hwsearch import interrupts

        with interrupts.deferred():  # a second Ctrl-C must not leave Ray processes behind
            self._close()

    def _close(self) -> None:
        import ray

        if self._actors or self._running or self._probing or self._later:
            log.info("Ray workers: %d candidate(s) failed by a worker death, %d sent again, %d restart(s)",
                     self.stats.failed_by_death, self.stats.resent, self.stats.restarts)
        for a in self._actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors, self._running, self._probing, self._idle, self._later = [], {}, {}, [], []
        self._spec_ref = None
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False
