"""The analytic cost model: exact against independent closed forms, the official tiny manifest, and the
physically pruned model (built on the meta device, so full-size configurations cost milliseconds).

Expected numbers are written from ``svit-architectures.md`` §5-§7 and ``cost-conventions.md``,
independently of ``costmodels/_families.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmodels import (
    ENERGY_CAVEAT, AnalyticCostModel, Cost, analytic_cost, create_cost_model, energy_mj, list_cost_models,
    plan_widths, spike_input,
)
from hwsearch.errors import UnknownNameError
from hwsearch.pruning import ChannelGroup, DepthGroup, PlanError, PruningPlan, TokenGroup, groups_of, prune
from search_spaces import get_config, list_models

MANIFEST = json.loads((Path(__file__).resolve().parents[1] / "data" / "official-tiny" / "manifest.json").read_text())

#: official tiny fixtures -> (registered config, overrides reproducing the manifest's constructor call)
TINY = {
    "tiny-spikformer-imagenet-1-64": ("spikformer-8-384", dict(embed_dim=64, num_heads=4, depth=1, img_size=64)),
    "tiny-spikformer-cifar-1-64": ("spikformer-cifar10-4-384", dict(embed_dim=64, num_heads=4, depth=1)),
    "tiny-sdt-cifar-1-64": ("sdt-cifar10-2-256", dict(embed_dim=64, num_heads=4, depth=1, num_classes=10)),
    "tiny-sdt-imagenet-1-64": ("sdt-8-384", dict(img_size=64, embed_dim=64, num_heads=4, depth=1, num_classes=10)),
    "tiny-qkformer-imagenet-4-64": ("qkformer-10-384", dict(img_size=64, embed_dim=64, num_heads=4, num_classes=10,
                                                           depth=4, T=4)),
    "tiny-qkformer-cifar-3-64": ("qkformer-cifar10-4-384", dict(embed_dim=64, depth=3, num_classes=10, T=4)),
}

# svit-architectures.md §6, "without dead params" column (Spikformer) / official - L*h^2 (SDT, h = 8).
LIVE = {"spikformer-8-384": 16_816_024, "spikformer-6-512": 23_373_352, "spikformer-8-512": 29_689_384,
        "spikformer-10-512": 36_005_416, "spikformer-8-768": 66_338_632, "spikformer-cifar10-4-384": 9_324_730,
        "spikformer-cifar100-4-384": 9_359_380, "spikformer-cifar10-4-256": 4_155_178,
        "spikformer-cifar10-2-384": 5_765_050, "spikformer-cifar10dvs-2-256": 2_566_666,
        "sdt-8-384": 16_816_536 - 8 * 64, "sdt-8-768": 66_339_144 - 8 * 64, "sdt-cifar10-2-256": 2_567_082 - 128,
        "qkformer-10-768": 64_962_760}


def _meta_model(name: str, **overrides: object) -> torch.nn.Module:
    with torch.device("meta"):
        return get_config(name).build(**overrides)


# ---------------------------------------------------------------------------------------------------
# Independent closed forms (svit-architectures.md §7), dense MACs per image per step
# ---------------------------------------------------------------------------------------------------


def _sps(cin: int, D: int, sizes: tuple[int, ...]) -> int:
    w = [cin, D // 8, D // 4, D // 2, D]
    return sum(9 * sizes[i] ** 2 * w[i] * w[i + 1] for i in range(4)) + 9 * sizes[4] ** 2 * D * D


def closed_form_per_step(name: str) -> tuple[float, int]:
    """(conv + linear incl. head, attention matmuls) per image per step."""
    cfg = get_config(name)
    kw = cfg.kwargs
    D, L, K, T = kw["embed_dim"], kw["depth"], kw["num_classes"], kw["T"]
    if cfg.family in ("spikformer", "sdt"):
        sizes = {"imagenet": (224, 112, 56, 28, 14), "cifar": (32, 32, 32, 16, 8), "dvs": (128, 64, 32, 16, 8)}
        N = sizes[cfg.layout][4] ** 2
        conv = _sps(kw["in_channels"], D, sizes[cfg.layout]) + L * 12 * N * D * D
        if cfg.family == "sdt":
            return conv + D * K, 0
        d = D // kw["num_heads"]
        attention = L * 2 * N * D * d if cfg.layout == "imagenet" else L * 2 * N * N * D
        return conv + D * K / T, attention
    # QKFormer: patch embeddings + 11 N w^2 per token block + 12 N D^2 per SSA block + attention
    e1, e2, e3 = D // 4, D // 2, D
    def pe(e: int, g_in: int) -> int:  # conv3 3x3 at g_in (e/2 -> e), conv4 3x3 (e -> e), 1x1 stride-2 residual
        g4 = g_in // 2 if cfg.layout == "imagenet" else g_in  # ImageNet pools after conv3, CIFAR after conv4
        return 9 * g_in**2 * e // 2 * e + 9 * g4**2 * e * e + (g_in // 2) ** 2 * e // 2 * e

    if cfg.layout == "imagenet":
        pe1 = 9 * 224**2 * 3 * e1 // 2 + 9 * 112**2 * e1 // 2 * e1 + 9 * 56**2 * e1 * e1 + 56**2 * e1 // 2 * e1
        stages = pe(e2, 56) + pe(e3, 28)
        N1, N2, N3, n2, n3 = 56**2, 28**2, 14**2, 2, L - 3
        h = kw["num_heads"]
    else:
        pe1 = 9 * 32**2 * 3 * e1 // 2 + 9 * 32**2 * e1 // 2 * e1 + 32**2 * e1 // 2 * e1
        stages = pe(e2, 32) + pe(e3, 16)
        N1, N2, N3, n2, n3 = 32**2, 16**2, 8**2, 1, L - 2
        h = 8
    conv = pe1 + stages + 11 * N1 * e1**2 + n2 * 11 * N2 * e2**2 + n3 * 12 * N3 * e3**2
    return conv + D * K / T, n3 * 2 * N3 * D * (D // h)


@pytest.mark.parametrize("name", list_models())
def test_unpruned_counts_equal_official_and_closed_forms(name: str) -> None:
    cost = analytic_cost(name)
    cfg = get_config(name)
    if cfg.official_params is not None:
        assert cost.params == cfg.official_params
    else:
        assert cost.params == sum(p.numel() for p in _meta_model(name).parameters())
    if name in LIVE:
        assert cost.live_params == LIVE[name]
    conv, attention = closed_form_per_step(name)
    assert cost.attention_macs == attention * cost.T
    assert cost.macs == conv * cost.T + attention * cost.T
    assert cost.macs_per_step == conv + attention
    assert sum(r.params for r in cost.layers) == cost.params
    assert sum(r.macs for r in cost.layers) == cost.macs


def test_spikformer_8_384_oracle() -> None:
    cost = analytic_cost("spikformer-8-384")
    assert (cost.macs - cost.attention_macs) / 4 == 4_660_442_880
    assert cost.attention_macs / 4 == 38_535_168
    # cost-conventions.md §2 weight memory table (MB = 1e6 B)
    assert [round(analytic_cost("spikformer-8-384", dtype=d).weight_mb, 2) for d in ("fp32", "fp16", "int8")] == [
        67.31, 33.66, 16.83]
    assert analytic_cost("spikformer-8-384", dtype="int4").weight_bytes == 16_828_312 // 2


@pytest.mark.parametrize(("name", "fp32_mb"), [("spikformer-8-512", 118.82), ("spikformer-8-768", 265.45),
                                               ("qkformer-10-768", 259.85)])
def test_weight_memory_table(name: str, fp32_mb: float) -> None:
    assert round(analytic_cost(name).weight_mb, 2) == fp32_mb


def test_spike_activation_memory_spikformer_8_512() -> None:
    """cost-conventions.md §5: 56,598,528 spike elements = 7.07 MB bit-packed, 226.4 MB as fp32."""
    packed = analytic_cost("spikformer-8-512")
    assert packed.act_elements == 24_485_888 + 8 * 4_014_080 == 56_598_528
    assert round(packed.act_mb, 2) == 7.07
    fp32 = AnalyticCostModel(spike_bits=32).cost("spikformer-8-512")
    assert round(fp32.act_mb, 1) == 226.4
    stem = 4 * 64 * 224 * 224  # first SPS LIF: T x D/8 x 224^2 = 12.8 M elements, the peak
    assert fp32.peak_activation_bytes == stem * 4 and packed.peak_activation_bytes == stem // 8


@pytest.mark.parametrize("fixture", sorted(TINY))
def test_tiny_manifest_per_layer(fixture: str) -> None:
    name, overrides = TINY[fixture]
    cost = analytic_cost(name, model_kwargs=overrides)
    spec = MANIFEST[fixture]
    assert cost.params == spec["params_total"]
    macs = spec["dense_macs_per_image_per_step"]
    rows = {r.name: r.macs / cost.T for r in cost.layers if r.kind in ("conv", "linear") and r.macs}
    assert rows == macs["per_layer"]
    assert cost.attention_macs / cost.T == macs["attention_matmuls"]
    assert (cost.macs - cost.attention_macs) / cost.T == macs["conv_and_linear"]
    called = [r for r in cost.layers if r.kind == "lif" and r.act_elements]
    assert len(called) == spec["firing_rate_summary"]["n"]


# ---------------------------------------------------------------------------------------------------
# Pruned: equal to the physically pruned model's sum(p.numel()), group names equal the declarations
# ---------------------------------------------------------------------------------------------------

FULL = ["spikformer-8-768", "spikformer-cifar10-4-384", "spikformer-cifar10dvs-2-256", "sdt-8-512",
        "sdt-cifar10-2-256", "qkformer-10-384", "qkformer-cifar10-4-384"]


@pytest.mark.parametrize("name", list_models())
def test_groups_match_declarations(name: str) -> None:
    declared = {g.name: g.width for g in groups_of(_meta_model(name))}
    assert AnalyticCostModel().compile(name).group_widths() == declared


def _random_keep(groups: list, data: st.DataObject, *, depth_indices: bool = True) -> dict[str, int | tuple[int, ...]]:
    """A random plan: a drawn allowed count per channel group; per depth group the kept block indices
    (``depth_indices``) or, as a user writes it, a count."""
    keep: dict[str, int | tuple[int, ...]] = {}
    for g in groups:
        if not data.draw(st.booleans()):
            continue
        if isinstance(g, ChannelGroup):
            keep[g.name] = data.draw(st.sampled_from(g.allowed_counts()))
            continue
        lo = max(g.min_width, 1) if g.kind == "blocks" else g.min_width
        if depth_indices:
            keep[g.name] = tuple(sorted(data.draw(st.sets(st.integers(0, g.width - 1), min_size=lo, max_size=g.width))))
        else:
            keep[g.name] = data.draw(st.integers(lo, g.width))
    return keep


@pytest.mark.parametrize("name", FULL)
@given(data=st.data())
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_params_equal_pruned_full_size(name: str, data: st.DataObject) -> None:
    model = _meta_model(name)
    groups = groups_of(model)
    plan = PruningPlan(model=name, keep=_random_keep(groups, data), criterion="random")
    pruned = prune(model, plan, groups)
    compiled = AnalyticCostModel().compile(name)
    cost = compiled.cost(plan_widths(groups, pruned.hwsearch_plan), per_layer=True)
    assert cost.params == sum(p.numel() for p in pruned.parameters())
    assert sum(r.params for r in cost.layers) == cost.params
    assert sum(r.macs for r in cost.layers) == cost.macs
    assert sum(r.act_elements for r in cost.layers) == cost.act_elements


@pytest.mark.parametrize("name", FULL)
@given(data=st.data())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fast_path_equals_validated_path(name: str, data: st.DataObject) -> None:
    """Counts, index tuples and the numpy batch all give the same exact numbers."""
    groups = groups_of(_meta_model(name))
    keep = _random_keep(groups, data)
    compiled = AnalyticCostModel().compile(name)
    counts = plan_widths(groups, PruningPlan(model=name, keep=keep))
    fast = compiled.totals(counts)
    slow = compiled._scalar(compiled.vector(counts))
    assert fast == slow
    # channel groups given as index tuples (len counts) take the validated path, same result
    as_tuples = {k: (tuple(range(v)) if isinstance(v, int) else v) for k, v in counts.items()}
    assert compiled.totals(as_tuples) == fast
    batch = compiled.batch([counts, {}])
    assert batch["params"][0] == fast[0] and batch["macs"][0] == fast[2] and batch["act_elements"][0] == fast[5]
    assert batch["peak_act_elements"][0] == fast[-1]
    assert batch["params"][1] == compiled.totals()[0]


def test_one_mlp_channel_costs_what_the_formula_says() -> None:
    """pruning-couplings.md §2: one MLP inner channel = 2D + 3 params and 2·N·D MACs per step."""
    full = analytic_cost("spikformer-8-512")
    cut = analytic_cost("spikformer-8-512", {"block.3.mlp.hidden": 2047})
    assert full.params - cut.params == 2 * 512 + 3
    assert full.macs - cut.macs == 4 * 2 * 196 * 512
    assert full.act_elements - cut.act_elements == 4 * 196  # fc1_lif loses one channel
    head = analytic_cost("spikformer-8-512", {"block.0.attn.heads": 7})  # one head: 4Dd + 6d, 4NDd + 2Nd^2
    d = 64
    assert full.params - head.params == 4 * 512 * d + 6 * d
    assert full.macs - head.macs == 4 * (4 * 196 * 512 * d + 2 * 196 * d * d)


def test_depth_counts_keep_the_first_units() -> None:
    model = AnalyticCostModel()
    assert model.cost("spikformer-8-384", {"block": 6}).params == model.cost(
        "spikformer-8-384", {"block": (0, 1, 2, 3, 4, 5)}).params
    with_widths = {"block.7.mlp.hidden": 8}
    assert model.cost("spikformer-8-384", {**with_widths, "block": 7}).params == model.cost(
        "spikformer-8-384", {"block": 7}).params  # block 7 is removed with its widths
    branches = model.cost("spikformer-8-384", {"branches": tuple(range(1, 16))})  # block 0 attention removed
    assert branches.attention_macs == 7 / 8 * analytic_cost("spikformer-8-384").attention_macs


@pytest.mark.parametrize(("widths", "message"), [
    ({"block.0.mlp.hiden": 10}, "did you mean 'block.0.mlp.hidden'"),
    ({"block.0.attn.qk": 13}, "multiple of its 12 partitions"),
    ({"embed": 0}, "keeps 0 of 384"),
    ({"embed": 385}, "keeps 385 of 384"),
    ({"block": (0, 9)}, "out-of-range"),
])
def test_bad_widths_raise_one_line(widths: dict, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        analytic_cost("spikformer-8-384", widths)


# ---------------------------------------------------------------------------------------------------
# SOPs, energy, registry, serialisation
# ---------------------------------------------------------------------------------------------------


def test_sops_and_energy_from_given_rates() -> None:
    base = analytic_cost("spikformer-cifar10-4-384")
    lifs = {r.name for r in base.layers if r.kind == "lif"}
    cost = analytic_cost("spikformer-cifar10-4-384", firing_rates={n: 0.25 for n in lifs})
    binary = sum(r.macs for r in cost.layers if r.input_binary)
    assert cost.sops == pytest.approx(0.25 * binary, rel=1e-12)
    assert cost.nonspike_macs + binary == cost.macs
    assert cost.energy_mj == pytest.approx((4.6 * cost.nonspike_macs + 0.9 * cost.sops) * 1e-9, rel=1e-12)
    assert cost.energy_caveat == ENERGY_CAVEAT and "2409.08290" in ENERGY_CAVEAT
    assert base.sops is None and base.energy_mj is None and base.energy_caveat is None
    # the syops README sanity check: 0.10 G ACs + 0.14 G MACs -> 0.09 + 0.644 = 0.734 mJ
    assert energy_mj(0.14e9, 0.10e9) == pytest.approx(0.734)
    with pytest.raises(PlanError, match="firing rates missing"):
        analytic_cost("spikformer-cifar10-4-384", firing_rates={})


@pytest.mark.parametrize(("family", "layout", "layer", "lif"), [
    ("spikformer", "imagenet", "block.2.attn.matmul1", "block.2.attn.k_lif"),  # k^T @ v
    ("spikformer", "cifar", "block.2.attn.matmul2", "block.2.attn.v_lif"),  # (q k^T) @ v
    ("spikformer", "cifar", "block.2.attn.q_linear", None),  # integer residual stream: MAC
    ("spikformer", "imagenet", "patch_embed.proj_conv", None),  # pixels
    ("sdt", "imagenet", "block.0.attn.q_conv", "block.0.attn.shortcut_lif"),
    ("sdt", "imagenet", "head", "head_lif"),
    ("qkformer", "cifar", "patch_embed2.proj3_conv", None),
    ("qkformer", "cifar", "stage3.0.ssa.proj_conv", "stage3.0.ssa.attn_lif"),
])
def test_spike_input_table(family: str, layout: str, layer: str, lif: str | None) -> None:
    assert spike_input(family, layout, layer) == lif


def test_registry_and_round_trip() -> None:
    assert list_cost_models() == ["analytic", "latency", "measured"]
    with pytest.raises(UnknownNameError, match="did you mean 'analytic'"):
        create_cost_model("analytc")
    model = create_cost_model("analytic", dtype="fp16", spike_bits=8)
    cost = model.cost("sdt-cifar10-2-256", {"block.1.attn.qkv": 128})
    assert cost.dtype == "fp16" and cost.weight_bytes == cost.params * 2
    assert cost.activation_bytes == cost.act_elements
    again = Cost.from_dict(json.loads(json.dumps(cost.to_dict())))
    assert again == cost
    frame = cost.to_frame()
    assert int(frame["params"].sum()) == cost.params and int(frame["macs"].sum()) == cost.macs
    assert set(frame["kind"]) == {"conv", "linear", "norm", "lif"}
    assert cost.conventions["head"] == "every step" and "MB = 1e6" in cost.conventions["weight_bytes"]


def test_batch_is_vectorised_and_exact() -> None:
    compiled = AnalyticCostModel().compile("spikformer-8-768")
    rng = np.random.default_rng(0)
    plans = [{f"block.{i}.mlp.hidden": int(rng.integers(1, 3073)) for i in range(8)} for _ in range(64)]
    batch = compiled.batch(plans)
    expected = [compiled.cost(w) for w in plans]
    assert batch["params"].tolist() == [c.params for c in expected]
    assert batch["weight_bytes"].tolist() == [c.weight_bytes for c in expected]
    assert batch["activation_bytes"].tolist() == [c.activation_bytes for c in expected]
    assert batch["macs"].dtype == np.int64 and math.isclose(batch["macs"].max(), max(c.macs for c in expected))


@pytest.mark.parametrize("name", FULL)
@given(data=st.data())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_public_cost_entry_equals_the_pruned_model(name: str, data: st.DataObject) -> None:
    """``cost(plan)``, ``cost(config, plan)``, ``analytic_cost(plan)`` and the compiled path agree with the
    pruned model; a plan whose depth counts leave the cost open is refused instead of guessed."""
    from hwsearch.pruning import resolve_plan

    model = _meta_model(name)
    groups = groups_of(model)
    plan = PruningPlan(model=name, keep=_random_keep(groups, data, depth_indices=False), criterion="random",
                       seed=data.draw(st.integers(0, 9)))
    pruned = prune(model, plan, groups)
    params = sum(p.numel() for p in pruned.parameters())
    exact = resolve_plan(model, plan, groups)
    assert exact.keep == pruned.hwsearch_plan.keep
    m = AnalyticCostModel()
    reference = m.compile(name).cost(plan_widths(groups, exact), per_layer=False)
    for cost in (m.cost(exact), m.cost(name, exact), analytic_cost(exact), m.cost(pruned.hwsearch_plan, per_layer=False)):
        assert cost.params == params
        assert (cost.macs, cost.act_elements) == (reference.macs, reference.act_elements)
    by_name = {g.name: g for g in groups}
    channels_pruned = any(v < by_name[k].width for k, v in plan.keep.items()
                          if isinstance(by_name[k], (ChannelGroup, TokenGroup)))  # a removed block takes its tokens
    open_depth = [k for k, v in plan.keep.items() if isinstance(by_name[k], DepthGroup)
                  and 0 < v < by_name[k].width and (k == "branches" or channels_pruned)]
    if open_depth:
        with pytest.raises(PlanError, match="as a count: which ones the criterion keeps decides the cost"):
            m.cost(plan)
    else:
        assert m.cost(plan).params == params


def test_a_depth_count_with_pruned_widths_is_refused_not_guessed() -> None:
    """The call the README once documented, ``cost(name, plan.counts())``, assumed the first blocks are
    kept; the criterion may keep others, whose widths the plan prunes differently."""
    name = "spikformer-cifar10-4-384"
    model = _meta_model(name)
    plan = PruningPlan(model=name, keep={"block": 3, "block.3.mlp.hidden": 96}, criterion="random", seed=1)
    pruned = prune(model, plan)
    with pytest.raises(PlanError, match="keeps 3 of 4 'block' units as a count"):
        AnalyticCostModel().cost(plan)
    assert AnalyticCostModel().cost(pruned.hwsearch_plan).params == sum(p.numel() for p in pruned.parameters())
