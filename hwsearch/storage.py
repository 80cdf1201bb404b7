"""Durable results: every finished evaluation becomes an Optuna trial before any strategy hears of it.

The default storage is an Optuna ``JournalFileBackend`` file in the run directory (optuna-dashboard
opens it: ``optuna-dashboard <run>/optuna.journal``); ``--storage URL`` takes any Optuna storage URL
(e.g. a shared ``sqlite:///`` or ``postgresql://`` database). Each trial holds the candidate's levels as
parameters, top-1 as its value (failed evaluations are FAIL trials), the constraint excesses under
Optuna's constraints key, and the whole :class:`~hwsearch.results.Result` as a user attribute, so a run
can be resumed from the storage alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from hwsearch.errors import UserError
from hwsearch.results import Result
from hwsearch.space import SearchSpace

__all__ = ["ResultStore", "open_storage", "JOURNAL_FILE"]

JOURNAL_FILE = "optuna.journal"
optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)


def open_storage(run_dir: Path, url: str | None = None) -> optuna.storages.BaseStorage:
    """The storage of a run: ``url`` if given (a ``*.journal`` path is a journal file), else ``run_dir/optuna.journal``."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url and url.endswith(".journal") and "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    if url:
        try:
            return optuna.storages.get_storage(url)
        except Exception as e:  # noqa: BLE001 - any bad URL is a user error
            raise UserError(f"cannot open storage {url!r}: {e}; pass an Optuna storage URL such as sqlite:///runs/x.db") from None
    run_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))


class ResultStore:
    """The results of one search (one Optuna study), appended as they finish.

    Args:
        storage: an Optuna storage; study_name: the study (one per strategy run).
        space: the search space (defines the trial parameters).
        meta: run metadata stored as study user attributes (model, checkpoint, strategy, seed, ...).
    """

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, space: SearchSpace,
                 meta: dict[str, Any] | None = None) -> None:
        self.space = space
        self.study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                         direction="maximize")
        self._dists = {v.name: IntDistribution(0, len(v.levels) - 1) for v in space.variables}
        if meta:
            old = self.study.user_attrs.get("meta")
            if old is not None and json.loads(old).get("space") != meta.get("space"):
                raise UserError(f"the stored run '{study_name}' used another search space; use a new --out or drop --resume")
            self.study.set_user_attr("meta", json.dumps(meta, sort_keys=True))

    def results(self) -> list[Result]:
        """Every stored result, in evaluation order."""
        out = []
        for t in sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number):
            raw = t.user_attrs.get("result")
            if raw is not None and t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):
                out.append(Result.from_dict(json.loads(raw)))
        return out

    def append(self, result: Result) -> None:
        """Write ``result`` as a finished trial (COMPLETE, or FAIL when the evaluation failed)."""
        params = {name: 0 for name in self._dists}
        params.update(result.candidate.levels)
        constraints = {k: (float(v) if math.isfinite(float(v)) else 1e30) for k, v in result.violations.items()}
        state = TrialState.COMPLETE if result.ok else TrialState.PRUNED if result.stopped else TrialState.FAIL
        trial = optuna.trial.create_trial(
            state=state,
            value=float(result.accuracy) if result.ok and result.accuracy is not None else None,
            params=params, distributions=self._dists,
            user_attrs={"result": json.dumps(result.to_dict()), "key": result.candidate.key, "tag": result.candidate.tag,
                        **{k: float(v) for k, v in result.costs.items()}},
            intermediate_values={int(result.samples): float(result.accuracy)}
            if result.stopped and result.accuracy is not None else None,
            constraints=constraints,
        )
        with _interrupt_after():  # a Ctrl-C inside Optuna's journal lock would leave it half-released
            self.study.add_trial(trial)


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold SIGINT during the block and raise KeyboardInterrupt right after it (main thread only)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
