"""Durable results: every finished evaluation becomes an Optuna trial before any strategy hears of it.

The default storage is an Optuna ``JournalFileBackend`` file in the run directory (optuna-dashboard
opens it: ``optuna-dashboard <run>/optuna.journal``); ``--storage URL`` takes any Optuna storage URL
(e.g. a shared ``sqlite:///`` or ``postgresql://`` database). Each trial shows the study as a user thinks
of it: one parameter ``rate:<group>`` per searched group (the pruning rate, a categorical over the
group's real rates), top-1 as its value under the metric name :data:`METRIC_NAME` (failed evaluations are
FAIL trials, early-stopped ones PRUNED), start and end times (its evaluation's duration), short user
attributes (status, tag, drop, costs) and the constraint excesses under Optuna's constraints key. The
whole :class:`~hwsearch.search.results.Result` is a system attribute, so a run can be resumed from the storage
alone.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from hwsearch.errors import UserError
from hwsearch.search.results import Result
from hwsearch.search.encoding import PlanEncoding

__all__ = ["ResultStore", "open_storage", "JOURNAL_FILE", "METRIC_NAME", "param_name"]

JOURNAL_FILE = "optuna.journal"
#: The name of every trial's value (optuna-dashboard shows it instead of "Objective 0").
METRIC_NAME = "top-1 (%)"
_RESULT_ATTR = "hwsearch:result"
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

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, space: PlanEncoding,
                 meta: dict[str, Any] | None = None) -> None:
        self.space = space
        self.study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                         direction="maximize")
        if not self.study.metric_names:
            with warnings.catch_warnings():  # experimental in Optuna 5 (stable since 3.2 in practice)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names([METRIC_NAME])
        self._rates = {v.name: _rounded(v.rates) for v in space.variables}
        self._dists: dict[str, BaseDistribution] = {param_name(n): CategoricalDistribution(r) for n, r in self._rates.items()}
        if meta:
            old = self.study.user_attrs.get("meta")
            if old is not None and json.loads(old).get("space") != meta.get("space"):
                raise UserError(f"the stored run '{study_name}' used another search space; use a new --out or drop --resume")
            self.study.set_user_attr("meta", json.dumps(meta, sort_keys=True))

    def results(self) -> list[Result]:
        """Every stored result, in evaluation order."""
        out = []
        for t in sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number):
            raw = t.system_attrs.get(_RESULT_ATTR, t.user_attrs.get("result"))  # user attr: older runs
            if raw is not None and t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):
                out.append(Result.from_dict(json.loads(raw)))
        return out

    def append(self, result: Result) -> None:
        """Write ``result`` as a finished trial (COMPLETE; PRUNED when stopped early; FAIL when failed).

        It ends now and started ``result.seconds`` earlier (the evaluation's own wall time).
        """
        params = {param_name(name): rates[result.candidate.levels.get(name, 0)] for name, rates in self._rates.items()}
        constraints = {k: (float(v) if math.isfinite(float(v)) else 1e30) for k, v in result.violations.items()}
        state = TrialState.COMPLETE if result.ok else TrialState.PRUNED if result.partial else TrialState.FAIL
        trial = optuna.trial.create_trial(
            state=state,
            value=float(result.accuracy) if result.ok and result.accuracy is not None else None,
            params=params, distributions=self._dists, user_attrs=_short_attrs(result),
            system_attrs={_RESULT_ATTR: json.dumps(result.to_dict()), "hwsearch:key": result.candidate.key},
            intermediate_values={int(result.samples): float(result.accuracy)}
            if result.partial and result.accuracy is not None else None,
            constraints=constraints,
        )
        end = datetime.datetime.now()
        trial.datetime_complete = end
        trial.datetime_start = end - datetime.timedelta(seconds=max(0.0, float(result.seconds)))
        with _interrupt_after():  # a Ctrl-C inside Optuna's journal lock would leave it half-released
            self.study.add_trial(trial)


def param_name(group: str) -> str:
    """The Optuna parameter of a group: its pruning rate (the column name of trials.csv too)."""
    return f"rate:{group}"


def _rounded(rates: tuple[float, ...]) -> tuple[float, ...]:
    """Rates to 4 decimals as trials.csv shows them (exact when rounding would merge two)."""
    short = tuple(round(r, 4) for r in rates)
    return short if len(set(short)) == len(short) else tuple(rates)


def _short_attrs(result: Result) -> dict[str, Any]:
    """What the dashboard lists per trial: status, tag, drop, the main costs, rounded, and the error."""
    attrs: dict[str, Any] = {"status": result.status, "tag": result.candidate.tag or "-"}
    if result.acc_drop is not None:
        attrs["drop_pt" if result.ok else "drop_pt_at_least"] = round(float(result.acc_drop), 3)
    for k, digits in (("param_mb", 4), ("macs_g", 4), ("act_mb", 4), ("sops_g", 6), ("energy_mj", 5),
                      ("latency_ms", 3)):  # the measured ones only when measured
        if k in result.costs:
            attrs[k] = round(float(result.costs[k]), digits)
    if "params" in result.costs:
        attrs["params"] = int(result.costs["params"])
    attrs["feasible"] = bool(result.feasible)
    if result.error:
        attrs["error"] = result.error[:120]
    return attrs


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
