"""The sensitivity table: every searchable variable pruned alone at every level, evaluated.

PrimeSVT's robustness profiling and PSViT's sensitivity analysis are the same measurement: prune one
group at one rate, evaluate, restore. :func:`sensitivity_candidates` lists those single-variable
candidates; :meth:`SensitivityTable.from_results` turns their results into a table that strategies read
(:meth:`SensitivityTable.accuracy`, :meth:`SensitivityTable.drop`), that is cached on disk under a key of
what it depends on (:class:`SensitivityMeta`: model, checkpoint hash, evaluation split and subset, rate
grid), and that exports in the shapes NNI and Distiller users know:

* :meth:`SensitivityTable.to_wide_frame`: NNI ``SensitivityAnalysis`` CSV, one row per layer
  (index ``layername``), one column per nominal grid rate, top-1 values;
* :meth:`SensitivityTable.to_long_frame`: Distiller ``perform_sensitivity_analysis`` CSV
  (``parameter, sparsity, top1, top5, loss``) plus level, realised rate, size and memory-saving columns.

Rates: a group's granularity (heads, ``round_to``) realises a rate that differs from the grid's nominal
one; entries keep both (``nominal_rate`` is the grid rate closest to the realised one, ties milder).

>>> meta = SensitivityMeta(model="tiny", rates=(0.5,))
>>> table = SensitivityTable(meta=meta, baseline_accuracy=80.0, entries=(
...     SensitivityEntry(variable="fc1", level=1, kept=2, width=4, rate=0.5, nominal_rate=0.5,
...                      accuracy=78.5, acc_drop=1.5),))
>>> table.drop("fc1", 1), table.drop("fc1", 0), table.accuracy("fc1", 0)
(1.5, 0.0, 80.0)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from hwsearch.errors import UserError
from hwsearch.search.results import Candidate, Result
from hwsearch.search.encoding import PlanEncoding

__all__ = ["PROFILE_TAG", "SensitivityEntry", "SensitivityMeta", "SensitivityTable", "sensitivity_candidates"]

#: Tag of the single-variable profiling candidates.
PROFILE_TAG = "profile"
SCHEMA = 1
#: Variables drawn with one legend entry each; above this the plot groups the legend by kind.
PLOT_LEGEND_MAX = 12


def sensitivity_candidates(space: PlanEncoding) -> list[Candidate]:
    """Every single-variable candidate: each variable (space order) at each level >= 1 (mildest first).

    >>> from hwsearch.search.encoding import Variable
    >>> v = Variable(name="fc1", kind="mlp", width=4, levels=(4, 2, 1), rates=(0.0, 0.5, 0.75), params=8, order=0)
    >>> [c.levels for c in sensitivity_candidates(PlanEncoding(model="m", variables=[v]))]
    [{'fc1': 1}, {'fc1': 2}]
    """
    return [Candidate(levels={v.name: lv}, tag=PROFILE_TAG) for v in space.variables for lv in range(1, len(v.levels))]


@dataclass(frozen=True, slots=True, kw_only=True)
class SensitivityMeta:
    """What a sensitivity table depends on; a cached table is reused only when all of it matches.

    Attributes:
        model: search-space registry name.
        checkpoint_sha256: identity of the evaluated weights.
        split: evaluation split name (``val``, ``test``, ...).
        subset: evaluation subset size (None: the whole split).
        rates: the nominal rate grid (without 0); empty: use each level's realised rate.
        extra: anything else the table depends on (variables, criterion, ...); JSON values.
    """

    model: str
    checkpoint_sha256: str = ""
    split: str = ""
    subset: int | None = None
    rates: tuple[float, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """Stable 16-hex-digit hash of every field (rates rounded to 1e-6)."""
        data = [self.model, self.checkpoint_sha256, self.split, self.subset, [round(float(r), 6) for r in self.rates],
                dict(sorted(self.extra.items()))]
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "checkpoint_sha256": self.checkpoint_sha256, "split": self.split,
                "subset": self.subset, "rates": list(self.rates), "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityMeta:
        """From :meth:`to_dict`'s shape; also accepts ``eval_split`` / ``eval_samples`` / ``eval_subset`` for
        ``split`` / ``subset`` and keeps any other key in :attr:`extra`."""
        known = {"model", "checkpoint_sha256", "split", "subset", "rates", "extra", "eval_split", "eval_samples",
                 "eval_subset"}
        subset = next((data[k] for k in ("subset", "eval_subset", "eval_samples") if data.get(k) is not None), None)
        extra = {**dict(data.get("extra") or {}), **{k: v for k, v in data.items() if k not in known}}
        return cls(model=str(data["model"]), checkpoint_sha256=str(data.get("checkpoint_sha256", "")),
                   split=str(data.get("split") or data.get("eval_split") or ""),
                   subset=None if subset is None else int(subset),
                   rates=tuple(float(r) for r in data.get("rates", ())), extra=extra)

    @classmethod
    def coerce(cls, meta: SensitivityMeta | Mapping[str, Any]) -> SensitivityMeta:
        """``meta`` itself, or the meta a mapping describes (see :meth:`from_dict`)."""
        return meta if isinstance(meta, SensitivityMeta) else cls.from_dict(meta)


@dataclass(frozen=True, slots=True, kw_only=True)
class SensitivityEntry:
    """One variable pruned alone at one level.

    Attributes:
        variable: group name.
        level: level index (>= 1).
        kept: units kept at that level; ``width`` the unpruned count.
        rate: the realised rate ``1 - kept / width``; ``nominal_rate`` the grid rate it stands for.
        accuracy: top-1 in percent (None: the evaluation failed).
        acc_drop: baseline minus ``accuracy`` in percentage points (None: failed).
        params, param_mb, macs_g, act_mb: predicted costs of the whole model (None: unknown).
        mem_saving: ``1 - param_mb / baseline param_mb`` (fraction; None: unknown).
        kind: group kind (``mlp``, ``qk``, ...).
        stopped: the evaluation was stopped early (``accuracy`` is an upper bound, ``acc_drop`` a lower
            bound, both beyond the drop limit the profile was measured under).
    """

    variable: str
    level: int
    kept: int
    width: int
    rate: float
    nominal_rate: float
    accuracy: float | None
    acc_drop: float | None
    params: int | None = None
    param_mb: float | None = None
    macs_g: float | None = None
    act_mb: float | None = None
    mem_saving: float | None = None
    kind: str = ""
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityEntry:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _opt_float(costs: Mapping[str, float], key: str) -> float | None:
    value = costs.get(key)
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class SensitivityTable:
    """Per-variable x level accuracy of single-variable pruning (plain data; JSON round-trip).

    Lifecycle: built by :meth:`from_results` from the results of :func:`sensitivity_candidates`, saved
    with :meth:`save` under :meth:`key`, reloaded by :meth:`load` when :meth:`matches` the new run's
    :class:`SensitivityMeta`. Entries missing from the table (not measured, early stop) read as
    ``accuracy() is None`` and ``drop() == inf``; so do failed evaluations.

    Attributes:
        meta: what the table depends on.
        baseline_accuracy: top-1 of the unpruned model, percent.
        baseline_costs: predicted costs of the unpruned model (``param_mb`` gives memory savings).
        entries: one per measured (variable, level), in space order, mildest level first.
        schema: format version.
    """

    meta: SensitivityMeta
    baseline_accuracy: float
    entries: tuple[SensitivityEntry, ...]
    baseline_costs: Mapping[str, float] = field(default_factory=dict)
    schema: int = SCHEMA
    _index: dict[tuple[str, int], SensitivityEntry] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", SensitivityMeta.coerce(self.meta))
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "_index", {(e.variable, e.level): e for e in self.entries})

    # ----------------------------------------------------------------------------------------- build
    @classmethod
    def from_results(cls, space: PlanEncoding, results: Iterable[Result], baseline_accuracy: float,
                     meta: SensitivityMeta | Mapping[str, Any], *,
                     baseline_costs: Mapping[str, float] | None = None) -> SensitivityTable:
        """The table of the single-variable results among ``results`` (others are ignored).

        Args:
            space: the variables the results refer to.
            results: evaluated candidates; for a repeated candidate the last ``ok`` one counts.
            baseline_accuracy: top-1 of the unpruned model (percent).
            meta: what the measurements depend on (a mapping is read by :meth:`SensitivityMeta.from_dict`).
            baseline_costs: costs of the unpruned model; without ``param_mb`` memory savings are None.
        """
        meta = SensitivityMeta.coerce(meta)
        found: dict[tuple[str, int], Result] = {}
        for r in results:
            levels = dict(r.candidate.levels)
            if len(levels) != 1:
                continue
            ((name, lv),) = levels.items()
            if (name, lv) in found and found[(name, lv)].ok and not r.ok:
                continue
            found[(name, lv)] = r
        base_mb = (baseline_costs or {}).get("param_mb")
        entries = []
        for v in space.variables:
            for lv in range(1, len(v.levels)):
                res = found.get((v.name, lv))
                if res is None:
                    continue
                acc = float(res.accuracy) if (res.ok or res.stopped) and res.accuracy is not None else None
                drop = None if acc is None else (float(res.acc_drop) if res.acc_drop is not None
                                                 else float(baseline_accuracy) - acc)
                mb = _opt_float(res.costs, "param_mb")
                params = res.costs.get("params")
                entries.append(SensitivityEntry(
                    variable=v.name, kind=v.kind, level=lv, kept=v.levels[lv], width=v.width, rate=float(v.rates[lv]),
                    nominal_rate=_nominal(float(v.rates[lv]), meta.rates), accuracy=acc, acc_drop=drop,
                    params=None if params is None else int(params), param_mb=mb, macs_g=_opt_float(res.costs, "macs_g"),
                    act_mb=_opt_float(res.costs, "act_mb"), stopped=res.stopped,
                    mem_saving=None if mb is None or not base_mb else 1.0 - mb / float(base_mb)))
        return cls(meta=meta, baseline_accuracy=float(baseline_accuracy), entries=tuple(entries),
                   baseline_costs=dict(baseline_costs or {}))

    # ------------------------------------------------------------------------------------------ read
    def key(self) -> str:
        """The cache key of :attr:`meta` (see :meth:`SensitivityMeta.key`)."""
        return self.meta.key()

    def matches(self, meta: SensitivityMeta | Mapping[str, Any]) -> bool:
        """Whether this table was measured under ``meta`` (same model, weights, split, subset, grid, extra)."""
        return self.meta.key() == SensitivityMeta.coerce(meta).key()

    def variables(self) -> list[str]:
        """Variable names in table order (each once)."""
        return list(dict.fromkeys(e.variable for e in self.entries))

    def entry(self, variable: str, level: int) -> SensitivityEntry | None:
        return self._index.get((variable, int(level)))

    def accuracy(self, variable: str, level: int) -> float | None:
        """Top-1 with ``variable`` alone at ``level`` (level 0: baseline; None: not measured or failed)."""
        if level == 0:
            return self.baseline_accuracy
        e = self._index.get((variable, int(level)))
        return None if e is None else e.accuracy

    def drop(self, variable: str, level: int) -> float:
        """Accuracy drop (points) of ``variable`` alone at ``level``; 0 at level 0, inf when unknown/failed."""
        if level == 0:
            return 0.0
        e = self._index.get((variable, int(level)))
        return math.inf if e is None or e.acc_drop is None else float(e.acc_drop)

    def tolerated_levels(self, variable: str, max_drop: float) -> list[int]:
        """Levels >= 1 of ``variable`` whose single-variable drop is <= ``max_drop``, ascending."""
        return sorted(e.level for e in self.entries
                      if e.variable == variable and self.drop(variable, e.level) <= max_drop)

    # ------------------------------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "meta": self.meta.to_dict(), "key": self.key(),
                "baseline_accuracy": self.baseline_accuracy, "baseline_costs": dict(self.baseline_costs),
                "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityTable:
        if int(data.get("schema", 0)) != SCHEMA:
            raise UserError(f"sensitivity table schema {data.get('schema')} is not {SCHEMA}; delete it to re-profile")
        return cls(meta=SensitivityMeta.from_dict(data["meta"]), baseline_accuracy=float(data["baseline_accuracy"]),
                   baseline_costs=dict(data.get("baseline_costs", {})),
                   entries=tuple(SensitivityEntry.from_dict(e) for e in data["entries"]))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON atomically (temp file in the same folder, fsync, ``os.replace``); returns the path."""
        from hwsearch.atomic import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SensitivityTable:
        """Read a table written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
            return cls.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"cannot read sensitivity table {path}: {exc}; delete it to re-profile") from None

    # --------------------------------------------------------------------------------------- exports
    def grid(self) -> list[float]:
        """The nominal rate grid (``meta.rates`` without 0; else the entries' nominal rates), ascending."""
        rates = [r for r in self.meta.rates if r > 0] or [e.nominal_rate for e in self.entries]
        return sorted({float(r) for r in rates})

    def to_wide_frame(self) -> pd.DataFrame:
        """NNI's shape: index ``layername`` (one row per variable), one column per nominal grid rate, top-1.

        The value at rate ``r`` is the top-1 of the level whose realised rate is closest to ``r`` (ties
        milder; level 0 is the baseline), the rule :meth:`PlanEncoding.uniform_levels` uses: what pruning
        that layer at nominal rate ``r`` yields. NaN: not measured or failed.
        """
        grid = self.grid()
        rows = {}
        for name in self.variables():
            levels = [(0, 0.0)] + [(e.level, e.rate) for e in self.entries if e.variable == name]
            row = []
            for r in grid:
                lv = min(levels, key=lambda t: (abs(t[1] - r), t[0]))[0]
                acc = self.accuracy(name, lv)
                row.append(math.nan if acc is None else acc)
            rows[name] = row
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=grid, dtype=float)
        frame.index.name = "layername"
        return frame

    def to_long_frame(self) -> pd.DataFrame:
        """Distiller's shape (``parameter, sparsity, top1, top5, loss``; top5/loss NaN: not measured),
        one row per (variable, level), plus ``level, kept, width, realised_rate, acc_drop, params,
        param_mb, macs_g, act_mb, mem_saving, stopped`` (``stopped``: top1 is an upper bound, the
        evaluation stopped early once past the drop limit). ``sparsity`` is the nominal grid rate."""
        cols = ["parameter", "sparsity", "top1", "top5", "loss", "level", "kept", "width", "realised_rate",
                "acc_drop", "params", "param_mb", "macs_g", "act_mb", "mem_saving", "stopped"]
        rows = [[e.variable, e.nominal_rate, e.accuracy, None, None, e.level, e.kept, e.width, e.rate, e.acc_drop,
                 e.params, e.param_mb, e.macs_g, e.act_mb, e.mem_saving, e.stopped] for e in self.entries]
        frame = pd.DataFrame(rows, columns=cols)
        for c in cols[1:5] + cols[9:-1]:
            frame[c] = frame[c].astype(float)
        return frame

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Top-1 vs realised rate, one line per variable (baseline at rate 0), as a PNG (Agg canvas)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        names = self.variables()
        kinds = list(dict.fromkeys(e.kind for e in self.entries))
        colours = {k: f"C{i % 10}" for i, k in enumerate(kinds)}
        labelled: set[str] = set()
        for i, name in enumerate(names):
            pts = [(0.0, self.baseline_accuracy)] + [(e.rate, e.accuracy) for e in self.entries
                                                      if e.variable == name and e.accuracy is not None]
            xs, ys = zip(*pts)
            if len(names) <= PLOT_LEGEND_MAX:
                ax.plot(xs, ys, marker="o", ms=3, lw=1, color=f"C{i % 10}", label=name)
            else:
                kind = self._kind(name)
                ax.plot(xs, ys, lw=0.8, alpha=0.7, color=colours[kind], label=None if kind in labelled else kind)
                labelled.add(kind)
        ax.axhline(self.baseline_accuracy, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("pruning rate (realised)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"sensitivity: {self.meta.model}")
        if names:
            ax.legend(fontsize="x-small")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
        return path

    def _kind(self, variable: str) -> str:
        return next((e.kind for e in self.entries if e.variable == variable), "")


def _nominal(rate: float, grid: Sequence[float]) -> float:
    """The grid rate closest to a realised rate (ties: the milder); without a grid, the rate rounded."""
    candidates = [float(r) for r in grid if r > 0]
    if not candidates:
        return round(rate, 4)
    return min(candidates, key=lambda r: (abs(r - rate), r))
