"""The shared sensitivity profile: computed once per fingerprint, cached, reused by every strategy.

The profile (every searched group alone at every level, :func:`~hwsearch.search.profiling.sensitivity_candidates`)
depends on the checkpoint, the exact evaluation images, the rate grid, the criterion, the searched groups
and the evaluator's settings (batch-norm re-estimation); :func:`profile_fingerprint` names all of it
and its hash is the cache key. Profiles live in the user cache directory (:func:`cache_dir`:
``$HWSEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/hwsearch``, else ``~/.cache/hwsearch``), so later runs,
other ``--out`` directories and ``compare`` reuse them; a reused profile costs 0 new evaluations.

A profile measured with an early-stop limit ``L`` knows every drop up to ``L`` exactly (beyond it only
a lower bound), so it serves any later search whose drop limit is at most ``L``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from hwsearch.atomic import atomic_write_json
from hwsearch.data import count_samples
from hwsearch.errors import UserError
from hwsearch.search.results import Candidate, Result
from hwsearch.search.profiling.table import SensitivityEntry, SensitivityMeta, SensitivityTable, sensitivity_candidates

__all__ = ["Profile", "cache_dir", "ensure_profile", "profile_fingerprint", "load_table_file", "SENSITIVITY_FILE"]

log = logging.getLogger(__name__)
SENSITIVITY_FILE = "sensitivity.json"
CACHE_SCHEMA = 1


def cache_dir() -> Path:
    """hwsearch's cache folder: ``$HWSEARCH_CACHE_DIR``, ``$XDG_CACHE_HOME/hwsearch`` or ``~/.cache/hwsearch``."""
    if os.environ.get("HWSEARCH_CACHE_DIR"):
        return Path(os.environ["HWSEARCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "hwsearch"


@dataclass(kw_only=True)
class Profile:
    """The shared profile of a search.

    Attributes:
        table: the sensitivity table.
        results: its evaluations (told to every strategy as known results).
        new_evaluations: evaluations run now to make it (0 when reused).
        seconds: wall time spent now (0 when reused).
        source: ``computed``, ``cache <path>`` or ``file <path>``.
    """

    table: SensitivityTable
    results: list[Result] = field(default_factory=list)
    new_evaluations: int = 0
    seconds: float = 0.0
    source: str = "computed"


def profile_fingerprint(setup: Any) -> dict[str, Any]:
    """Everything a profile's numbers depend on (plain JSON)."""
    fp = setup.fingerprint
    return {k: fp[k] for k in ("model", "model_kwargs", "checkpoint", "data", "eval", "rates", "criterion",
                               "variables", "bn_recalibrate", "calibration")}


def _key(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _serves(stop_drop: float | None, limit: float | None) -> bool:
    """Whether a profile stopped at ``stop_drop`` knows every drop up to ``limit`` exactly."""
    if stop_drop is None:
        return True
    return limit is not None and float(stop_drop) + 1e-12 >= float(limit)


def _write_table_files(setup: Any, table: SensitivityTable) -> None:
    out = setup.run_dir
    out.mkdir(parents=True, exist_ok=True)
    table.save(out / SENSITIVITY_FILE)
    table.to_wide_frame().to_csv(out / "sensitivity.csv")
    table.to_long_frame().to_csv(out / "sensitivity_long.csv", index=False)
    table.plot(out / "sensitivity.png")


def load_table_file(path: Path, setup: Any) -> SensitivityTable:
    """A table from ``--sensitivity FILE``: our JSON, the NNI-style wide CSV or the Distiller-style long CSV.

    A JSON table must match this run's fingerprint; a CSV carries no fingerprint, so its variables must be
    this space's and its rates this grid's (checked), and it is trusted for the rest.
    """
    if not path.is_file():
        raise UserError(f"--sensitivity {path}: no such file; pass a sensitivity.json / .csv written by "
                        "`hwsearch sensitivity`, or drop --sensitivity to profile")
    space = setup.space
    base_acc = float(setup.baseline.accuracy)
    meta = SensitivityMeta(model=space.model, checkpoint_sha256=space.checkpoint_sha256,
                           rates=tuple(r for r in space.grid if r > 0),
                           extra={"source": str(path)})
    if path.suffix.lower() == ".json":
        table = SensitivityTable.load(path)
        want = _key(profile_fingerprint(setup))
        got = table.meta.extra.get("profile_key")
        if got != want:
            raise UserError(f"--sensitivity {path} was measured under another checkpoint, data, rate grid, criterion, "
                            "groups or evaluator setting; drop --sensitivity to profile this setting")
        return table
    try:
        frame = pd.read_csv(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        raise UserError(f"--sensitivity {path}: not a readable CSV ({type(e).__name__}); pass sensitivity.json or .csv") from None
    entries: list[SensitivityEntry] = []
    if {"parameter", "level", "top1"} <= set(frame.columns):  # long
        rows = [(str(r["parameter"]), int(r["level"]), r["top1"]) for _, r in frame.iterrows()]
        stopped = {(str(r["parameter"]), int(r["level"])) for _, r in frame.iterrows()
                   if "stopped" in frame.columns and bool(r["stopped"])}
    elif "layername" in frame.columns:  # wide: one column per nominal rate
        rows, stopped = [], set()
        for _, r in frame.iterrows():
            name = str(r["layername"])
            if name not in space.names():
                raise UserError(f"--sensitivity {path}: unknown group '{name}' (this space has {', '.join(space.names())})")
            for col in frame.columns[1:]:
                try:
                    rate = float(col)
                except ValueError:
                    raise UserError(f"--sensitivity {path}: column '{col}' is not a pruning rate") from None
                rows.append((name, space[name].level_for_rate(rate), r[col]))
    else:
        raise UserError(f"--sensitivity {path}: expected the columns of sensitivity.csv (layername, rates...) or "
                        "sensitivity_long.csv (parameter, level, top1, ...)")
    seen: set[tuple[str, int]] = set()
    for name, lv, top1 in rows:
        if name not in space.names():
            raise UserError(f"--sensitivity {path}: unknown group '{name}' (this space has {', '.join(space.names())})")
        v = space[name]
        if not 0 < lv < len(v.levels) or (name, lv) in seen:
            continue
        seen.add((name, lv))
        acc = None if pd.isna(top1) else float(top1)
        entries.append(SensitivityEntry(variable=name, kind=v.kind, level=lv, kept=v.levels[lv], width=v.width,
                                        rate=float(v.rates[lv]), nominal_rate=float(v.rates[lv]), accuracy=acc,
                                        acc_drop=None if acc is None else base_acc - acc, stopped=(name, lv) in stopped))
    order = {n: i for i, n in enumerate(space.names())}
    entries.sort(key=lambda e: (order[e.variable], e.level))
    return SensitivityTable(meta=meta, baseline_accuracy=base_acc, entries=tuple(entries),
                            baseline_costs=dict(setup.baseline.costs))


def ensure_profile(setup: Any, runner: Any, *, file: str | Path | None = None, progress: bool = True,
                   use_cache: bool = True) -> Profile:
    """The shared profile of ``setup``: from ``file``, the cache, or computed (and then cached)."""
    from hwsearch.search.loop import run_strategy
    from hwsearch.search.profiling.strategy import ProfileAll

    fingerprint = profile_fingerprint(setup)
    key = _key(fingerprint)
    limit = setup.constraints.max_acc_drop
    if file is not None:
        table = load_table_file(Path(file), setup)
        _write_table_files(setup, table)
        return Profile(table=table, results=_entries_as_results(setup, table), source=f"file {file}")
    path = cache_dir() / "profiles" / f"{key}.json"
    if use_cache and path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("schema") == CACHE_SCHEMA and data.get("key") == key and _serves(data.get("stop_drop"), limit):
                table = SensitivityTable.from_dict(data["table"])
                results = [_rescored(setup, Result.from_dict(r)) for r in data["results"]]
                log.info("reusing the profile %s", path)
                _write_table_files(setup, table)
                return Profile(table=table, results=results, source=f"cache {path}")
        except (OSError, ValueError, KeyError, TypeError, UserError) as e:
            log.warning("ignoring the unreadable cached profile %s (%s)", path, e)
    t0 = time.perf_counter()
    problem = setup.problem(eval_budget=None)
    outcome = run_strategy(setup, ProfileAll(), runner, study_name="profile", problem=problem, resume=True,
                           progress=progress, total=len(sensitivity_candidates(setup.space)),
                           fingerprint={**fingerprint, "stop_drop": setup.spec.stop_drop})
    if outcome.interrupted:
        raise KeyboardInterrupt
    results = list(outcome.results)
    meta = SensitivityMeta(model=setup.space.model, checkpoint_sha256=setup.space.checkpoint_sha256,
                           split=str(setup.study.data.eval_split), subset=count_samples(setup.spec.batches),
                           rates=tuple(r for r in setup.space.grid if r > 0),
                           extra={"profile_key": key, "criterion": setup.space.criterion})
    table = SensitivityTable.from_results(setup.space, results, float(setup.baseline.accuracy), meta,
                                         baseline_costs=dict(setup.baseline.costs))
    seconds = time.perf_counter() - t0
    if use_cache:
        atomic_write_json(path, {"schema": CACHE_SCHEMA, "key": key, "fingerprint": fingerprint,
                            "stop_drop": setup.spec.stop_drop, "table": table.to_dict(),
                            "results": [r.to_dict() for r in results], "seconds": seconds})
    _write_table_files(setup, table)
    return Profile(table=table, results=results, new_evaluations=outcome.fresh, seconds=seconds)


def _rescored(setup: Any, result: Result) -> Result:
    """A cached profile result with its constraint excesses under this run's constraints (the cache is
    shared by runs with other budgets; a measured budget finds no measurement in it: infeasible)."""
    if not result.costs:
        return result
    return replace(result, violations=setup.constraints.violations(result.costs, result.acc_drop))


def _entries_as_results(setup: Any, table: SensitivityTable) -> list[Result]:
    """A table read from a file as results (costs predicted exactly; accuracy from the file)."""
    out = []
    for e in table.entries:
        cand = Candidate(levels={e.variable: e.level}, tag="profile")
        costs = setup.local.costs(cand.levels)
        if e.accuracy is None:
            out.append(Result(candidate=cand, status="failed", costs=costs, error="failed in the given table"))
            continue
        drop = float(setup.baseline.accuracy) - e.accuracy
        status = "stopped" if e.stopped else "ok"
        out.append(Result(candidate=cand, status=status, accuracy=e.accuracy, acc_drop=drop, costs=costs,
                          violations=setup.constraints.violations(costs, drop if math.isfinite(drop) else None)))
    return out
