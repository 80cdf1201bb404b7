"""Spikformer (three official layouts): keys, shapes, parameter counts, official test vectors, dataflow.

Expected key/shape specs below are written from ``svit-architectures.md`` §2.1, independently of the
implementation; parameter counts are the "official code" column of §6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, monitor, neuron
from torch.utils._python_dispatch import TorchDispatchMode

from hwsearch.testing.calibrate import calibrate_bn, firing_rates
from search_spaces import create_model, get_config, list_models

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "official-tiny"

# name -> (layout, D, L, K, in_channels, heads, official parameter count)
OFFICIAL = {
    "spikformer-8-384": ("imagenet", 384, 8, 1000, 3, 12, 16_828_312),
    "spikformer-6-512": ("imagenet", 512, 6, 1000, 3, 8, 23_385_640),
    "spikformer-8-512": ("imagenet", 512, 8, 1000, 3, 8, 29_705_768),
    "spikformer-10-512": ("imagenet", 512, 10, 1000, 3, 8, 36_025_896),
    "spikformer-8-768": ("imagenet", 768, 8, 1000, 3, 12, 66_363_208),
    "spikformer-cifar10-4-384": ("cifar", 384, 4, 10, 3, 12, 9_330_874),
    "spikformer-cifar100-4-384": ("cifar", 384, 4, 100, 3, 12, 9_365_524),
    "spikformer-cifar10-4-256": ("cifar", 256, 4, 10, 3, 8, 4_159_274),
    "spikformer-cifar10-2-384": ("cifar", 384, 2, 10, 3, 12, 5_768_122),
    "spikformer-cifar10dvs-2-256": ("dvs", 256, 2, 10, 2, 16, 2_585_610),
}

BASE = {"imagenet": "spikformer-8-384", "cifar": "spikformer-cifar10-4-384", "dvs": "spikformer-cifar10dvs-2-256"}


def expected_state_dict(layout: str, D: int, L: int, K: int, cin: int, num_patches: int = 64) -> dict[str, tuple]:
    """Key -> shape of an official Spikformer state_dict (svit-architectures.md §2.1)."""
    spec: dict[str, tuple] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            spec[f"{prefix}.{name}"] = (c,)
        spec[f"{prefix}.num_batches_tracked"] = ()

    widths = [cin, D // 8, D // 4, D // 2, D]
    for i, suffix in enumerate(["", "1", "2", "3"]):
        spec[f"patch_embed.proj_conv{suffix}.weight"] = (widths[i + 1], widths[i], 3, 3)
        bn(f"patch_embed.proj_bn{suffix}", widths[i + 1])
    spec["patch_embed.rpe_conv.weight"] = (D, D, 3, 3)
    bn("patch_embed.rpe_bn", D)
    M = 4 * D
    for i in range(L):
        p = f"block.{i}."
        for ln in ("norm1", "norm2"):
            spec[p + ln + ".weight"] = (D,)
            spec[p + ln + ".bias"] = (D,)
        if layout == "cifar":
            for n in ("q", "k", "v", "proj"):
                spec[p + f"attn.{n}_linear.weight"] = (D, D)
                spec[p + f"attn.{n}_linear.bias"] = (D,)
                bn(p + f"attn.{n}_bn", D)
            spec[p + "mlp.fc1_linear.weight"] = (M, D)
            spec[p + "mlp.fc1_linear.bias"] = (M,)
            spec[p + "mlp.fc2_linear.weight"] = (D, M)
            spec[p + "mlp.fc2_linear.bias"] = (D,)
        else:
            for n in ("q", "k", "v"):
                spec[p + f"attn.{n}_conv.weight"] = (D, D, 1)
                bn(p + f"attn.{n}_bn", D)
            spec[p + "attn.proj_conv.weight"] = (D, D, 1)
            spec[p + "attn.proj_conv.bias"] = (D,)
            bn(p + "attn.proj_bn", D)
            k = (1, 1) if layout == "imagenet" else (1,)
            spec[p + "mlp.fc1_conv.weight"] = (M, D, *k)
            spec[p + "mlp.fc1_conv.bias"] = (M,)
            spec[p + "mlp.fc2_conv.weight"] = (D, M, *k)
            spec[p + "mlp.fc2_conv.bias"] = (D,)
        bn(p + "mlp.fc1_bn", M)
        bn(p + "mlp.fc2_bn", D)
    spec["head.weight"] = (K, D)
    spec["head.bias"] = (K,)
    if layout == "dvs":
        spec["pos_embed"] = (1, num_patches, D)
        spec["norm.weight"] = (D,)
        spec["norm.bias"] = (D,)
    return spec


def test_expected_spec_matches_quoted_counts() -> None:
    # Entry counts quoted in svit-architectures.md §2.1 and the official-tiny manifest.
    assert len(expected_state_dict("imagenet", 384, 8, 1000, 3)) == 376
    assert len(expected_state_dict("imagenet", 64, 1, 1000, 3)) == 75
    assert len(expected_state_dict("cifar", 64, 1, 10, 3)) == 78


def test_registry_entries() -> None:
    names = set(list_models("spikformer*"))
    assert names == set(OFFICIAL) | {"spikformer-digits-2-64"}
    for name, (layout, D, L, K, cin, heads, params) in OFFICIAL.items():
        cfg = get_config(name)
        assert (cfg.family, cfg.layout, cfg.official_params, cfg.arch_names) == ("spikformer", layout, params, ("spikformer",))
        kw = cfg.kwargs
        assert (kw["embed_dim"], kw["depth"], kw["num_classes"], kw["in_channels"], kw["num_heads"]) == (D, L, K, cin, heads)
        assert cfg.input_shape == {"imagenet": (3, 224, 224), "cifar": (3, 32, 32), "dvs": (16, 2, 128, 128)}[layout]
        assert cfg.description
    demo = get_config("spikformer-digits-2-64")
    assert demo.official_params is None and demo.layout == "cifar" and demo.input_shape == (1, 32, 32)
    assert "digits" in demo.description


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_keys_shapes_and_parameter_count(name: str) -> None:
    layout, D, L, K, cin, heads, params = OFFICIAL[name]
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    sd = model.state_dict()
    expected = expected_state_dict(layout, D, L, K, cin)
    assert set(sd) == set(expected)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert model.num_heads == heads and all(blk.attn.num_heads == heads for blk in model.block)
    n_lif = sum(isinstance(m, neuron.BaseNode) for m in model.modules())
    assert n_lif == 5 + 7 * L


def test_demo_model_shapes() -> None:
    with torch.device("meta"):
        model = create_model("spikformer-digits-2-64")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_state_dict("cifar", 64, 2, 10, 1)


@pytest.mark.parametrize("layout", ["imagenet", "cifar", "dvs"])
def test_overrides_stored_unchanged(layout: str) -> None:
    over = dict(img_size=(64, 96), patch_size=8, in_channels=5, num_classes=7, embed_dim=32, num_heads=2,
                mlp_ratio=2.5, depth=3, T=3)  # fmt: skip
    with torch.device("meta"):
        model = create_model(BASE[layout], **over)
    for k, v in over.items():
        assert getattr(model, k) == v, k
    sd = model.state_dict()
    assert sd["patch_embed.proj_conv.weight"].shape == (4, 5, 3, 3)
    assert sd["head.weight"].shape == (7, 32)
    assert len(model.block) == 3
    mlp = model.block[0].mlp
    assert mlp.c_hidden == 80
    assert model.block[2].attn.scale == (0.25 if layout == "dvs" else 0.125)
    if layout == "dvs":
        assert sd["pos_embed"].shape == (1, (64 // 8) * (96 // 8), 32)


def test_bad_heads_rejected() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        create_model("spikformer-8-384", embed_dim=64, num_heads=5, depth=1)


# --------------------------------------------------------------------------------------------------
# Official-code test vectors
# --------------------------------------------------------------------------------------------------

FIXTURES = {"tiny-spikformer-imagenet-1-64": "imagenet", "tiny-spikformer-cifar-1-64": "cifar"}


def _load_fixture(name: str) -> tuple[nn.Module, dict]:
    model = create_model(BASE[FIXTURES[name]], embed_dim=64, num_heads=4, depth=1)
    model.load_state_dict(torch.load(DATA / f"{name}.pth", weights_only=True), strict=True)
    model.eval()
    return model, torch.load(DATA / f"{name}.io.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_official_vectors_in_process(name: str) -> None:
    """Strict load; features are exact spike averages; logits agree to float rounding of the head.

    One spike flip anywhere moves the token mean by 1/(T*N) and the logits by ~1e-4, far above 1e-6.
    Bit equality of the logits is checked in a subprocess below (the head GEMM's rounding depends on
    the BLAS kernel the fixtures were produced with).
    """
    model, io = _load_fixture(name)
    x = io["input"]
    functional.reset_net(model)
    with torch.no_grad():
        feats = model.forward_features(model._to_sequence(x)).mean(0)
        functional.reset_net(model)
        out = model(x)
    functional.reset_net(model)
    assert out.shape == io["output"].shape
    n_tokens = (x.shape[-1] // (16 if FIXTURES[name] == "imagenet" else 4)) ** 2
    scaled = feats * (io["T"] * n_tokens)
    assert torch.equal(scaled, scaled.round())
    assert torch.equal(model.head(feats), out)
    assert (out - io["output"]).abs().max().item() < 1e-6


_BITEXACT_SCRIPT = r"""
import json, torch
torch.set_num_threads(1)
from spikingjelly.activation_based import functional
from search_spaces import create_model
res = {}
for name, base in NAMES.items():
    m = create_model(base, embed_dim=64, num_heads=4, depth=1)
    m.load_state_dict(torch.load(f"{DATA}/{name}.pth", weights_only=True), strict=True)
    io = torch.load(f"{DATA}/{name}.io.pt", weights_only=True)
    m.eval(); functional.reset_net(m)
    with torch.no_grad():
        out = m(io["input"])
    res[name] = torch.equal(out, io["output"])
print("RESULT" + json.dumps(res))
"""


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="needs MKL's conditional numerical reproducibility")
def test_official_vectors_bit_exact() -> None:
    """``torch.equal`` with the official outputs, using the BLAS settings the fixtures were made with.

    The fixture logits reproduce bit for bit with MKL's portable kernels on one thread
    (``MKL_CBWR=COMPATIBLE``); MKL reads that setting at start-up, hence the subprocess.
    """
    names = {name: BASE[layout] for name, layout in FIXTURES.items()}
    script = _BITEXACT_SCRIPT.replace("NAMES", repr(names)).replace("{DATA}", str(DATA))
    env = dict(os.environ, MKL_CBWR="COMPATIBLE", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    assert json.loads(line[len("RESULT"):]) == {name: True for name in FIXTURES}


# --------------------------------------------------------------------------------------------------
# Calibrated random models: state reset, every LIF fires
# --------------------------------------------------------------------------------------------------


def _calibrated(layout: str, depth: int = 1, num_heads: int = 4, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = create_model(BASE[layout], embed_dim=64, num_heads=num_heads, depth=depth, num_classes=10, T=2)
    if layout == "dvs":
        x = (torch.rand(2, 2, 2, 128, 128) < 0.3).float()  # [B,T,2,128,128] events
    elif layout == "imagenet":
        x = torch.rand(2, 3, 64, 64)  # N = 16 tokens
    else:
        x = torch.rand(2, 3, 32, 32)  # N = 64 tokens
    calibrate_bn(model, x, seed=seed)
    return model, x


@pytest.mark.parametrize("layout", ["imagenet", "cifar", "dvs"])
def test_calibrated_reset_and_every_lif_fires(layout: str) -> None:
    depth = 2
    model, x = _calibrated(layout, depth=depth)
    with torch.no_grad():
        functional.reset_net(model)
        out1 = model(x)
        stale = model(x)  # no reset: membranes carry over
        functional.reset_net(model)
        out2 = model(x)
        functional.reset_net(model)
    assert out1.shape == (2, 10)
    assert torch.equal(out1, out2)
    assert not torch.equal(out1, stale)
    rates = firing_rates(model, x)
    assert len(rates) == 5 + 7 * depth
    assert min(rates.values()) > 0.0, {k: v for k, v in rates.items() if v == 0}
    assert "block.1.attn.attn_lif" in rates and "patch_embed.rpe_lif" in rates
    assert max(rates.values()) < 1.0


# --------------------------------------------------------------------------------------------------
# Attention order: values (scale placement) and the executed matmul order
# --------------------------------------------------------------------------------------------------


def _heads(s: torch.Tensor, layout: str, h: int) -> torch.Tensor:
    """LIF output -> [T,B,h,N,d] as the official code splits it."""
    if layout == "cifar":  # [T,B,N,C]
        T, B, N, C = s.shape
        return s.reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4)
    T, B, C, N = s.shape  # [T,B,C,N]
    return s.transpose(-1, -2).reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4)


def _merge(y: torch.Tensor, layout: str) -> torch.Tensor:
    """[T,B,h,N,d] -> attn_lif input layout (head-major channels)."""
    T, B, h, N, d = y.shape
    if layout == "cifar":
        return y.transpose(2, 3).reshape(T, B, N, h * d)
    return y.transpose(3, 4).reshape(T, B, h * d, N)


def _official(q, k, v, s, layout):  # noqa: ANN001, ANN202
    if layout == "imagenet":
        return (q @ (k.transpose(-2, -1) @ v)) * s
    if layout == "cifar":
        return ((q @ k.transpose(-2, -1)) * s) @ v
    return ((q @ k.transpose(-2, -1)) @ v) * s


def _alternative(q, k, v, s, layout):  # noqa: ANN001, ANN202
    """Same matmuls, scale on the other side: differs from the official one for a non-power-of-two scale."""
    if layout == "cifar":
        return (q @ (k.transpose(-2, -1) @ v)) * s
    return ((q @ k.transpose(-2, -1)) * s) @ v


def _capture_attention(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    attn = model.block[0].attn
    with monitor.OutputMonitor(attn, neuron.BaseNode) as out_mon, monitor.InputMonitor(attn, neuron.BaseNode) as in_mon:
        functional.reset_net(model)
        with torch.no_grad():
            model(x)
        functional.reset_net(model)
        got = {n: out_mon[n][0] for n in ("q_lif", "k_lif", "v_lif")}
        got["attn_in"] = in_mon["attn_lif"][0]
    return got


@pytest.mark.parametrize("layout", ["imagenet", "cifar", "dvs"])
def test_attention_values_follow_official_expression(layout: str) -> None:
    model, x = _calibrated(layout, num_heads=4)
    attn = model.block[0].attn
    h = attn.num_heads
    for scale in (attn.scale, 0.1):  # the official constant, then a non-power-of-two that exposes placement
        attn.scale = scale
        got = _capture_attention(model, x)
        q, k, v = (_heads(got[n], layout, h).contiguous() for n in ("q_lif", "k_lif", "v_lif"))
        assert set(torch.unique(torch.cat([q.flatten(), k.flatten(), v.flatten()])).tolist()) == {0.0, 1.0}
        assert torch.equal(got["attn_in"], _merge(_official(q, k, v, scale, layout), layout))
        alt = _merge(_alternative(q, k, v, scale, layout), layout)
        if scale == 0.1:
            assert not torch.equal(got["attn_in"], alt)
        else:  # binary q/k/v, power-of-two scale: both placements are exact
            assert torch.equal(got["attn_in"], alt)


class _AttnRecorder(TorchDispatchMode):
    """Records bmm output shapes and multiplications by the attention scale inside one module."""

    def __init__(self, module: nn.Module, scale: float) -> None:
        super().__init__()
        self.active = False
        self.scale = scale
        self.events: list[tuple[str, tuple[int, ...]]] = []
        module.register_forward_pre_hook(lambda *_: setattr(self, "active", True))
        module.register_forward_hook(lambda *_: setattr(self, "active", False))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        if self.active:
            if func is torch.ops.aten.bmm.default:
                self.events.append(("bmm", tuple(out.shape)))
            elif func is torch.ops.aten.mul.Tensor and isinstance(args[1], float) and args[1] == self.scale:
                self.events.append(("scale", tuple(args[0].shape)))
        return out


@pytest.mark.parametrize("layout", ["imagenet", "cifar", "dvs"])
def test_attention_executed_matmul_order(layout: str) -> None:
    model, x = _calibrated(layout, num_heads=8)  # d = 8, N = 16 (ImageNet 64px) or 64: shapes tell them apart
    attn = model.block[0].attn
    T, B, h, d = model.T, x.shape[0], 8, 8
    N = 16 if layout == "imagenet" else 64
    rec = _AttnRecorder(attn, attn.scale)
    functional.reset_net(model)
    with torch.no_grad(), rec:
        model(x)
    functional.reset_net(model)
    tbh = T * B * h
    expected = {
        "imagenet": [("bmm", (tbh, d, d)), ("bmm", (tbh, N, d)), ("scale", (T, B, h, N, d))],
        "cifar": [("bmm", (tbh, N, N)), ("scale", (T, B, h, N, N)), ("bmm", (tbh, N, d))],
        "dvs": [("bmm", (tbh, N, N)), ("bmm", (tbh, N, d)), ("scale", (T, B, h, N, d))],
    }[layout]
    assert rec.events == expected


# --------------------------------------------------------------------------------------------------
# Generalised attention / MLP: physical slicing needs no new forward
# --------------------------------------------------------------------------------------------------


def _slice_(module: nn.Module, keep: torch.Tensor, dim: int) -> None:
    """Keep ``keep`` along ``dim`` of every parameter/buffer of ``module`` that has that size there."""
    for name, p in list(module.named_parameters(recurse=False)):
        if p.dim() > dim:
            setattr(module, name, nn.Parameter(p.detach().index_select(dim, keep).clone()))
    for name, b in list(module.named_buffers(recurse=False)):
        if b is not None and b.dim() > dim:
            setattr(module, name, b.index_select(dim, keep).clone())
    n = len(keep)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = n
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = (n, module.in_features) if dim == 0 else (module.out_features, n)
    elif isinstance(module, nn.modules.conv._ConvNd):
        module.out_channels, module.in_channels = (n, module.in_channels) if dim == 0 else (module.out_channels, n)


def _in_only(module: nn.Module, keep: torch.Tensor) -> None:
    module.weight = nn.Parameter(module.weight.detach().index_select(1, keep).clone())
    if isinstance(module, nn.Linear):
        module.in_features = len(keep)
    else:
        module.in_channels = len(keep)


@pytest.mark.parametrize("layout", ["imagenet", "cifar", "dvs"])
def test_pruned_head_and_mlp_run_without_new_forward(layout: str) -> None:
    model, x = _calibrated(layout, num_heads=4)
    attn, mlp = model.block[0].attn, model.block[0].mlp
    lin = "linear" if layout == "cifar" else "conv"
    D, d = 64, 16
    keep = torch.arange(d, D)  # drop head 0 from q, k and v
    for n in ("q", "k", "v"):
        _slice_(getattr(attn, f"{n}_{lin}"), keep, 0)
        _slice_(getattr(attn, f"{n}_bn"), keep, 0)
    _in_only(getattr(attn, f"proj_{lin}"), keep)
    attn.num_heads -= 1
    keep_m = torch.arange(0, mlp.c_hidden - 40)  # shrink the MLP hidden width 256 -> 216
    _slice_(getattr(mlp, f"fc1_{lin}"), keep_m, 0)
    _slice_(mlp.fc1_bn, keep_m, 0)
    _in_only(getattr(mlp, f"fc2_{lin}"), keep_m)
    mlp.c_hidden = len(keep_m)

    got = _capture_attention(model, x)
    with torch.no_grad():
        functional.reset_net(model)
        out = model(x)
        functional.reset_net(model)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert attn.qk_dim == attn.v_dim == 48
    ch_dim = -1 if layout == "cifar" else 2
    assert got["attn_in"].shape[ch_dim] == 3 * d  # head-major output of the 3 remaining heads
    q, k, v = (_heads(got[n], layout, 3).contiguous() for n in ("q_lif", "k_lif", "v_lif"))
    assert torch.equal(got["attn_in"], _merge(_official(q, k, v, attn.scale, layout), layout))
