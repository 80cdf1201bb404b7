"""The fast LIF inference path (search_spaces/_fastlif.py) is spikingjelly 2.0's LIFNode, bit for bit.

Every comparison is against spikingjelly itself: a plain ``neuron.LIFNode`` built here with the official
arguments, or the same model run under ``reference_lif()``. ``sj_calls`` counts calls of spikingjelly's
``functional.lif_multi_step`` so that each test also proves which path actually ran.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, monitor, neuron, surrogate
from torch.utils._python_dispatch import TorchDispatchMode

import hwsearch
from hwsearch.testing.calibrate import calibrate_bn
from hwsearch.testing.families import TINY_LAYOUTS
from search_spaces import create_model
from search_spaces._fastlif import REFERENCE_LIF_ENV, FastLIFNode, reference_lif
from search_spaces._layers import lif

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "official-tiny"
DEMO_CKPT = REPO / "studies" / "checkpoints" / "spikformer-digits-2-64.pth"
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@pytest.fixture(autouse=True)
def _one_thread_fast_path(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202
    monkeypatch.delenv(REFERENCE_LIF_ENV, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sj_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Number of spikingjelly ``lif_multi_step`` calls (LIFNode's multi-step path), as a growing list."""
    calls: list[int] = []
    real = functional.lif_multi_step

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(functional, "lif_multi_step", counting)
    return calls


def _reference_node(v_threshold: float) -> neuron.LIFNode:
    """The official neuron, written out independently of ``lif()``."""
    return neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=v_threshold, v_reset=0.0,
                          surrogate_function=surrogate.Sigmoid(alpha=4.0), detach_reset=True, step_mode="m")


def _inputs(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Half Gaussian, half multiples of 1/4 in [-2, 2]: negative inputs and many charges exactly at 0.5 and 1."""
    g = torch.Generator().manual_seed(seed)
    cont = torch.randn(shape, generator=g, dtype=torch.float64) * 1.5
    grid = torch.randint(-8, 9, shape, generator=g).double() / 4
    return torch.where(torch.rand(shape, generator=g) < 0.5, grid, cont).to(dtype)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, dtype, shape and sign of every zero (stricter than ``torch.equal``)."""
    return (a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
            and torch.equal(torch.signbit(a), torch.signbit(b)))


# --------------------------------------------------------------------------------------------------
# Neuron level
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("v_threshold", [1.0, 0.5])
@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (2, 130_001), (1, 6), (8, 2, 4, 3, 3)])
def test_spikes_and_state_equal_spikingjelly(shape: tuple[int, ...], v_threshold: float, dtype: torch.dtype,
                                             sj_calls: list[int]) -> None:
    fast, ref = lif(v_threshold), _reference_node(v_threshold)
    fast.eval(), ref.eval()
    x1, x2 = _inputs(shape, dtype, seed=1), _inputs(shape, dtype, seed=2)
    x1.view(-1)[:2] = torch.tensor([2 * v_threshold, -1.5])  # v = 0: charge exactly at threshold; negative
    spikes = []
    with torch.no_grad():
        for x in (x1, x2, x1):  # the second and third call continue from the state left by the previous one
            s_fast, s_ref = fast(x), ref(x)
            assert _same_bits(s_fast, s_ref) and s_fast.is_contiguous()
            assert _same_bits(fast.v, ref.v)
            spikes.append(s_ref)
        assert spikes[0][0].view(-1)[:2].tolist() == [1.0, 0.0]
        assert 0 < sum(s.sum().item() for s in spikes) < 3 * s_ref.numel()
        functional.reset_net(fast), functional.reset_net(ref)
        assert fast.v == ref.v == 0.0
        assert _same_bits(fast(x2), ref(x2)) and _same_bits(fast.v, ref.v)
    assert len(sj_calls) == 4  # only the plain LIFNode went through spikingjelly


def test_special_values_follow_spikingjelly(sj_calls: list[int]) -> None:
    x = _inputs((4, 64))
    x[0, :4] = float("inf")
    x[1, 4:8] = float("-inf")
    x[3, 8:12] = float("-inf")  # at the last step: the final v is -inf, not nan
    x[2, 12:16] = float("nan")
    x[:, 16:20] = -0.0
    fast, ref = lif(), _reference_node(1.0)
    with torch.no_grad():
        s_fast, s_ref = fast(x), ref(x)
    assert _same_bits(s_fast, s_ref)
    v_fast, v_ref = fast.v, ref.v
    assert torch.equal(v_fast.isnan(), v_ref.isnan()) and v_ref.isnan().any()
    keep = ~v_ref.isnan()
    assert _same_bits(v_fast[keep], v_ref[keep]) and (v_ref == float("-inf")).any()
    assert len(sj_calls) == 1


def test_layouts_batch_change_and_single_step(sj_calls: list[int]) -> None:
    fast, ref = lif(), _reference_node(1.0)
    x = _inputs((4, 3, 6, 5)).permute(0, 1, 3, 2)  # the CIFAR Spikformer feeds one such transposed view
    with torch.no_grad():
        assert _same_bits(fast(x), ref(x)) and _same_bits(fast.v, ref.v) and fast.v.stride() == ref.v.stride()
        y = _inputs((4, 2, 6, 5), seed=3)  # another batch size without reset: both restart from v_reset
        assert _same_bits(fast(y), ref(y)) and _same_bits(fast.v, ref.v)
        functional.reset_net(fast), functional.reset_net(ref)
        functional.set_step_mode(fast, "s"), functional.set_step_mode(ref, "s")
        for t in range(4):
            assert _same_bits(fast(y[t]), ref(y[t])) and _same_bits(fast.v, ref.v)
    assert len(sj_calls) == 2  # the two multi-step calls of the plain LIFNode


def test_module_surface_is_lifnode_s() -> None:
    fast, ref = lif(0.5), _reference_node(0.5)
    assert isinstance(fast, neuron.LIFNode) and type(fast) is FastLIFNode
    assert repr(fast) == repr(ref) and repr(fast).startswith("LIFNode(\n  v_threshold=0.5, v_reset=0.0, detach")
    assert fast.state_dict() == {} and list(fast.named_memories()) == [("v", 0.0)]
    assert fast.step_mode == "m" and fast.supported_step_mode() == ref.supported_step_mode()
    x = _inputs((4, 3, 8))
    with torch.no_grad():
        fast(x)
        fast.reset()
        for clone in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
            assert type(clone) is FastLIFNode and clone.v == 0.0
            assert _same_bits(clone(x), ref(x)) and _same_bits(clone.v, ref.v)
            ref.reset()


def test_reference_forced_by_context_and_environment(monkeypatch: pytest.MonkeyPatch, sj_calls: list[int]) -> None:
    node, x = lif(), _inputs((4, 10))
    with torch.no_grad():
        node(x), node.reset()
        assert len(sj_calls) == 0
        with reference_lif():
            node(x), node.reset()
        assert len(sj_calls) == 1
        node(x), node.reset()  # the context ended
        monkeypatch.setenv(REFERENCE_LIF_ENV, "1")  # read at call time
        node(x), node.reset()
        assert len(sj_calls) == 2
        monkeypatch.setenv(REFERENCE_LIF_ENV, "0")
        node(x), node.reset()
        assert len(sj_calls) == 2


def test_dispatch_modes_see_spikingjelly_ops(sj_calls: list[int]) -> None:
    """Op counters (spikingjelly's op_counter, FakeTensor) record the op stream spikingjelly produces."""

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.calls.append(str(func))
            return func(*args, **(kwargs or {}))

    x = _inputs((4, 10))
    with torch.no_grad(), Ops() as fast_ops:
        lif()(x)
    with torch.no_grad(), Ops() as ref_ops:
        _reference_node(1.0)(x)
    assert len(sj_calls) == 2 and fast_ops.calls == ref_ops.calls and "aten.ge.Scalar" in ref_ops.calls


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_go_through_spikingjelly_surrogate(mode: str, sj_calls: list[int]) -> None:
    """Training with grad, and eval with grad (the Taylor criterion): spikingjelly's path, same gradients."""
    w = torch.randn(4, 3, 9, generator=torch.Generator().manual_seed(5))
    grads = []
    for node in (lif(), _reference_node(1.0)):
        node.train(mode == "train")
        x = _inputs((4, 3, 9), seed=4).requires_grad_()
        s = node(x)
        s2 = node(x * 0.5)  # second call continues from a state that carries a graph
        ((s * w).sum() + (s2 * w).sum() + node.v.square().sum()).backward()
        assert s.requires_grad
        grads.append(x.grad)
    assert _same_bits(*grads) and grads[0].abs().sum() > 0
    assert len(sj_calls) == 4


def test_training_mode_without_grad_takes_fast_path(sj_calls: list[int]) -> None:
    node = lif().train()
    with torch.no_grad():
        node(_inputs((4, 10)))
    x = _inputs((4, 10))  # grad enabled, eval, nothing requires grad: fast too
    node.reset()
    node.eval()(x)
    assert len(sj_calls) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uses_spikingjelly_kernel(sj_calls: list[int]) -> None:
    """On CUDA spikingjelly's fused kernel is already one pass: FastLIFNode leaves it in charge."""
    x = _inputs((4, 3, 50)).cuda()
    fast, ref = lif().cuda(), _reference_node(1.0).cuda()
    with torch.no_grad():
        assert _same_bits(fast(x), ref(x)) and _same_bits(fast.v, ref.v)
    assert len(sj_calls) == 2


# --------------------------------------------------------------------------------------------------
# Every family: calibrated models, logits and every LIF output
# --------------------------------------------------------------------------------------------------

#: one tiny model per (family, layout): the family contract's table
FAMILIES = {f"{family}-{layout}": entry for (family, layout), entry in TINY_LAYOUTS.items()}


def _outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """Logits and the output spikes of every LIF call of one eval, no_grad forward from reset state."""
    with monitor.OutputMonitor(model, neuron.BaseNode) as mon, torch.no_grad():
        functional.reset_net(model)
        logits = model(x)
        functional.reset_net(model)
        spikes = {name: list(mon[name]) for name in mon.monitored_layers if mon[name]}
    return logits, spikes


def _assert_paths_agree(model: nn.Module, x: torch.Tensor, sj_calls: list[int]) -> dict[str, float]:
    """Fast and reference forwards give the same logits and spikes; returns each LIF's firing rate."""
    with reference_lif():
        ref_logits, ref_spikes = _outputs(model, x)
    n_ref = len(sj_calls)
    logits, spikes = _outputs(model, x)
    assert len(sj_calls) == n_ref > 0  # the reference went through spikingjelly, the fast path did not
    assert torch.equal(logits, ref_logits)
    assert spikes.keys() == ref_spikes.keys() and sum(map(len, spikes.values())) == n_ref
    for name, seq in spikes.items():
        assert len(seq) == len(ref_spikes[name]), name
        assert all(_same_bits(a, b) for a, b in zip(seq, ref_spikes[name], strict=True)), name
    return {name: torch.cat([s.flatten() for s in seq]).float().mean().item() for name, seq in spikes.items()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_fast_path_equals_reference(family: str, sj_calls: list[int]) -> None:
    name, overrides, shape = FAMILIES[family]
    torch.manual_seed(0)
    model = create_model(name, **overrides)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(shape, generator=g) < 0.3).float() if len(shape) == 5 else torch.rand(shape, generator=g)
    calibrate_bn(model, x)
    rates = _assert_paths_agree(model, x, sj_calls)
    busy = [r for r in rates.values() if 0.01 <= r <= 0.99]
    assert len(busy) >= 0.8 * len(rates) and min(rates.values()) > 0.0, rates
    clone = copy.deepcopy(model)  # what Ray workers get; the reset cache must not point at the original
    functional.invalidate_reset_cache(clone)
    assert torch.equal(_outputs(clone, x)[0], _outputs(model, x)[0])


def test_demo_checkpoint_fast_path_equals_reference(sj_calls: list[int]) -> None:
    from hwsearch.data import build_dataset

    model = hwsearch.load_model(DEMO_CKPT).model
    ds = build_dataset("digits", split="val")
    x = torch.stack([ds[i][0] for i in range(8)])
    rates = _assert_paths_agree(model, x, sj_calls)
    assert len(rates) == 5 + 7 * 2 and min(rates.values()) > 0.0


# --------------------------------------------------------------------------------------------------
# Official test vectors still reproduce
# --------------------------------------------------------------------------------------------------

# fixture -> (registered config, overrides reproducing the manifest's constructor call), as in
# test_spikformer.py / test_sdt.py / test_qkformer.py.
TINY = {
    "tiny-spikformer-imagenet-1-64": ("spikformer-8-384", dict(embed_dim=64, num_heads=4, depth=1)),
    "tiny-spikformer-cifar-1-64": ("spikformer-cifar10-4-384", dict(embed_dim=64, num_heads=4, depth=1)),
    "tiny-sdt-cifar-1-64": ("sdt-cifar10-2-256", dict(embed_dim=64, num_heads=4, depth=1, num_classes=10)),
    "tiny-sdt-imagenet-1-64": ("sdt-8-384", dict(img_size=64, embed_dim=64, num_heads=4, depth=1, num_classes=10)),
    "tiny-qkformer-imagenet-4-64": ("qkformer-10-384",
                                    dict(img_size=64, embed_dim=64, num_heads=4, num_classes=10, depth=4, T=4)),
    "tiny-qkformer-cifar-3-64": ("qkformer-cifar10-4-384", dict(embed_dim=64, depth=3, num_classes=10, T=4)),
}


def _load_tiny(fixture: str) -> tuple[nn.Module, dict]:
    cfg, overrides = TINY[fixture]
    model = create_model(cfg, **overrides)
    model.load_state_dict(torch.load(DATA / f"{fixture}.pth", weights_only=True), strict=True)
    return model.eval(), torch.load(DATA / f"{fixture}.io.pt", weights_only=True)


@pytest.mark.parametrize("fixture", sorted(TINY))
def test_official_vectors_with_fast_path(fixture: str, sj_calls: list[int]) -> None:
    """Fast == reference bit for bit; both match the official logits up to the head GEMM's rounding.

    (One flipped spike moves a logit by ~1e-3; the BLAS rounding of the head stays below 1e-6. The
    family test files bound that rounding exactly; the subprocess test below checks bit equality.)
    """
    model, io = _load_tiny(fixture)
    _assert_paths_agree(model, io["input"], sj_calls)
    out = _outputs(model, io["input"])[0]
    assert out.shape == io["output"].shape
    assert (out - io["output"]).abs().max().item() < 1e-6


_BITEXACT_SCRIPT = r"""
import json, torch
torch.set_num_threads(1)
from spikingjelly.activation_based import functional
from search_spaces import create_model
from search_spaces._fastlif import reference_lif
res = {}
for name, (cfg, kw) in TINY.items():
    m = create_model(cfg, **kw)
    m.load_state_dict(torch.load(f"{DATA}/{name}.pth", weights_only=True), strict=True)
    io = torch.load(f"{DATA}/{name}.io.pt", weights_only=True)
    m.eval()
    outs = []
    for forced in (False, True):
        functional.reset_net(m)
        with torch.no_grad():
            if forced:
                with reference_lif():
                    outs.append(m(io["input"]))
            else:
                outs.append(m(io["input"]))
    res[name] = [torch.equal(outs[0], io["output"]), torch.equal(outs[0], outs[1])]
print("RESULT" + json.dumps(res))
"""


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="needs MKL's conditional numerical reproducibility")
def test_official_vectors_bit_exact_with_fast_path() -> None:
    """With MKL's portable kernels (``MKL_CBWR=COMPATIBLE``, one thread) the fast path gives the official
    Spikformer logits bit for bit (as ``test_spikformer.py`` requires of the reference path), and the
    reference path's logits for every fixture."""
    script = _BITEXACT_SCRIPT.replace("TINY", repr(TINY)).replace("{DATA}", str(DATA))
    env = dict(os.environ, MKL_CBWR="COMPATIBLE", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop(REFERENCE_LIF_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))[len("RESULT"):])
    assert all(same_as_reference for _, same_as_reference in res.values()), res
    assert res["tiny-spikformer-imagenet-1-64"][0] and res["tiny-spikformer-cifar-1-64"][0], res
