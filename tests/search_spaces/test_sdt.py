"""Spike-driven Transformer (search_spaces/sdt.py): official keys, counts, outputs; generalized widths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, monitor, neuron

from hwsearch.testing import calibrate_bn, firing_rates
from search_spaces import create_model, get_config, list_models
from search_spaces.sdt import MSMLP, MSSSA, SpikeDrivenTransformer

DATA = Path(__file__).resolve().parents[1] / "data" / "official-tiny"

# svit-architectures.md §6, "official code" column: name -> (D, L, K, official params).
OFFICIAL = {
    "sdt-8-384": (384, 8, 1000, 16_816_536),
    "sdt-6-512": (512, 6, 1000, 23_373_736),
    "sdt-8-512": (512, 8, 1000, 29_689_896),
    "sdt-10-512": (512, 10, 1000, 36_006_056),
    "sdt-8-768": (768, 8, 1000, 66_339_144),
    "sdt-cifar10-2-512": (512, 2, 10, 10_233_546),
    "sdt-cifar10-2-256": (256, 2, 10, 2_567_082),
}

# The tiny official test vectors (manifest.json constructor calls) as overrides of a registered config.
TINY = {
    "tiny-sdt-cifar-1-64": ("sdt-cifar10-2-256", dict(embed_dim=64, num_heads=4, depth=1, num_classes=10)),
    "tiny-sdt-imagenet-1-64": (
        "sdt-8-384",
        dict(img_size=64, embed_dim=64, num_heads=4, depth=1, num_classes=10),
    ),
}

NEVER_CALLED = ("attn_lif", "rpe_lif")


def expected_state_dict_shapes(D: int, L: int, h: int, K: int, cin: int = 3) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an official SDT state_dict, written from svit-architectures.md §2.1 and §3."""
    spec: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            spec[f"{prefix}.{name}"] = (c,)
        spec[f"{prefix}.num_batches_tracked"] = ()

    widths = [cin, D // 8, D // 4, D // 2, D]
    for i, suffix in enumerate(("", "1", "2", "3")):
        spec[f"patch_embed.proj_conv{suffix}.weight"] = (widths[i + 1], widths[i], 3, 3)
        bn(f"patch_embed.proj_bn{suffix}", widths[i + 1])
    spec["patch_embed.rpe_conv.weight"] = (D, D, 3, 3)
    bn("patch_embed.rpe_bn", D)
    for i in range(L):
        p = f"block.{i}."
        for n in ("q", "k", "v"):
            spec[f"{p}attn.{n}_conv.weight"] = (D, D, 1, 1)
            bn(f"{p}attn.{n}_bn", D)
        spec[f"{p}attn.talking_heads.weight"] = (h, h, 1)
        spec[f"{p}attn.proj_conv.weight"] = (D, D, 1, 1)
        spec[f"{p}attn.proj_conv.bias"] = (D,)
        bn(f"{p}attn.proj_bn", D)
        spec[f"{p}mlp.fc1_conv.weight"] = (4 * D, D, 1, 1)
        spec[f"{p}mlp.fc1_conv.bias"] = (4 * D,)
        bn(f"{p}mlp.fc1_bn", 4 * D)
        spec[f"{p}mlp.fc2_conv.weight"] = (D, 4 * D, 1, 1)
        spec[f"{p}mlp.fc2_conv.bias"] = (D,)
        bn(f"{p}mlp.fc2_bn", D)
    spec["head.weight"] = (K, D)
    spec["head.bias"] = (K,)
    return spec


def _build_meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return create_model(name)


def _lif_names(model: nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, neuron.BaseNode)}


# ---------------------------------------------------------------------------------------------------
# Registry, parameter counts, keys and shapes


def test_all_official_configs_registered() -> None:
    assert set(list_models("sdt-*")) == set(OFFICIAL)
    for name, (D, L, K, params) in OFFICIAL.items():
        cfg = get_config(name)
        assert cfg.family == "sdt" and cfg.arch_names == ("sdt",) and cfg.official_params == params
        cifar = "cifar" in name
        assert cfg.layout == ("cifar" if cifar else "imagenet")
        assert cfg.input_shape == ((3, 32, 32) if cifar else (3, 224, 224))
        kw = cfg.kwargs
        assert (kw["embed_dim"], kw["depth"], kw["num_classes"], kw["num_heads"], kw["T"]) == (D, L, K, 8, 4)
        assert kw["pooling_stat"] == ("0011" if cifar else "1111")
        assert cfg.description


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_param_count_keys_and_shapes(name: str) -> None:
    D, L, K, params = OFFICIAL[name]
    model = _build_meta(name)
    assert sum(p.numel() for p in model.parameters()) == params
    # §5 closed form, independent of the table: SPS + L blocks (12D² + 24D + h²) + head.
    assert params == 9 * 3 * D // 8 + 477 * D * D // 32 + 23 * D // 4 + L * (12 * D * D + 24 * D + 64) + D * K + K
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected_state_dict_shapes(D, L, 8, K)


def test_lif_modules_match_official_tree() -> None:
    model = create_model("sdt-cifar10-2-256", embed_dim=16, num_heads=2, depth=1)
    expected = {f"patch_embed.{n}" for n in ("proj_lif", "proj_lif1", "proj_lif2", "proj_lif3", "rpe_lif")}
    expected |= {f"block.0.attn.{n}" for n in
                 ("shortcut_lif", "q_lif", "k_lif", "v_lif", "attn_lif", "talking_heads_lif")}
    expected |= {"block.0.mlp.fc1_lif", "block.0.mlp.fc2_lif", "head_lif"}
    assert _lif_names(model) == expected  # 14, as the manifest's n_lif
    thresholds = {n: m.v_threshold for n, m in model.named_modules() if isinstance(m, neuron.BaseNode)}
    assert thresholds["block.0.attn.talking_heads_lif"] == 0.5
    assert thresholds["block.0.attn.attn_lif"] == 0.5
    assert all(v == 1.0 for n, v in thresholds.items() if not n.endswith(("attn_lif", "talking_heads_lif")))
    lif = model.block[0].attn.q_lif
    assert (lif.tau, lif.v_reset, lif.detach_reset, lif.step_mode) == (2.0, 0.0, True, "m")


def test_plif_adds_one_scalar_per_neuron() -> None:
    lif_model = create_model("sdt-cifar10-2-256", embed_dim=16, num_heads=2, depth=1)
    plif_model = create_model("sdt-cifar10-2-256", embed_dim=16, num_heads=2, depth=1, spike_mode="plif")
    extra = set(plif_model.state_dict()) - set(lif_model.state_dict())
    assert extra == {f"{n}.w" for n in _lif_names(lif_model)}
    assert all(plif_model.state_dict()[k].shape == () for k in extra)


def test_constructor_stores_arguments_unchanged() -> None:
    kwargs = dict(img_size=64, patch_size=8, in_channels=2, num_classes=7, embed_dim=32, num_heads=4,
                  mlp_ratio=4, depth=1, T=3, pooling_stat="0111", spike_mode="lif")
    model = SpikeDrivenTransformer(**kwargs)
    assert {k: getattr(model, k) for k in kwargs} == kwargs
    assert model.block[0].attn.num_heads == 4 and model.block[0].mlp.c_hidden == 128
    assert model.block[0].mlp.res is False
    with pytest.raises(ValueError, match="spike_mode"):
        SpikeDrivenTransformer(embed_dim=16, num_heads=2, depth=1, spike_mode="alif-typo")
    with pytest.raises(TypeError):
        SpikeDrivenTransformer(224)  # type: ignore[misc]  # keyword-only


# ---------------------------------------------------------------------------------------------------
# Official-code test vectors


def _assert_matches_official(model: SpikeDrivenTransformer, x: torch.Tensor, out: torch.Tensor,
                             ref: torch.Tensor) -> None:
    """``torch.equal``, or a difference explained only by the head's fp32 summation order.

    The logits are ``mean_t(head(s_t))`` of binary ``head_lif`` spikes, so they are sums of head weights;
    a BLAS with another kernel (another CPU) sums them in another order. The bound below covers any order,
    and is checked to be far below the effect of a single spike flipped anywhere in ``head_lif``'s output,
    so the test still fails on any difference in the spikes.
    """
    if torch.equal(out, ref):
        return
    W, b = model.head.weight.detach().double(), model.head.bias.detach().double()
    eps = 2.0**-24
    # |fl(sum) - sum| <= (n-1)·eps·Σ|terms| per step, plus the bias add and the mean (4 roundings).
    bound = (W.shape[1] + 8) * eps * (W.abs().sum(1) + b.abs()) + eps * ref.double().abs()
    flip_effect = W.abs().max(0).values / model.T  # one spike (t, b, d) moves logit k by W[k, d] / T
    assert bound.max() * 10 < flip_effect.min(), "rounding bound too loose to detect a spike flip"
    diff = (out.double() - ref.double()).abs()
    assert (diff <= bound).all(), f"max |Δ| {diff.max().item():.3g} exceeds head rounding; spikes differ"


@pytest.mark.parametrize("fixture", sorted(TINY))
def test_official_test_vectors(fixture: str) -> None:
    manifest = json.loads((DATA / "manifest.json").read_text())[fixture]
    base, overrides = TINY[fixture]
    model = create_model(base, **overrides)
    sd = torch.load(DATA / f"{fixture}.pth", weights_only=True)
    model.load_state_dict(sd, strict=True)
    assert len(sd) == manifest["state_dict_entries"]
    assert sum(p.numel() for p in model.parameters()) == manifest["params_total"]
    assert len(_lif_names(model)) == manifest["n_lif"]
    io = torch.load(DATA / f"{fixture}.io.pt", weights_only=True)
    assert io["T"] == model.T
    model.eval()
    functional.reset_net(model)
    with torch.no_grad():
        out = model(io["input"])
    functional.reset_net(model)
    assert out.shape == io["output"].shape
    _assert_matches_official(model, io["input"], out, io["output"])
    rates = firing_rates(model, io["input"])
    assert len(rates) == manifest["firing_rate_summary"]["n"]
    summary = manifest["firing_rate_summary"]
    values = sorted(rates.values())
    # The manifest's "median" is the upper middle element of the sorted rates.
    assert (values[0], values[len(values) // 2], values[-1]) == pytest.approx(
        (summary["min"], summary["median"], summary["max"]), abs=1e-6
    )


# ---------------------------------------------------------------------------------------------------
# Calibrated random models of both pooling layouts

LAYOUTS = {
    "cifar-0011": ("sdt-cifar10-2-256", dict(embed_dim=32, num_heads=4, depth=2), (2, 3, 32, 32)),
    "imagenet-1111": (
        "sdt-8-384",
        dict(img_size=64, embed_dim=32, num_heads=4, depth=2, num_classes=10),
        (2, 3, 64, 64),
    ),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def calibrated(request: pytest.FixtureRequest) -> tuple[nn.Module, torch.Tensor]:
    base, overrides, shape = LAYOUTS[request.param]
    torch.manual_seed(0)
    model = create_model(base, **overrides)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    calibrate_bn(model, x)
    return model, x


def _record_spikes(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    functional.reset_net(model)
    with torch.no_grad(), monitor.OutputMonitor(model, neuron.BaseNode) as mon:
        out = model(x)
        records = {n: [r.clone() for r in mon[n]] for n in mon.monitored_layers}
    functional.reset_net(model)
    return out, records


def test_forward_is_deterministic_and_every_called_lif_fires(calibrated: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = calibrated
    out1, rec1 = _record_spikes(model, x)
    out2, rec2 = _record_spikes(model, x)
    assert out1.shape == (x.shape[0], model.num_classes)
    assert torch.equal(out1, out2)
    called = {n for n, r in rec1.items() if r}
    never = {n for n in _lif_names(model) if n.rsplit(".", 1)[-1] in NEVER_CALLED}
    assert len(never) == 1 + model.depth
    assert called == _lif_names(model) - never  # attn_lif / rpe_lif record nothing, all others once
    for n in called:
        assert len(rec1[n]) == 1 and torch.equal(rec1[n][0], rec2[n][0]), n
        assert rec1[n][0].shape[0] == model.T
    rates = firing_rates(model, x)
    assert set(rates) == called
    assert min(rates.values()) > 0.0, {k: v for k, v in rates.items() if v == 0.0}


def test_five_d_input_equals_repeated_four_d(calibrated: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = calibrated
    functional.reset_net(model)
    with torch.no_grad():
        out4 = model(x)
        functional.reset_net(model)
        out5 = model(x.unsqueeze(1).repeat(1, model.T, 1, 1, 1))
    functional.reset_net(model)
    assert torch.equal(out4, out5)


def test_sps_pooling_layout(calibrated: tuple[nn.Module, torch.Tensor]) -> None:
    model, x = calibrated
    functional.reset_net(model)
    with torch.no_grad():
        feat = model.patch_embed(x.unsqueeze(0).repeat(model.T, 1, 1, 1, 1))
    functional.reset_net(model)
    n_pool = model.pooling_stat.count("1")
    assert feat.shape == (model.T, x.shape[0], model.embed_dim, x.shape[2] >> n_pool, x.shape[3] >> n_pool)
    assert not torch.equal(feat, feat.round())  # real-valued membrane shortcut, not spikes


# ---------------------------------------------------------------------------------------------------
# Dataflow details and generalized widths


def _bn_slice(bn: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    bn.weight = nn.Parameter(bn.weight.data[idx].clone())
    bn.bias = nn.Parameter(bn.bias.data[idx].clone())
    bn.running_mean = bn.running_mean[idx].clone()
    bn.running_var = bn.running_var[idx].clone()
    bn.num_features = len(idx)


def _conv_slice(conv: nn.Conv2d, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> None:
    w = conv.weight.data
    if out_idx is not None:
        w = w[out_idx]
        if conv.bias is not None:
            conv.bias = nn.Parameter(conv.bias.data[out_idx].clone())
        conv.out_channels = len(out_idx)
    if in_idx is not None:
        w = w[:, in_idx]
        conv.in_channels = len(in_idx)
    conv.weight = nn.Parameter(w.clone())


def _random_bn(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            c = bn.num_features
            bn.weight.data = torch.rand(c, generator=gen) * 1.5 + 0.5
            bn.bias.data = torch.rand(c, generator=gen) * 0.5 + 0.5
            bn.running_mean = torch.randn(c, generator=gen) * 0.05
            bn.running_var = torch.rand(c, generator=gen) * 0.02 + 0.01


def _run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    functional.reset_net(module)
    with torch.no_grad():
        out = module(x)
    functional.reset_net(module)
    return out


def test_attention_dataflow_and_channel_pruning() -> None:
    """Removing q/k/v channels (+ proj_conv inputs) equals zeroing those proj_conv columns: element-wise."""
    torch.manual_seed(0)
    D, h = 16, 4
    attn = MSSSA(dim=D, num_heads=h).eval()
    _random_bn(attn, 1)
    x = torch.randn(4, 2, D, 3, 3, generator=torch.Generator().manual_seed(2)) * 3
    # Reference by hand: s = shortcut_lif(x); q,k,v = LIF(BN(conv(s))); kv = lif0.5(Σ_N k∘v); q∘kv → proj.
    functional.reset_net(attn)
    with torch.no_grad():
        T, B = x.shape[:2]
        s = attn.shortcut_lif(x).flatten(0, 1)
        q, k, v = (lif(bn(conv(s)).reshape(T, B, D, 9)) for conv, bn, lif in (
            (attn.q_conv, attn.q_bn, attn.q_lif), (attn.k_conv, attn.k_bn, attn.k_lif),
            (attn.v_conv, attn.v_bn, attn.v_lif)))
        kv = attn.talking_heads_lif((k * v).sum(-1, keepdim=True))
        y = attn.proj_bn(attn.proj_conv((q * kv).reshape(T * B, D, 3, 3))).reshape(x.shape) + x
    assert kv.sum() > 0 and q.sum() > 0
    torch.testing.assert_close(_run(attn, x), y, rtol=0, atol=1e-5)

    keep = torch.tensor([0, 1, 2, 5, 6, 8, 9, 10, 13, 15, 3, 4])  # 12 of 16, any order, 4 heads of 3
    dropped = sorted(set(range(D)) - set(keep.tolist()))
    zeroed = MSSSA(dim=D, num_heads=h).eval()
    zeroed.load_state_dict(attn.state_dict())
    zeroed.proj_conv.weight.data[:, dropped] = 0
    ref = _run(zeroed, x)
    for conv, bn in ((attn.q_conv, attn.q_bn), (attn.k_conv, attn.k_bn), (attn.v_conv, attn.v_bn)):
        _conv_slice(conv, out_idx=keep)
        _bn_slice(bn, keep)
    _conv_slice(attn.proj_conv, in_idx=keep)
    functional.invalidate_reset_cache(attn)
    torch.testing.assert_close(_run(attn, x), ref, rtol=0, atol=1e-5)
    attn.num_heads = 5  # 12 channels do not split into 5 heads
    with pytest.raises(ValueError, match="num_heads"):
        _run(attn, x)


def test_mlp_dataflow_and_hidden_pruning() -> None:
    torch.manual_seed(0)
    D = 8
    mlp = MSMLP(in_features=D, hidden_features=4 * D).eval()
    _random_bn(mlp, 3)
    x = torch.randn(4, 2, D, 2, 2, generator=torch.Generator().manual_seed(4)) * 3
    functional.reset_net(mlp)
    with torch.no_grad():
        z = mlp.fc1_bn(mlp.fc1_conv(mlp.fc1_lif(x).flatten(0, 1)))
        y = mlp.fc2_bn(mlp.fc2_conv(mlp.fc2_lif(z.reshape(4, 2, 4 * D, 2, 2)).flatten(0, 1))).reshape(x.shape) + x
    torch.testing.assert_close(_run(mlp, x), y, rtol=0, atol=1e-5)

    keep = torch.arange(0, 4 * D, 3)
    dropped = sorted(set(range(4 * D)) - set(keep.tolist()))
    zeroed = MSMLP(in_features=D, hidden_features=4 * D).eval()
    zeroed.load_state_dict(mlp.state_dict())
    zeroed.fc2_conv.weight.data[:, dropped] = 0
    ref = _run(zeroed, x)
    _conv_slice(mlp.fc1_conv, out_idx=keep)
    _bn_slice(mlp.fc1_bn, keep)
    _conv_slice(mlp.fc2_conv, in_idx=keep)
    mlp.c_hidden = len(keep)
    functional.invalidate_reset_cache(mlp)
    torch.testing.assert_close(_run(mlp, x), ref, rtol=0, atol=1e-5)


def test_mlp_inner_residual_when_hidden_equals_dim() -> None:
    torch.manual_seed(0)
    D = 8
    mlp = MSMLP(in_features=D, hidden_features=D).eval()
    assert mlp.res is True
    _random_bn(mlp, 5)
    x = torch.randn(4, 2, D, 2, 2, generator=torch.Generator().manual_seed(6)) * 3
    functional.reset_net(mlp)
    with torch.no_grad():
        z = mlp.fc1_bn(mlp.fc1_conv(mlp.fc1_lif(x).flatten(0, 1))).reshape(x.shape) + x
        y = mlp.fc2_bn(mlp.fc2_conv(mlp.fc2_lif(z).flatten(0, 1))).reshape(x.shape) + z
    torch.testing.assert_close(_run(mlp, x), y, rtol=0, atol=1e-5)


def test_pruned_block_forward_runs() -> None:
    """Slice one block's q/k/v (and heads) and MLP hidden width in a whole model: forward gives [B, K]."""
    torch.manual_seed(0)
    model = create_model("sdt-cifar10-2-256", embed_dim=32, num_heads=4, depth=2).eval()
    attn, mlp = model.block[1].attn, model.block[1].mlp
    keep = torch.arange(0, 32, 2)[:15]  # 15 channels: 3 heads of 5 (4 heads would not divide)
    for conv, bn in ((attn.q_conv, attn.q_bn), (attn.k_conv, attn.k_bn), (attn.v_conv, attn.v_bn)):
        _conv_slice(conv, out_idx=keep)
        _bn_slice(bn, keep)
    _conv_slice(attn.proj_conv, in_idx=keep)
    h_keep = torch.arange(3)
    attn.talking_heads.weight = nn.Parameter(attn.talking_heads.weight.data[h_keep][:, h_keep].clone())
    attn.num_heads = 3
    hidden = torch.arange(40)
    _conv_slice(mlp.fc1_conv, out_idx=hidden)
    _bn_slice(mlp.fc1_bn, hidden)
    _conv_slice(mlp.fc2_conv, in_idx=hidden)
    mlp.c_hidden = 40
    functional.invalidate_reset_cache(model)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    out = _run(model, x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    full = create_model("sdt-cifar10-2-256", embed_dim=32, num_heads=4, depth=2)
    removed = sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in model.parameters())
    assert removed == 17 * (4 * 32 + 6) + (16 - 9) + (128 - 40) * (2 * 32 + 3)
