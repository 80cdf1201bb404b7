"""The ask/tell loop: the strategy asks, the runner evaluates, the store keeps, the strategy is told.

:func:`run_strategy` is the one loop every search (``run``, ``compare``, the profile) goes through.
Every result is written to the Optuna storage before the strategy hears of it; results are told in
ask order, so serial and Ray runs give the same trials and a resumed run (``resume=True``) replays the
stored results through a fresh strategy of the same seed exactly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from hwsearch import interrupts
from hwsearch.errors import UserError
from hwsearch.search.halving import Halving, stage_boundaries
from hwsearch.progress import progress_bar
from hwsearch.search.results import Candidate, Result, select_best
from hwsearch.search.runners import Runner
from hwsearch.search.storage import ResultStore, open_storage
from hwsearch.search.strategies import Problem, Strategy

__all__ = ["run_strategy", "LoopOutcome", "check_fingerprint", "check_stored_runs"]

log = logging.getLogger(__name__)


class LoopOutcome:
    """What one strategy's loop produced: its own results (evaluation order) and whether interrupted."""

    def __init__(self, results: list[Result], interrupted: bool, new_evaluations: int, fresh: int = 0,
                 halved: int = 0) -> None:
        self.results = results
        #: candidates successive halving stopped (status ``halved``).
        self.halved = halved
        self.interrupted = interrupted
        #: distinct candidates this strategy had evaluated (now or, on resume, before): shared-profile
        #: results it was told are not among them.
        self.new_evaluations = new_evaluations
        #: evaluations run by this call (a resumed run's stored results are not among them).
        self.fresh = fresh


def check_stored_runs(setup: Any, names: Sequence[str]) -> None:
    """Before any evaluation: refuse to resume when a stored run of one of ``names`` has another fingerprint
    (so a mismatch is reported before the shared profile is computed, not after)."""
    import optuna

    storage = open_storage(setup.run_dir, setup.storage_url)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    for name in names:
        if name in existing:
            study = optuna.load_study(study_name=name, storage=storage)
            _compare_fingerprints(study.user_attrs.get("fingerprint"), setup.fingerprint, name, str(setup.run_dir))


def check_fingerprint(store: ResultStore, fingerprint: Mapping[str, Any], name: str, where: str) -> None:
    """Refuse to resume a stored run measured under another space, grid, checkpoint, criterion or data."""
    _compare_fingerprints(store.study.user_attrs.get("fingerprint"), fingerprint, name, where)


def _compare_fingerprints(raw: str | None, fingerprint: Mapping[str, Any], name: str, where: str) -> None:
    if raw is None:
        return
    old = json.loads(raw)
    diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
    if diff:
        raise UserError(f"the stored run '{name}' in {where} was made with another {', '.join(diff)}; "
                        "use a new --out (or --storage), or rerun with the original settings")


def run_strategy(setup: Any, strategy: Strategy, runner: Runner, *, study_name: str, problem: Problem,
                 eval_budget: int | None = None, resume: bool = False, progress: bool = True,
                 history: Sequence[Result] = (), on_result: Callable[[Result], None] | None = None,
                 total: int | None = None, fingerprint: Mapping[str, Any] | None = None) -> LoopOutcome:
    """Drive one strategy to the end.

    Args:
        setup: the :class:`~hwsearch.search.session.SearchSetup` (run directory, storage, fingerprint).
        strategy: a fresh strategy; ``setup(problem)`` is called here.
        runner: a started runner.
        study_name: the Optuna study the results go to.
        problem: what the strategy may know (its ``history`` is told to it as known results).
        eval_budget: the most new evaluations.
        resume: continue a stored run (else a non-empty store is refused).
        history: results known before the strategy starts (the shared profile): written to this
            study as completed trials (once), answered from the cache when asked, never re-evaluated
            and never counted as new evaluations.
    """
    store = ResultStore(open_storage(setup.run_dir, setup.storage_url), study_name, setup.space,
                        meta={"strategy": strategy.name, "params": _plain(strategy.get_params()),
                              "space": setup.space.names(), "model": setup.space.model,
                              "checkpoint": setup.space.checkpoint_sha256})
    fingerprint = dict(setup.fingerprint if fingerprint is None else fingerprint)
    check_fingerprint(store, fingerprint, study_name, str(setup.run_dir))
    stored = store.results()
    history_keys = {r.candidate.key for r in history}
    own_stored = [r for r in stored if r.candidate.key not in history_keys]
    if own_stored and not resume:
        raise UserError(f"run '{study_name}' in {setup.run_dir} already has {len(own_stored)} results; "
                        "pass --resume to continue it or --out to start a new run")
    store.study.set_user_attr("fingerprint", json.dumps(fingerprint, sort_keys=True, default=str))
    durable = {r.candidate.key for r in stored}
    for r in history:  # the shared profile: completed trials of every strategy's study
        if r.candidate.key not in durable:
            store.append(r)
            durable.add(r.candidate.key)
    cache = {r.candidate.key: r for r in history}
    cache.update({r.candidate.key: r for r in stored if r.candidate.key not in cache})
    strategy.setup(problem)
    log.info("%s: asking up to %d at a time, budget %s new evaluations, %d known results (%d stored by an earlier run)",
             study_name, runner.capacity, "none" if eval_budget is None else eval_budget, len(history), len(own_stored))
    results: list[Result] = []
    queue: list[Candidate] = []  # asked, in order; evaluated (or cached) results are told in this order
    submitted: set[str] = set()
    bar = progress_bar(total=total if total is not None else eval_budget, desc=strategy.name, enabled=progress, unit="eval", leave=False)
    interrupted = False
    own: set[str] = set()  # distinct evaluated candidates of this strategy (not the shared history)
    spent = 0  # told results outside the history: what the evaluation budget counts
    fresh = 0
    objective = problem.objective
    halving = None
    eta = float(getattr(setup, "halving_eta", 0.0) or 0.0)
    if eta and objective == "accuracy" and strategy.halving:
        from hwsearch.data import batch_sizes

        halving = Halving(eta, stage_boundaries(batch_sizes(setup.spec.batches)))

    def record(res: Result) -> None:
        nonlocal spent
        if res.candidate.key not in durable:
            store.append(res)
            durable.add(res.candidate.key)
        cache.setdefault(res.candidate.key, res)
        results.append(res)
        if res.candidate.key not in history_keys:
            spent += 1
            if res.candidate.key not in own:
                own.add(res.candidate.key)
                bar.update(1)
                if halving is not None:
                    halving.observe(res)
        best = select_best(results, objective)
        bar.set_postfix(best=f"{best.accuracy:.2f}" if best else "-", feasible=sum(r.feasible for r in results),
                        refresh=False)
        if on_result:
            on_result(res)

    try:
        while True:
            # Occupancy counts every asked-but-untold candidate, cached or not, so a resumed run asks
            # and tells in exactly the same order as the original one.
            room = runner.capacity - len(queue)
            if eval_budget is not None:
                pending = sum(1 for c in queue if c.key not in history_keys)
                room = min(room, eval_budget - spent - pending)
            asked = strategy.ask(room) if room > 0 else []
            for cand in asked:
                queue.append(cand)
                if cand.key not in cache and cand.key not in submitted:
                    submitted.add(cand.key)
                    runner.submit(replace(cand, rungs=halving.bars()) if halving is not None else cand)
            if not queue:
                break
            cand = queue.pop(0)
            if cand.key in cache:
                res = cache[cand.key]
            else:
                for early in runner.poll_finished():  # durable as soon as finished
                    if early.candidate.key not in durable:
                        store.append(early)
                        durable.add(early.candidate.key)
                res = runner.next_result()
                fresh += 1
                submitted.discard(cand.key)
            res = replace(res, candidate=cand, number=len(results))
            record(res)
            strategy.tell(cand, res)
    except KeyboardInterrupt:
        interrupted = True
        with interrupts.deferred():  # evaluations that finished before the signal are kept too
            for early in runner.poll_finished():
                if early.candidate.key not in durable:
                    store.append(early)
                    durable.add(early.candidate.key)
    finally:
        bar.close()
    best = select_best(results, objective)
    log.info("%s: %s after %d results (%d new evaluations, %d evaluated now); best feasible %s", study_name,
             "interrupted" if interrupted else "finished", len(results), len(own), fresh,
             f"{best.candidate.key} at top-1 {best.accuracy:.2f}" if best is not None and best.accuracy is not None
             else "none")
    return LoopOutcome(results, interrupted, len(own), fresh, halving.halved if halving is not None else 0)


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Strategy params as JSON-safe values (candidates become level maps)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, (list, tuple)):
            out[k] = [dict(x.levels) if isinstance(x, Candidate) else x for x in v]
        else:
            out[k] = v
    return out
