"""The measured cost model: counts on a real (pruned) ``nn.Module``, independent of the closed forms.

* parameters: ``sum(p.numel())``; live parameters: those the output depends on (``autograd.grad``
  with ``allow_unused=True`` on one forward: never-called LayerNorms, ``pos_embed``, SDT
  ``talking_heads`` come back unused);
* dense MACs: fvcore ``FlopCountAnalysis`` (``torch.jit`` trace, 1 multiply-add = 1 flop) with only
  MAC-carrying handles (conv, linear/addmm/mm, matmul/bmm with broadcasting, einsum); fvcore's
  BatchNorm/LayerNorm/upsample handles are removed (not MACs) and any MAC-like op it would drop raises;
* spike elements and firing rates: spikingjelly ``monitor.OutputMonitor`` on every neuron the
  forward calls; SOPs use the same input-LIF table as the analytic model (:func:`spike_input`).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import conv_flop_jit, einsum_flop_jit, get_shape
from spikingjelly.activation_based import functional, monitor, neuron

from costmodels._analytic import conventions_for
from costmodels._cost import E_AC_PJ, E_MAC_PJ, ENERGY_CAVEAT, Cost, LayerCost, energy_mj, spike_bytes, weight_bytes
from costmodels._registry import ParamsMixin, Widths, register_cost_model
from costmodels._spec import spike_input
from hwsearch.pruning import PruningPlan, prune
from search_spaces import ModelConfig, get_config
from search_spaces.geometry import pair

__all__ = ["MeasuredCostModel", "example_input", "build_pruned", "count_macs"]

#: Traced ops that carry multiply-accumulates; fvcore must count every one of them (else: error).
MAC_OPS = ("aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution",
           "aten::linear", "aten::addmm", "aten::mm", "aten::matmul", "aten::bmm", "aten::baddbmm",
           "aten::einsum", "aten::mv", "aten::dot", "aten::tensordot", "aten::_convolution_mode", "aten::addbmm",
           "aten::addmv", "aten::chain_matmul", "aten::linalg_multi_dot", "aten::bilinear")


def _shape(v: Any) -> list[int]:
    s = get_shape(v)
    if s is None:
        raise RuntimeError("fvcore handle got a value without a static shape")
    return [int(d) for d in s]


def _matmul_macs(a: list[int], b: list[int]) -> int:
    """MACs of ``torch.matmul(a, b)`` with numpy broadcasting (1-D operands included)."""
    if len(a) == 1 and len(b) == 1:
        return a[0]
    n = a[-2] if len(a) > 1 else 1
    k = a[-1]
    m = b[-1] if len(b) > 1 else 1
    batch: tuple[int, ...] = tuple(torch.broadcast_shapes(  # type: ignore[no-untyped-call]  # torch's stub gap
        torch.Size(a[:-2]), torch.Size(b[:-2] if len(b) > 1 else [])))
    return int(math.prod(batch)) * n * k * m


def _handles(calls: list[int]) -> dict[str, Any]:
    """MAC handles; matmul-like calls are also appended to ``calls`` in graph (= execution) order."""

    def matmul(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        n = _matmul_macs(_shape(inputs[0]), _shape(inputs[1]))
        calls.append(n)
        return Counter({"matmul": n})

    def baddbmm(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        n = _matmul_macs(_shape(inputs[1]), _shape(inputs[2]))
        calls.append(n)
        return Counter({"matmul": n})

    def linear(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        x, w = _shape(inputs[0]), _shape(inputs[1])
        return Counter({"linear": math.prod(x) * w[0]})

    def addmm(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        return Counter({"linear": _matmul_macs(_shape(inputs[1]), _shape(inputs[2]))})

    return {"aten::_convolution": conv_flop_jit, "aten::linear": linear, "aten::addmm": addmm, "aten::mm": matmul,
            "aten::matmul": matmul, "aten::bmm": matmul, "aten::baddbmm": baddbmm, "aten::mv": matmul,
            "aten::dot": matmul, "aten::einsum": einsum_flop_jit}


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, dict[str, int]], list[int]]:
    """fvcore per-module MACs over the whole input batch, and the matmul calls in execution order.

    Returns ``(by_module_and_operator, matmul_calls)``; ops are ``conv``, ``linear``, ``matmul``.
    """
    calls: list[int] = []
    functional.reset_net(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = FlopCountAnalysis(model, x)
        fa.clear_op_handles()
        fa.set_op_handle(**_handles(calls))
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        fa.tracer_warnings("none")
        table = {k: {op: int(n) for op, n in v.items()} for k, v in fa.by_module_and_operator().items()}
        dropped = sorted(op for op in fa.unsupported_ops() if op in MAC_OPS)
    functional.reset_net(model)
    if dropped:
        raise RuntimeError(f"fvcore dropped MAC-carrying ops {dropped}; register a handle for them")
    return table, calls


def example_input(model: nn.Module, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded uniform input batch for an hwsearch-built model (``[B,C,H,W]``; DVS ``[B,T,C,H,W]``)."""
    name = getattr(model, "hwsearch_config", None)
    if name is None:
        raise ValueError("model was not built by hwsearch; pass inputs explicitly")
    kw = dict(get_config(name).kwargs)
    kw.update(getattr(model, "hwsearch_kwargs", {}))
    h, w = pair(kw["img_size"])
    shape = (batch_size, int(kw["T"]), int(kw["in_channels"]), h, w) if get_config(name).layout == "dvs" else (
        batch_size, int(kw["in_channels"]), h, w)
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen)


def build_pruned(config: str | ModelConfig, widths: Widths | None = None,
                 model_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Build ``config`` (random weights) and prune it to ``widths`` (counts ranked by L2, or indices)."""
    cfg = get_config(config) if isinstance(config, str) else config
    model = cfg.build(**dict(model_kwargs or {}))
    if widths:
        keep = {k: v if isinstance(v, int) else tuple(v) for k, v in widths.items()}
        model = prune(model, PruningPlan(model=cfg.name, keep=keep, model_kwargs=dict(model_kwargs or {})))
    return model.eval()


def _unused_parameters(model: nn.Module, x: torch.Tensor) -> set[str]:
    """Names of parameters the output does not depend on (one forward, ``autograd.grad``)."""
    named = list(model.named_parameters())
    if not named:
        return set()
    flags = [p.requires_grad for _, p in named]
    try:
        for _, p in named:
            p.requires_grad_(True)
        functional.reset_net(model)
        with torch.enable_grad():
            out = model(x)
            grads = torch.autograd.grad(out.float().sum(), [p for _, p in named], allow_unused=True)
    finally:
        for (_, p), f in zip(named, flags):
            p.requires_grad_(f)
        functional.reset_net(model)
    return {n for (n, _), g in zip(named, grads) if g is None}


@torch.no_grad()
def _spike_stats(model: nn.Module, batches: Iterable[torch.Tensor]) -> tuple[dict[str, int], dict[str, float], int]:
    """Per neuron: elements per image over all T (first batch), firing rate over all batches; images seen."""
    ones: dict[str, float] = defaultdict(float)
    total: dict[str, int] = defaultdict(int)
    per_image: dict[str, int] = {}
    images = 0
    with monitor.OutputMonitor(model, neuron.BaseNode,
                               function_on_output=lambda s: (s.numel(), float(s.float().sum()))) as mon:
        for x in batches:
            functional.reset_net(model)
            mon.clear_recorded_data()
            model(x)
            for name in mon.monitored_layers:
                for numel, count in mon[name]:
                    ones[name] += count
                    total[name] += numel
                    if not images:
                        per_image[name] = per_image.get(name, 0) + numel // x.shape[0]
            images += x.shape[0]
    functional.reset_net(model)
    return per_image, {n: ones[n] / total[n] for n in total if total[n]}, images


def _as_batches(calibration: torch.Tensor | Iterable[Any]) -> Iterable[torch.Tensor]:
    """The input tensors of ``calibration``, one batch at a time (a streamed split is never held whole)."""
    if isinstance(calibration, torch.Tensor):
        return [calibration]
    return (b[0] if isinstance(b, (tuple, list)) else b for b in calibration)


def _own_matmuls(model: nn.Module, table: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Matmul MACs each module runs itself (its count minus its children's)."""
    own = {}
    for name, mod in model.named_modules():
        total = table.get(name, {}).get("matmul", 0)
        prefix = f"{name}." if name else ""
        children = sum(table.get(prefix + c, {}).get("matmul", 0) for c, _ in mod.named_children())
        if total - children:
            own[name] = total - children
    return own


def _per_image(n: int, batch: int, what: str) -> int:
    if n % batch:
        raise RuntimeError(f"{what}: {n} MACs over a batch of {batch} is not a whole number per image")
    return n // batch


class _RowMaker:
    """Turns the counts of one model into :class:`LayerCost` rows (module order)."""

    def __init__(self, model: nn.Module, family: str, layout: str, *, batch: int, unused: set[str],
                 acts: Mapping[str, int], rates: Mapping[str, float] | None) -> None:
        self.model, self.family, self.layout, self.batch = model, family, layout, batch
        self.unused, self.acts, self.rates = unused, acts, rates

    def _compute_row(self, name: str, kind: str, macs: int, params: int, live: bool) -> LayerCost:
        lif = spike_input(self.family, self.layout, name) if self.family else None
        rate = self.rates.get(lif) if (self.rates is not None and lif is not None) else None
        if self.rates is not None and lif is not None and rate is None and macs:
            raise RuntimeError(f"no firing rate for {lif} (input of {name}); was it called?")
        return LayerCost(name=name, kind=kind, params=params, macs=macs, input_binary=lif is not None,
                         input_lif=lif, firing_rate=rate, sops=None if rate is None else rate * macs, live=live)

    def rows(self, table: Mapping[str, Mapping[str, int]], calls: list[int]) -> list[LayerCost]:
        own_mm = _own_matmuls(self.model, table)
        queue = list(calls)
        out: list[LayerCost] = []
        for name, mod in self.model.named_modules():
            own = [(f"{name}.{p}" if name else p, t.numel()) for p, t in mod.named_parameters(recurse=False)]
            params = sum(n for _, n in own)
            live = not any(p in self.unused for p, _ in own)
            ops = table.get(name, {})
            if isinstance(mod, (nn.modules.conv._ConvNd, nn.Linear)):
                kind = "conv" if isinstance(mod, nn.modules.conv._ConvNd) else "linear"
                out.append(self._compute_row(name, kind, _per_image(ops.get(kind, 0), self.batch, name), params, live))
            elif isinstance(mod, neuron.BaseNode):
                if name in self.acts or params:
                    rate = self.rates.get(name) if self.rates is not None else None
                    out.append(LayerCost(name=name, kind="lif", params=params, act_elements=self.acts.get(name, 0),
                                         firing_rate=rate, live=live))
            elif isinstance(mod, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
                out.append(LayerCost(name=name, kind="norm", params=params, live=live))
            else:
                out += [LayerCost(name=p, kind="param", params=n, live=p not in self.unused) for p, n in own]
            if name in own_mm:
                done, k = 0, 0
                while done < own_mm[name]:
                    n = queue.pop(0)
                    done, k = done + n, k + 1
                    row = f"{name}.matmul{k}" if name else f"matmul{k}"
                    out.append(self._compute_row(row, "matmul", _per_image(n, self.batch, row), 0, True))
                if done != own_mm[name]:
                    raise RuntimeError(f"matmul calls of {name} do not add up to its fvcore count")
        return out


@register_cost_model("measured")
class MeasuredCostModel(ParamsMixin):
    """Counts on a real model: parameters, fvcore dense MACs, monitored spikes, SOPs from firing rates.

    Args:
        dtype, spike_bits, e_mac_pj, e_ac_pj: as :class:`~costmodels.AnalyticCostModel`.
        batch_size: batch of the counting input (MACs and spike elements are divided by it).
        seed: seed of the uniform counting input.
        calibration: default calibration batches for firing rates (a tensor, a list of tensors or a
            loader yielding ``(x, y)``); without any, ``sops``/``energy_mj`` stay None.

    ``measure(model)`` counts an existing (pruned, trained) model; ``cost(config, widths)`` builds the
    configuration with random weights and prunes it first (so its firing rates mean nothing unless the
    calibration data is meaningful for random weights).
    """

    name = "measured"
    #: What a search asks it for (``Result.costs`` keys): measured on each candidate's own forward over
    #: the eval batches (its firing rates), so pruning's effect on firing is in the number.
    provides: tuple[str, ...] = ("sops_g", "energy_mj")
    needs_forward = True

    def __init__(self, *, dtype: str = "fp32", spike_bits: int = 1, e_mac_pj: float = E_MAC_PJ,
                 e_ac_pj: float = E_AC_PJ, batch_size: int = 1, seed: int = 0,
                 calibration: torch.Tensor | Iterable[Any] | None = None) -> None:
        self.dtype = dtype
        self.spike_bits = spike_bits
        self.e_mac_pj = e_mac_pj
        self.e_ac_pj = e_ac_pj
        self.batch_size = batch_size
        self.seed = seed
        self.calibration = calibration

    def cost(self, config: str | ModelConfig, widths: Widths | None = None, *,
             model_kwargs: Mapping[str, Any] | None = None) -> Cost:
        return self.measure(build_pruned(config, widths, model_kwargs))

    def firing_rates(self, model: nn.Module, calibration: torch.Tensor | Iterable[Any]) -> dict[str, float]:
        """LIF name -> fraction of ones over T, batch and elements, over all calibration batches."""
        model.eval()
        return _spike_stats(model, _as_batches(calibration))[1]

    def measure(self, model: nn.Module, inputs: torch.Tensor | None = None, *,
                calibration: torch.Tensor | Iterable[Any] | None = None) -> Cost:
        """Count ``model`` (left in eval mode, neurons reset) on ``inputs`` (default: seeded uniform)."""
        model.eval()
        x = inputs if inputs is not None else example_input(model, self.batch_size, self.seed)
        config = getattr(model, "hwsearch_config", None) or ""
        family, layout = (get_config(config).family, get_config(config).layout) if config else ("", "")
        unused = _unused_parameters(model, x)
        table, calls = count_macs(model, x)
        calib = calibration if calibration is not None else self.calibration
        acts, rates, _ = _spike_stats(model, [x])
        if calib is not None:
            rates = _spike_stats(model, _as_batches(calib))[1]
        maker = _RowMaker(model, family, layout, batch=x.shape[0], unused=unused, acts=acts,
                          rates=rates if calib is not None else None)
        rows = maker.rows(table, calls)
        macs = sum(r.macs for r in rows)
        if macs != _per_image(table.get("", {}).get("conv", 0) + table.get("", {}).get("linear", 0)
                              + table.get("", {}).get("matmul", 0), x.shape[0], "model"):
            raise RuntimeError("per-layer MACs do not add up to fvcore's total")
        return self._cost(model, config, family, layout, rows, calib is not None)

    def _cost(self, model: nn.Module, config: str, family: str, layout: str, rows: list[LayerCost],
              with_rates: bool) -> Cost:
        params = sum(p.numel() for p in model.parameters())
        dead = sum(r.params for r in rows if not r.live)
        macs = sum(r.macs for r in rows)
        nonspike = sum(r.macs for r in rows if not r.input_binary)
        act = sum(r.act_elements for r in rows)
        peak = max((r.act_elements for r in rows), default=0)
        sops = sum(r.sops or 0.0 for r in rows) if with_rates else None
        energy = None if sops is None else energy_mj(nonspike, sops, e_mac_pj=self.e_mac_pj, e_ac_pj=self.e_ac_pj)
        conv = conventions_for(family, layout, spike_bits=self.spike_bits, dtype=self.dtype) if family else {}
        return Cost(source="measured", model=config, params=params, live_params=params - dead, dtype=self.dtype,
                    weight_bytes=weight_bytes(params, self.dtype), macs=macs,
                    attention_macs=sum(r.macs for r in rows if r.kind == "matmul"), nonspike_macs=nonspike,
                    T=int(getattr(model, "T", 1)), act_elements=act, spike_bits=self.spike_bits,
                    activation_bytes=spike_bytes(act, self.spike_bits),
                    peak_activation_bytes=spike_bytes(peak, self.spike_bits), sops=sops, energy_mj=energy,
                    energy_caveat=ENERGY_CAVEAT if energy is not None else None, layers=tuple(rows),
                    conventions=conv)
