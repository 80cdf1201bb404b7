"""The analytic cost model: exact closed forms from a configuration and kept widths, no model built.

:meth:`AnalyticCostModel.compile` turns a configuration into a :class:`CompiledCost` once (symbolic
layer table → polynomials in the widths → straight-line Python); evaluating a plan is then plain
integer arithmetic (tens of microseconds), and :meth:`CompiledCost.batch` evaluates thousands of plans
at once with numpy. The numbers equal the physically pruned model exactly: parameters equal
``sum(p.numel())`` of ``prune(model, plan)``, dense MACs a dispatch-level count of its forward.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from costmodels._cost import (
    DTYPE_BITS, E_AC_PJ, E_MAC_PJ, ENERGY_CAVEAT, SCHEMA, Cost, LayerCost, energy_mj, trusted_constructor, weight_bytes,
)
from costmodels._families import TOKEN_SCORE_KEY, build_spec
from costmodels._fastpath import Fallback, compile_fast
from costmodels._poly import Number, Poly, compile_polys
from costmodels._registry import ParamsMixin, Widths, register_cost_model
from costmodels._spec import SymLayer, Variable
from hwsearch.pruning import Group, PlanError, PruningPlan
from search_spaces.groups import DepthGroup
from hwsearch.pruning import token_schedule
from search_spaces import ModelConfig, get_config

__all__ = ["AnalyticCostModel", "CompiledCost", "analytic_cost", "plan_widths", "widths_of_plan", "conventions_for"]

_EMPTY: dict[str, int] = {}
_TOTALS = ("params", "live_params", "macs", "attention_macs", "nonspike_macs", "act_elements")


def plan_widths(groups: Sequence[Group] | None, plan: PruningPlan) -> dict[str, int | tuple[int, ...]]:
    """Widths of ``plan`` for a cost model: kept counts, and kept indices for depth groups.

    Channel groups give ``PruningPlan.counts()``; a depth group whose plan names indices keeps them
    (which blocks or branches go changes the cost when their widths differ). Without ``groups`` the
    plan's values are returned as they are (a cost model takes ``len()`` of a channel group's indices).
    """
    if groups is None:
        return dict(plan.keep)
    depth = {g.name for g in groups if isinstance(g, DepthGroup)}
    return {k: v if (k in depth and isinstance(v, tuple)) else (v if isinstance(v, int) else len(v))
            for k, v in plan.keep.items()}


def widths_of_plan(plan: PruningPlan, compiled: CompiledCost) -> dict[str, int | tuple[int, ...]]:
    """The widths a plan fixes for the cost model, refusing a depth count that leaves the cost open.

    A depth group (blocks, branches) given as a count is resolved by the plan's criterion on the model's
    weights when the plan is applied, so which blocks or branches go is not known here: the cost differs
    when the candidates differ (branches, or blocks whose widths or tokens the plan prunes: a removed
    block takes its token selection with it). Such a plan must carry the kept indices
    (:func:`hwsearch.pruning.resolve_plan`, or ``pruned.hwsearch_plan``). T applies to every block alike.
    """
    widths = dict(plan.keep)
    full = compiled.group_widths()
    depth = {g for g, (kind, *_rest) in compiled._slots.items() if kind == "depth"}
    pruned_channels = any(g not in depth and g != "T" and (v if isinstance(v, int) else len(v)) < full.get(g, 0)
                          for g, v in widths.items())
    for g, v in widths.items():
        if g in depth and isinstance(v, int) and 0 < v < full[g] and (g == "branches" or pruned_channels):
            raise PlanError(f"plan keeps {v} of {full[g]} '{g}' units as a count: which ones the criterion keeps "
                            "decides the cost; pass the plan with exact indices (hwsearch.pruning.resolve_plan(model, "
                            "plan), or the pruned model's hwsearch_plan)")
    return widths


def conventions_for(family: str, layout: str, *, spike_bits: int, dtype: str) -> dict[str, str]:
    """Short labels of the counting conventions behind a :class:`Cost` of this family."""
    attention = {"spikformer": "q@(kT@v)" if layout == "imagenet" else "(q@kT)@v",
                 "sdt": "none (element-wise masks)", "qkformer": "stage 3 q@(kT@v); token attention none"}.get(
        family, "as the family's cost formulas count it (plug-in family)")
    return {
        "params": "sum(p.numel()) incl. never-used parameters; live_params excludes them",
        "weight_bytes": f"params x bits({dtype})/8, no quantization scales, no BN folding, MB = 1e6 B",
        "macs": "dense, per image (batch 1) over all T steps; conv0 counted T times",
        "attention_order": attention,
        "head": "every step" if family == "sdt" else "once per image (T-mean)",
        "activations": f"LIF outputs over all T steps, {spike_bits} bit(s) per spike; peak = largest single LIF output",
        "sops": "fr(input LIF) x dense MACs for binary-input layers; non-binary inputs are MACs",
        "energy": f"E_MAC x MACs(non-binary) + E_AC x SOPs; {ENERGY_CAVEAT}",
    }


class CompiledCost:
    """Costs of one configuration as compiled functions of its kept widths.

    Lifecycle: built by :meth:`AnalyticCostModel.compile` (milliseconds, once per configuration), then
    :meth:`cost` / :meth:`totals` / :meth:`batch` any number of times. Widths: group name -> kept units
    (missing groups keep all); a partitioned group (q/k/v per head) gives its total over partitions; a
    depth group gives kept indices, or a count meaning its *first* units (exact whenever the removed
    units do not differ in width; pass indices otherwise, as :func:`plan_widths` does).
    """

    def __init__(self, *, name: str, family: str, layout: str, kwargs: Mapping[str, Any], dtype: str = "fp32",
                 spike_bits: int = 1, e_mac_pj: float = E_MAC_PJ, e_ac_pj: float = E_AC_PJ,
                 firing_rates: Mapping[str, float] | None = None) -> None:
        weight_bytes(0, dtype)  # validates dtype
        self.name, self.family, self.layout, self.kwargs = name, family, layout, dict(kwargs)
        self.dtype, self.spike_bits, self.e_mac_pj, self.e_ac_pj = dtype, int(spike_bits), e_mac_pj, e_ac_pj
        self._dtype_bits, self._spike_bits = DTYPE_BITS[dtype], int(spike_bits)
        spec = build_spec(family, layout, self.kwargs)
        self.T = spec.T
        self.variables: tuple[Variable, ...] = tuple(spec.variables)
        self.layers: tuple[SymLayer, ...] = tuple(spec.layers)
        self.conventions = conventions_for(family, layout, spike_bits=self.spike_bits, dtype=dtype)
        self._new_cost = trusted_constructor(  # Cost(...) without the dataclass __init__: the hot path
            ("params", "live_params", "weight_bytes", "macs", "attention_macs", "nonspike_macs", "act_elements",
             "activation_bytes", "peak_activation_bytes", "sops", "energy_mj", "energy_caveat", "layers"),
            source="analytic", model=name, dtype=dtype, T=self.T, spike_bits=self._spike_bits, latency_ms=None,
            device=None, conventions=self.conventions, schema=SCHEMA)
        self._full = [v.full for v in self.variables]
        self._slots: dict[str, tuple[str, int, int, int]] = {}
        self._derived = {i: v.definition for i, v in enumerate(self.variables) if v.definition is not None}
        self._token_points = tuple(spec.token_points)
        self._token_width = spec.token_width
        for i, v in enumerate(self.variables):
            if v.kind not in ("derived", "schedule") and v.group not in self._slots:
                self._slots[v.group] = (v.kind, i, v.partitions if v.kind == "channel" else v.units, v.full)
        polys = self._total_polys()
        self.firing_rates = dict(firing_rates) if firing_rates is not None else None
        if self.firing_rates is not None:
            polys.append(self.sops_poly(self.firing_rates))
        acts = [r.act for r in self.layers if r.kind == "lif" and r.act]
        n = len(self.variables)
        self._scalar = compile_polys(polys, [acts], n, derived=self._derived)
        self._vector = compile_polys(polys, [acts], n, derived=self._derived, vectorized=True)
        self._fast = compile_fast(self.variables, polys, acts, self._token_points, self._token_width)

    # -- structure --------------------------------------------------------------------------------------
    @property
    def groups(self) -> list[str]:
        """Group names the widths may use, in declaration order."""
        return list(self._slots)

    def group_widths(self) -> dict[str, int]:
        """Full width of every group (units: channels, heads, blocks or branches)."""
        return {g: (full * parts if kind in ("channel", "tokens") else parts)
                for g, (kind, _, parts, full) in self._slots.items()}

    def _total_polys(self) -> list[Poly]:
        zero = Poly()
        params, live, macs, attn, nonspike, act = zero, zero, zero, zero, zero, zero
        for r in self.layers:
            params = params + r.params
            if r.live:
                live = live + r.params
            macs = macs + r.macs
            if r.attention:
                attn = attn + r.macs
            if r.input_lif is None:
                nonspike = nonspike + r.macs
            act = act + r.act
        return [params, live, macs, attn, nonspike, act]

    def sops_poly(self, rates: Mapping[str, float]) -> Poly:
        """Σ fr(input LIF) × MACs over binary-input layers, as a polynomial with float coefficients."""
        needed = {r.input_lif for r in self.layers if r.input_lif is not None and r.macs}
        missing = sorted(n for n in needed if n not in rates)
        if missing:
            raise PlanError(f"firing rates missing for {len(missing)} LIF(s), e.g. {missing[0]!r}; measure them on the "
                            f"unpruned model (MeasuredCostModel(...).measure(model, calibration).firing_rates())")
        out = Poly()
        for r in self.layers:
            if r.input_lif is not None:
                out = out + r.macs * float(rates[r.input_lif])
        return out

    # -- widths -> variables ----------------------------------------------------------------------------
    def vector(self, widths: Widths | None) -> list[int]:
        """Variable values for ``widths`` (validated: known group, 1..width, divisible by partitions)."""
        x = list(self._full)
        if not widths:
            return x
        slots = self._slots
        for name, value in widths.items():
            slot = slots.get(name)
            if slot is None:
                close = difflib.get_close_matches(name, list(slots), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise PlanError(f"widths name unknown group '{name}' of {self.name}{hint} (list them with: hwsearch groups)")
            kind, i, parts, full = slot
            if kind in ("channel", "tokens"):
                count = value if isinstance(value, int) else len(value)
                if not 0 < count <= full * parts or count % parts:
                    raise PlanError(f"{name} keeps {count} of {full * parts} units; need 1..{full * parts}, "
                                    f"a multiple of its {parts} partitions")
                x[i] = count // parts
            elif isinstance(value, int):
                if not 0 <= value <= parts:
                    raise PlanError(f"{name} keeps {value} of {parts} units")
                x[i:i + parts] = [1] * value + [0] * (parts - value)
            else:
                kept = set(value)
                if any(not 0 <= u < parts for u in kept):
                    raise PlanError(f"{name} keeps out-of-range indices {sorted(kept)} (0..{parts - 1})")
                x[i:i + parts] = [1 if u in kept else 0 for u in range(parts)]
        return self._fill_schedule(x)

    def _fill_schedule(self, x: list[int]) -> list[int]:
        """Set the token-schedule variables of ``x`` from its token counts and block indicators."""
        points = self._token_points
        if points:
            flow = token_schedule(self._token_width, [(x[p.count], p.alive is None or x[p.alive] == 1) for p in points])
            for p, f in zip(points, flow):
                for i, value in zip(p.schedule(), p.values(f)):
                    x[i] = value
        return x

    # -- evaluation -------------------------------------------------------------------------------------
    def totals(self, widths: Widths | None = None) -> tuple[Any, ...]:
        """Raw ``(params, live_params, macs, attention_macs, nonspike_macs, act_elements[, sops], peak)``."""
        try:
            return self._fast(widths or _EMPTY)
        except (Fallback, TypeError):  # index tuples, unknown names, bad values: the validated path
            return self._scalar(self.vector(widths))

    def cost(self, widths: Widths | None = None, *, per_layer: bool = False) -> Cost:
        """The :class:`Cost` of ``widths`` (``per_layer`` adds the per-layer rows, ~100x slower)."""
        try:
            out = self._fast(widths or _EMPTY)
        except (Fallback, TypeError):  # index tuples, unknown names, bad values: the validated path
            out = self._scalar(self.vector(widths))
        sops = out[6] if self.firing_rates is not None else None
        layers = self.layer_costs(widths) if per_layer else ()
        cost = self._make(out, sops, layers)
        steps = widths.get("T") if widths and "T" in self._slots else None
        if steps is not None:  # the plan's T, not the configuration's
            cost = dataclasses.replace(cost, T=steps if isinstance(steps, int) else len(steps))
        return cost

    def _make(self, out: Sequence[Any], sops: float | None, layers: tuple[LayerCost, ...]) -> Cost:
        params, live, macs, attn, nonspike, act = out[:6]
        bits = self._spike_bits
        energy = None if sops is None else energy_mj(nonspike, sops, e_mac_pj=self.e_mac_pj, e_ac_pj=self.e_ac_pj)
        return self._new_cost(params, live, -(-params * self._dtype_bits // 8), macs, attn, nonspike, act,
                              -(-act * bits // 8), -(-out[-1] * bits // 8), sops, energy,
                              None if energy is None else ENERGY_CAVEAT, layers)

    def layer_costs(self, widths: Widths | None = None, firing_rates: Mapping[str, float] | None = None
                    ) -> tuple[LayerCost, ...]:
        """Per-layer rows (removed layers left out), with SOPs where a firing rate is known."""
        x: list[Number] = list(self.vector(widths))
        for i, definition in sorted(self._derived.items()):
            x[i] = definition.eval(x)
        rates = firing_rates if firing_rates is not None else (self.firing_rates or {})
        rows = []
        for r in self.layers:
            params, macs, act = r.params.eval(x), r.macs.eval(x), r.act.eval(x)
            if not (params or macs or act):
                continue
            rate = rates.get(r.name) if r.kind == "lif" else (rates.get(r.input_lif) if r.input_lif else None)
            sops = rate * macs if (rate is not None and r.input_lif is not None) else None
            rows.append(LayerCost(name=r.name, kind=r.kind, params=int(params), macs=int(macs), act_elements=int(act),
                                  input_binary=r.input_lif is not None, input_lif=r.input_lif, firing_rate=rate,
                                  sops=sops, live=r.live))
        return tuple(rows)

    def with_rates(self, firing_rates: Mapping[str, float]) -> CompiledCost:
        """A copy whose costs include SOPs and energy from ``firing_rates`` (LIF name -> rate)."""
        return CompiledCost(name=self.name, family=self.family, layout=self.layout, kwargs=self.kwargs,
                            dtype=self.dtype, spike_bits=self.spike_bits, e_mac_pj=self.e_mac_pj,
                            e_ac_pj=self.e_ac_pj, firing_rates=firing_rates)

    def matrix(self, plans: Sequence[Widths | None]) -> np.ndarray:
        """``[len(plans), n_variables]`` int64 variable matrix (columns: :attr:`variables`)."""
        return np.array([self.vector(w) for w in plans], dtype=np.int64).reshape(len(plans), len(self.variables))

    def batch(self, plans: Sequence[Widths | None] | np.ndarray) -> dict[str, np.ndarray]:
        """Totals of many plans at once: name -> array (one entry per plan), exact in int64.

        ``plans`` is a sequence of widths mappings, or an int64 matrix from :meth:`matrix` (fastest when
        a search builds it directly).
        """
        X = plans if isinstance(plans, np.ndarray) else self.matrix(plans)
        n = X.shape[0]
        out = self._vector(list(X.T))
        names = [*_TOTALS, *(["sops"] if self.firing_rates is not None else []), "peak_act_elements"]
        res = {k: np.broadcast_to(np.asarray(v), (n,)).copy() for k, v in zip(names, out)}
        bits = self.spike_bits
        res["weight_bytes"] = -(-res["params"] * DTYPE_BITS[self.dtype] // 8)
        res["activation_bytes"] = -(-res["act_elements"] * bits // 8)
        res["peak_activation_bytes"] = -(-res["peak_act_elements"] * bits // 8)
        if "sops" in res:
            res["energy_mj"] = (self.e_mac_pj * res["nonspike_macs"] + self.e_ac_pj * res["sops"]) * 1e-9
        return res


def _resolve(config: str | ModelConfig, model_kwargs: Mapping[str, Any] | None) -> tuple[ModelConfig, dict[str, Any]]:
    cfg = get_config(config) if isinstance(config, str) else config
    kwargs = dict(cfg.kwargs)
    kwargs.update({k: v for k, v in (model_kwargs or {}).items() if v is not None})
    return cfg, kwargs


@register_cost_model("analytic")
class AnalyticCostModel(ParamsMixin):
    """Closed-form costs from a configuration and kept widths (no model is built).

    Args:
        dtype: weight storage dtype for ``weight_bytes`` (``fp32``, ``fp16``, ``bf16``, ``int8``, ``int4``).
        spike_bits: bits per stored spike for activation memory (1 bit-packed, 8 bool, 32 fp32).
        e_mac_pj, e_ac_pj: energy per MAC / per accumulate (pJ), for the energy estimate.
        firing_rates: LIF name (unpruned numbering) -> firing rate, e.g. measured on the unpruned model;
            with them every cost includes SOPs and energy (rates assumed unchanged by pruning).

    ``cost(config, widths)`` compiles the configuration on first use (kept per instance) and evaluates.

    >>> m = AnalyticCostModel()
    >>> m.cost("spikformer-8-384").params
    16828312
    >>> m.cost("spikformer-8-384").macs_per_step
    4698978048.0
    """

    name = "analytic"
    #: What a search asks it for (``Result.costs`` keys): predicted from the plan, exact, no forward.
    provides: tuple[str, ...] = ("params", "param_mb", "macs_g", "act_mb")
    needs_forward = False

    def __init__(self, *, dtype: str = "fp32", spike_bits: int = 1, e_mac_pj: float = E_MAC_PJ,
                 e_ac_pj: float = E_AC_PJ, firing_rates: Mapping[str, float] | None = None) -> None:
        self.dtype = dtype
        self.spike_bits = spike_bits
        self.e_mac_pj = e_mac_pj
        self.e_ac_pj = e_ac_pj
        self.firing_rates = firing_rates
        self._compiled: dict[str, CompiledCost] = {}

    def compile(self, config: str | ModelConfig, model_kwargs: Mapping[str, Any] | None = None) -> CompiledCost:
        """The :class:`CompiledCost` of ``config`` with constructor overrides ``model_kwargs`` (cached)."""
        if not model_kwargs and isinstance(config, str) and config in self._compiled:
            return self._compiled[config]  # the common case: a registry name, no overrides
        cfg, kwargs = _resolve(config, model_kwargs)
        key = cfg.name if not model_kwargs else f"{cfg.name}|{sorted(kwargs.items())!r}"
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = CompiledCost(
                name=cfg.name, family=cfg.family, layout=cfg.layout, kwargs=kwargs, dtype=self.dtype,
                spike_bits=self.spike_bits, e_mac_pj=self.e_mac_pj, e_ac_pj=self.e_ac_pj,
                firing_rates=self.firing_rates)
        return compiled

    def cost(self, config: str | ModelConfig | PruningPlan, widths: Widths | PruningPlan | None = None, *,
             model_kwargs: Mapping[str, Any] | None = None, per_layer: bool = True,
             firing_rates: Mapping[str, float] | None = None) -> Cost:
        """Cost of ``config`` pruned to ``widths``; ``firing_rates`` overrides the constructor's.

        ``cost(plan)`` (or ``cost(config, plan)``) takes a :class:`~hwsearch.pruning.PruningPlan`: the
        configuration and overrides come from the plan, and a depth group the plan keeps as a count that
        leaves the cost open is refused (:func:`widths_of_plan`); its numbers equal the model that
        ``prune(model, plan)`` returns. A widths mapping gives counts (a depth count keeps the first units).
        """
        if isinstance(config, PruningPlan):
            widths = config
            config = config.model
        if isinstance(widths, PruningPlan):
            model_kwargs = {**dict(widths.model_kwargs), **dict(model_kwargs or {})} or None
            if widths.token_score != "activity":  # a learned selector has parameters and MACs of its own
                model_kwargs = {**(model_kwargs or {}), TOKEN_SCORE_KEY: widths.token_score}
        compiled = self.compile(config, model_kwargs)
        if firing_rates is not None:
            compiled = compiled.with_rates(firing_rates)
        if isinstance(widths, PruningPlan):
            widths = widths_of_plan(widths, compiled)
        return compiled.cost(widths, per_layer=per_layer)


def analytic_cost(config_name: str | ModelConfig | PruningPlan, widths: Widths | PruningPlan | None = None, *,
                  model_kwargs: Mapping[str, Any] | None = None, dtype: str = "fp32",
                  firing_rates: Mapping[str, float] | None = None) -> Cost:
    """One-off analytic cost with per-layer rows (compile + evaluate; use a CompiledCost in loops).

    >>> analytic_cost("spikformer-8-512").live_params
    29689384
    """
    model = AnalyticCostModel(dtype=dtype, firing_rates=firing_rates)
    return model.cost(config_name, widths, model_kwargs=model_kwargs)
