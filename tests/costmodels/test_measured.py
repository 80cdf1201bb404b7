"""Measured counts (fvcore, monitors) on real pruned models equal the analytic model exactly, and the
official tiny manifest; SOPs from measured firing rates agree between the two models; latency.

Property tests draw random plans (every group kind, depth included) on small models of every
family and layout, with real spikingjelly neurons.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional

from costmodels import (
    ENERGY_CAVEAT, AnalyticCostModel, LatencyCostModel, MeasuredCostModel, count_macs, create_cost_model,
    example_input, plan_widths,
)
from hwsearch.pruning import ChannelGroup, PruningPlan, groups_of, prune
from hwsearch.testing import calibrate_bn, firing_rates
from search_spaces import create_model

DATA = Path(__file__).resolve().parents[1] / "data" / "official-tiny"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
TINY = {
    "tiny-spikformer-imagenet-1-64": ("spikformer-8-384", dict(embed_dim=64, num_heads=4, depth=1, img_size=64)),
    "tiny-spikformer-cifar-1-64": ("spikformer-cifar10-4-384", dict(embed_dim=64, num_heads=4, depth=1)),
    "tiny-sdt-cifar-1-64": ("sdt-cifar10-2-256", dict(embed_dim=64, num_heads=4, depth=1, num_classes=10)),
    "tiny-sdt-imagenet-1-64": ("sdt-8-384", dict(img_size=64, embed_dim=64, num_heads=4, depth=1, num_classes=10)),
    "tiny-qkformer-imagenet-4-64": ("qkformer-10-384", dict(img_size=64, embed_dim=64, num_heads=4, num_classes=10,
                                                           depth=4, T=4)),
    "tiny-qkformer-cifar-3-64": ("qkformer-cifar10-4-384", dict(embed_dim=64, depth=3, num_classes=10, T=4)),
}
#: small models of every family and layout (seconds for a whole hypothesis run on one CPU thread)
SMALL = {
    "spikformer-imagenet": ("spikformer-8-384", dict(embed_dim=32, num_heads=4, depth=2, img_size=32, num_classes=10,
                                                     T=2)),
    "spikformer-cifar": ("spikformer-cifar10-4-384", dict(embed_dim=32, num_heads=4, depth=2, img_size=16, T=2)),
    "spikformer-dvs": ("spikformer-cifar10dvs-2-256", dict(embed_dim=32, num_heads=4, depth=2, img_size=32, T=2)),
    "sdt-cifar": ("sdt-cifar10-2-256", dict(embed_dim=32, num_heads=4, depth=2, img_size=16, T=2)),
    "sdt-imagenet-plif": ("sdt-8-384", dict(embed_dim=32, num_heads=4, depth=2, img_size=32, num_classes=10, T=2,
                                            spike_mode="plif")),
    "qkformer-imagenet": ("qkformer-10-384", dict(img_size=32, embed_dim=32, num_heads=2, num_classes=10, depth=5,
                                                  T=2)),
    "qkformer-cifar": ("qkformer-cifar10-4-384", dict(img_size=16, embed_dim=32, depth=4, T=2)),
}
TOTALS = ("params", "live_params", "macs", "attention_macs", "nonspike_macs", "act_elements", "activation_bytes",
          "peak_activation_bytes", "weight_bytes", "T")


def _renumber(name: str, kept: dict[str, tuple[int, ...]]) -> str:
    """Analytic rows use the unpruned block numbering; the pruned model renumbers kept blocks."""
    m = re.match(r"^(block|stage\d)\.(\d+)\.(.*)$", name)
    if not m or m.group(1) not in kept:
        return name
    return f"{m.group(1)}.{kept[m.group(1)].index(int(m.group(2)))}.{m.group(3)}"


def _row_key(r: object) -> tuple:
    return (r.kind, r.params, r.macs, r.act_elements, r.input_binary, r.live)  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", sorted(SMALL))
@given(data=st.data())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_analytic_equals_measured_on_random_plans(case: str, data: st.DataObject) -> None:
    name, kw = SMALL[case]
    model = create_model(name, **kw)
    groups = groups_of(model)
    keep: dict[str, int | tuple[int, ...]] = {}
    for g in groups:
        if not data.draw(st.booleans(), label=f"prune {g.name}"):
            continue
        if isinstance(g, ChannelGroup):
            keep[g.name] = data.draw(st.sampled_from(g.allowed_counts()), label=g.name)
        else:
            lo = max(g.min_width, 1) if g.kind == "blocks" else g.min_width
            keep[g.name] = tuple(sorted(data.draw(st.sets(st.integers(0, g.width - 1), min_size=lo,
                                                          max_size=g.width), label=g.name)))
    pruned = prune(model, PruningPlan(model=name, keep=keep, model_kwargs=kw), groups)
    measured = MeasuredCostModel().measure(pruned)
    analytic = AnalyticCostModel().cost(name, plan_widths(groups, pruned.hwsearch_plan), model_kwargs=kw)
    assert measured.params == sum(p.numel() for p in pruned.parameters())
    for field in TOTALS:
        assert getattr(analytic, field) == getattr(measured, field), field
    kept = {"block": keep.get("block", tuple(range(kw["depth"])))} if "block" in keep else {}
    kept.update({g.split(".")[0]: v for g, v in keep.items() if g.endswith(".blocks")})  # type: ignore[misc]
    rows_a = {_renumber(r.name, kept): _row_key(r) for r in analytic.layers}  # type: ignore[arg-type]
    rows_m = {r.name: _row_key(r) for r in measured.layers}
    assert rows_a == rows_m


@pytest.mark.parametrize("fixture", sorted(TINY))
def test_official_tiny_models(fixture: str) -> None:
    """Per-layer MACs equal the manifest; firing rates reproduce its summary; SOPs agree analytic/measured."""
    name, kw = TINY[fixture]
    spec = MANIFEST[fixture]
    model = create_model(name, **kw)
    model.load_state_dict(torch.load(DATA / f"{fixture}.pth", weights_only=True), strict=True)
    x = torch.load(DATA / f"{fixture}.io.pt", weights_only=True)["input"]
    cost = MeasuredCostModel().measure(model, calibration=x)
    per_step = {r.name: r.macs / cost.T for r in cost.layers if r.kind in ("conv", "linear") and r.macs}
    assert per_step == spec["dense_macs_per_image_per_step"]["per_layer"]
    assert cost.attention_macs / cost.T == spec["dense_macs_per_image_per_step"]["attention_matmuls"]
    assert cost.params == spec["params_total"]
    rates = cost.firing_rates()
    summary = spec["firing_rate_summary"]
    ordered = sorted(rates.values())
    assert (len(rates), ordered[0], ordered[len(ordered) // 2], ordered[-1]) == (  # manifest: upper median
        summary["n"], summary["min"], summary["median"], summary["max"])
    assert rates == pytest.approx(firing_rates(model, x), rel=1e-12)  # hwsearch.testing's own counter
    analytic = AnalyticCostModel(firing_rates=rates).cost(name, model_kwargs=kw)
    assert analytic.sops == pytest.approx(cost.sops, rel=1e-12)
    assert analytic.energy_mj == pytest.approx(cost.energy_mj, rel=1e-12)
    assert cost.energy_caveat == ENERGY_CAVEAT
    binary = [r for r in cost.layers if r.input_binary]
    assert cost.sops == pytest.approx(sum(rates[r.input_lif] * r.macs for r in binary), rel=1e-12)
    assert 0 < cost.sops < sum(r.macs for r in binary)


@pytest.mark.parametrize("case", ["spikformer-imagenet", "sdt-cifar", "qkformer-cifar"])
def test_sops_on_calibrated_pruned_model(case: str) -> None:
    """Rates measured on the pruned, BN-calibrated model give the same SOPs in both cost models."""
    name, kw = SMALL[case]
    kw = {**kw, "img_size": 2 * kw["img_size"]}  # more tokens: the attention LIFs (threshold 0.5) fire
    model = create_model(name, **kw)
    groups = groups_of(model)
    keep = {g.name: g.allowed_counts()[3 * len(g.allowed_counts()) // 4] for g in groups
            if isinstance(g, ChannelGroup) and g.kind != "heads"}
    pruned = prune(model, PruningPlan(model=name, keep=keep, model_kwargs=kw), groups)
    x = example_input(pruned, batch_size=4, seed=1)
    calibrate_bn(pruned, x)
    measured = MeasuredCostModel(calibration=[x[:2], x[2:]]).measure(pruned)
    rates = measured.firing_rates()
    assert min(rates.values()) > 0 and statistics.median(rates.values()) < 0.5  # calibrated: every LIF fires
    analytic = AnalyticCostModel(firing_rates=rates).cost(name, plan_widths(groups, pruned.hwsearch_plan),
                                                          model_kwargs=kw)
    assert analytic.sops == pytest.approx(measured.sops, rel=1e-12)
    for a, m in zip((r for r in analytic.layers if r.input_binary), (r for r in measured.layers if r.input_binary), strict=True):
        assert (a.name, a.input_lif) == (m.name, m.input_lif) and a.sops == pytest.approx(m.sops, rel=1e-12)


class _Broadcast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, 5, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w  # [2,1,4,5] @ [3,5,6] -> [2,3,4,6]


class _AddBmm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addbmm(torch.zeros(4, 4), x, x.transpose(1, 2))


def test_fvcore_handles() -> None:
    table, calls = count_macs(_Broadcast(), torch.ones(2, 1, 4, 5))
    assert table[""] == {"matmul": 2 * 3 * 4 * 5 * 6} and calls == [2 * 3 * 4 * 5 * 6]
    with pytest.raises(RuntimeError, match="aten::addbmm"):
        count_macs(_AddBmm(), torch.ones(3, 4, 5))


def test_measured_registry_cost_builds_and_prunes() -> None:
    name, kw = SMALL["spikformer-cifar"]
    widths = {"embed": 24, "block.1.attn.heads": 2, "block.0.mlp.hidden": 50}
    measured = create_cost_model("measured").cost(name, widths, model_kwargs=kw)
    analytic = create_cost_model("analytic").cost(name, widths, model_kwargs=kw)
    assert (measured.source, analytic.source) == ("measured", "analytic")
    assert [getattr(measured, f) for f in TOTALS] == [getattr(analytic, f) for f in TOTALS]
    assert measured.sops is None and measured.energy_mj is None
    for cm in ("analytic", "measured", "latency"):  # constructors store their arguments unchanged
        model = create_cost_model(cm, dtype="int8")
        assert create_cost_model(cm, **model.get_params()).get_params() == model.get_params()
        assert model.get_params()["dtype"] == "int8"


def test_latency_is_measured_and_labelled() -> None:
    name, kw = SMALL["sdt-cifar"]
    lat = LatencyCostModel(repeats=3, warmup=1, num_threads=1)
    cost = lat.cost(name, {"block.0.mlp.hidden": 64}, model_kwargs=kw)
    assert cost.source == "latency" and cost.latency_ms is not None and cost.latency_ms > 0
    assert cost.device is not None and cost.device.startswith("cpu: ") and "batch 1" in cost.device
    assert cost.conventions["latency"].startswith("measured: median of 3 forwards")
    assert cost.params == AnalyticCostModel().cost(name, {"block.0.mlp.hidden": 64}, model_kwargs=kw).params
    model = create_model(name, **kw)
    functional.reset_net(model)
    ms, label = lat.time_ms(model)
    assert ms > 0 and label == cost.device and torch.get_num_threads() == 1
    assert statistics.median([ms]) == ms
