"""Prefix reuse (hwsearch/search/prefix.py): replayed prefixes give a full forward's logits and spikes, bit for bit.

Models are random and BN-calibrated so that every LIF fires (a fresh SViT is silent and would prove
nothing); the pruned model is compared with itself run in full, with ``torch.equal``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, monitor, neuron

from hwsearch.search.prefix import PrefixCache, pack, prefix_length, touched_modules, trace_chain
from hwsearch.pruning import PruningPlan, groups_of, prune, resolve_plan
from hwsearch.testing.calibrate import calibrate_bn, firing_rates
from search_spaces import create_model

SMALL = dict(embed_dim=64, num_classes=10, T=2)
# family case -> (registry name, overrides, input shape, pruned group, expected chain prefix kept)
CASES = {
    "spikformer-imagenet": ("spikformer-8-384", dict(SMALL, num_heads=4, depth=2), (2, 3, 64, 64),
                            "block.1.mlp.hidden", ("patch_embed", "block.0")),
    "spikformer-cifar": ("spikformer-cifar10-4-384", dict(SMALL, num_heads=4, depth=2), (2, 3, 32, 32),
                         "block.1.attn.heads", ("patch_embed", "block.0")),
    "spikformer-dvs": ("spikformer-cifar10dvs-2-256", dict(SMALL, num_heads=4, depth=2), (2, 2, 2, 64, 64),
                       "block.1.mlp.hidden", ("patch_embed", "block.0")),
    "sdt-cifar": ("sdt-cifar10-2-256", dict(SMALL, num_heads=4, depth=2), (2, 3, 32, 32),
                  "block.1.attn.qkv", ("patch_embed", "block.0")),
    "sdt-imagenet": ("sdt-8-384", dict(SMALL, img_size=64, num_heads=4, depth=2), (2, 3, 64, 64),
                     "block.1.mlp.hidden", ("patch_embed", "block.0")),
    "qkformer-cifar": ("qkformer-cifar10-4-384", dict(SMALL, depth=3), (2, 3, 32, 32),
                       "stage3.0.mlp.hidden", ("patch_embed1", "stage1.0", "patch_embed2", "stage2.0", "patch_embed3")),
    "qkformer-imagenet": ("qkformer-10-384", dict(SMALL, img_size=64, num_heads=4, depth=4), (2, 3, 64, 64),
                          "stage2.0.tssa.heads", ("patch_embed1", "stage1.0", "patch_embed2")),
}


@pytest.fixture(autouse=True)
def _one_thread():  # noqa: ANN202 - tiny models: extra threads only contend on shared CPUs
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spiking_model(name: str, overrides: dict, shape: tuple[int, ...]) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model(name, **overrides)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(shape, generator=g) < 0.3).float() if len(shape) == 5 else torch.rand(shape, generator=g)
    calibrate_bn(model, x)
    rates = firing_rates(model, x)
    assert min(rates.values()) > 0.0, [n for n, r in rates.items() if r == 0]
    return model, x


def _run(model: nn.Module, fn) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:  # noqa: ANN001
    """Logits of ``fn()`` and the spikes of every LIF call, from reset state, no gradients."""
    functional.reset_net(model)
    with torch.no_grad(), monitor.OutputMonitor(model, neuron.BaseNode, function_on_output=lambda s: s.clone()) as mon:
        logits = fn()
        spikes = {n: list(mon[n]) for n in mon.monitored_layers}
    functional.reset_net(model)
    return logits, spikes


@pytest.mark.parametrize("case", sorted(CASES))
def test_replayed_prefix_equals_full_forward(case: str) -> None:
    name, overrides, shape, group, kept_prefix = CASES[case]
    source, x = _spiking_model(name, overrides, shape)
    groups = groups_of(source)
    width = next(g.width for g in groups if g.name == group)
    plan = resolve_plan(source, PruningPlan(model=name, keep={group: width // 2}), groups)
    pruned = prune(source, plan, groups).eval()

    chain = trace_chain(source, x[:1])
    k = prefix_length(chain, touched_modules(groups, plan.keep))
    assert chain[:k] == kept_prefix and k < len(chain)

    full_logits, full_spikes = _run(pruned, lambda: pruned(x))
    captured: list[torch.Tensor] = []
    handle = pruned.get_submodule(chain[k - 1]).register_forward_hook(lambda m, a, out: captured.append(out.clone()))
    functional.reset_net(pruned)
    with torch.no_grad():
        pruned(x)
    handle.remove()
    functional.reset_net(pruned)

    cache = PrefixCache(chain)
    miss_logits, _ = _run(pruned, lambda: cache.forward(pruned, x, k=k, index=0))  # computes and stores
    hit_logits, hit_spikes = _run(pruned, lambda: cache.forward(pruned, x, k=k, index=0))  # replays
    assert (cache.stats.misses, cache.stats.hits, cache.stats.entries) == (1, 1, 1)
    stored = cache._store[(k, 0)]
    assert torch.equal(stored.unpack(), captured[0]) and stored.unpack().stride() == captured[0].stride()

    assert torch.equal(miss_logits, full_logits) and torch.equal(hit_logits, full_logits)
    in_prefix = [n for n in full_spikes if any(n == p or n.startswith(p + ".") for p in chain[:k])]
    suffix = [n for n in full_spikes if n not in in_prefix and full_spikes[n]]  # LIFs the forward calls
    assert in_prefix and suffix
    assert all(not hit_spikes[n] for n in in_prefix)  # the prefix's neurons did not run
    for n in suffix:
        assert len(hit_spikes[n]) == len(full_spikes[n]) > 0, n
        assert all(torch.equal(a, b) for a, b in zip(hit_spikes[n], full_spikes[n], strict=True)), n
    assert any(float(s.mean()) > 0 for n in suffix for s in hit_spikes[n])
    # the model is whole again afterwards: a plain forward still equals the full one
    assert torch.equal(_run(pruned, lambda: pruned(x))[0], full_logits)


def test_pack_is_exact_and_compact() -> None:
    g = torch.Generator().manual_seed(0)
    spikes = (torch.rand(4, 3, 5, 7, generator=g) < 0.4).float()
    counts = torch.randint(0, 4, (4, 6, 8), generator=g).float().transpose(1, 2)  # a transposed view
    reals = torch.randn(3, 5, generator=g)
    signed_zero = torch.tensor([0.0, -0.0, 1.0])
    for t, kind, nbytes in ((spikes, "bits", (spikes.numel() + 7) // 8), (counts, "uint8", counts.numel()),
                            (reals, "raw", reals.numel() * 4), (signed_zero, "raw", 12)):
        p = pack(t)
        out = p.unpack()
        assert (p.kind, p.nbytes) == (kind, nbytes)
        assert torch.equal(out, t) and out.stride() == t.stride() and out.dtype == t.dtype
        assert torch.equal(torch.signbit(out), torch.signbit(t))


def test_prefix_length_stops_at_the_first_touched_module() -> None:
    chain = ("patch_embed", "block.0", "block.1")
    assert prefix_length(chain, []) == 3
    assert prefix_length(chain, ["block.1.mlp.fc1_linear", "head"]) == 2
    assert prefix_length(chain, ["block"]) == 1  # a touched ModuleList holds every block
    assert prefix_length(chain, ["patch_embed.proj_conv3"]) == 0
    assert prefix_length(chain, [""]) == 0  # an attribute of the model itself


def test_budget_full_stores_nothing_more() -> None:
    source, x = _spiking_model("spikformer-cifar10-4-384", dict(SMALL, num_heads=4, depth=2), (2, 3, 32, 32))
    cache = PrefixCache(trace_chain(source, x[:1]), budget_mb=1e-9)
    with torch.no_grad():
        first = cache.forward(source, x, k=2, index=0)  # stored: the budget was not yet reached
        functional.reset_net(source)
        cache.forward(source, x, k=2, index=1)
        functional.reset_net(source)
    assert cache.stats.entries == 1 and cache.stats.skipped == 1
    assert torch.equal(first, _run(source, lambda: source(x))[0])


@pytest.fixture(scope="module")
def demo_setup(quick_study_path, tmp_path_factory):  # noqa: ANN001, ANN201
    from hwsearch.search.session import prepare

    return prepare(quick_study_path, run_dir=tmp_path_factory.mktemp("prefix-run"), progress=False)


@pytest.mark.parametrize("bn", [0, 1])
def test_evaluator_with_reuse_matches_evaluator_without(demo_setup, bn: int) -> None:  # noqa: ANN001
    from dataclasses import replace

    from hwsearch.search.evaluation import Evaluator
    from hwsearch.search.results import Candidate

    spec = replace(demo_setup.spec, batches=demo_setup.spec.batches[:3], bn_recalibrate=bn, stop_drop=None)
    if bn:
        spec = replace(spec, calibration_batches=demo_setup.spec.batches[:bn])
    fast, plain = Evaluator(spec), Evaluator(replace(spec, prefix_cache_mb=0))
    assert fast.prefix is not None and fast.prefix.chain == ("patch_embed", "block.0", "block.1")
    assert plain.prefix is None
    cands = [Candidate(levels={"block.1.mlp.hidden": 5}), Candidate(levels={"block.1.attn.v": 3}),
             Candidate(levels={"block.0.mlp.hidden": 4}), Candidate(levels={"patch_embed.c2": 2}),
             Candidate(levels={"block.1.mlp.hidden": 5})]
    assert [fast.reusable_prefix(c) for c in cands] == [2, 2, 1, 0, 2]
    for c in cands:
        a, b = fast(c), plain(c)
        assert (a.status, a.accuracy, a.samples) == (b.status, b.accuracy, b.samples), c.levels
    n = len(spec.batches)
    assert fast.prefix.stats.hits == 2 * n and fast.prefix.stats.misses == 2 * n  # k=2 and k=1 stored once each


def test_token_and_t_candidates_reuse_the_prefix_before_their_first_selection(quick_study_path, tmp_path) -> None:  # noqa: ANN001
    from dataclasses import replace

    from hwsearch.search.session import prepare
    from hwsearch.search.evaluation import Evaluator
    from hwsearch.search.results import Candidate

    setup = prepare(quick_study_path, axes=("mlp", "tokens", "time"), run_dir=tmp_path, progress=False,
                    constraints={"param_mb": "none"})
    spec = replace(setup.spec, batches=setup.spec.batches[:2], stop_drop=None)
    fast, plain = Evaluator(spec), Evaluator(replace(spec, prefix_cache_mb=0))
    cands = [Candidate(levels={"block.1.tokens": 5}), Candidate(levels={"block.0.tokens": 3}),
             Candidate(levels={"T": 1}), Candidate(levels={"block.1.tokens": 5, "block.1.mlp.hidden": 3}),
             Candidate(levels={"block.1.tokens": 7})]
    assert [fast.reusable_prefix(c) for c in cands] == [2, 1, 0, 2, 2]
    for c in cands:
        a, b = fast(c), plain(c)
        assert (a.status, a.accuracy, a.samples, a.costs) == (b.status, b.accuracy, b.samples, b.costs), c.levels
    assert fast.prefix.stats.hits > 0
