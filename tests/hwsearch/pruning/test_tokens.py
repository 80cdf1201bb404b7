"""Token pruning with a package token, and T, as plan axes: the selector, the schedule, exactness of the
analytic counts against the model with tokens removed (fvcore MACs, monitored LIF outputs), keep-all
identity, save/load, search-space variables. Real spikingjelly neurons; BN-calibrated models so that
output comparisons are not vacuous."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional

from costmodels import AnalyticCostModel, MeasuredCostModel, example_input, plan_widths
from hwsearch.search.prefix import prefix_length, touched_modules
from hwsearch.pruning import (
    ChannelGroup, PlanError, PruningPlan, TimeGroup, TokenGroup, groups_of, load_pruned, prune, save_pruned,
)
from hwsearch.pruning._tokens import token_schedule
from hwsearch.search.encoding import PlanEncoding
from hwsearch.testing import calibrate_bn
from search_spaces import create_model
from search_spaces.tokens import TokenSelector, from_tokens, to_tokens

#: small models of every family and layout with token blocks (as tests/costmodels/test_measured.py)
SMALL = {
    "spikformer-imagenet": ("spikformer-8-384", dict(embed_dim=32, num_heads=4, depth=2, img_size=32, num_classes=10,
                                                     T=2)),
    "spikformer-cifar": ("spikformer-cifar10-4-384", dict(embed_dim=32, num_heads=4, depth=2, img_size=16, T=2)),
    "spikformer-dvs": ("spikformer-cifar10dvs-2-256", dict(embed_dim=32, num_heads=4, depth=2, img_size=32, T=2)),
    "sdt-cifar": ("sdt-cifar10-2-256", dict(embed_dim=32, num_heads=4, depth=2, img_size=16, T=2)),
    "sdt-imagenet": ("sdt-8-384", dict(embed_dim=32, num_heads=4, depth=2, img_size=32, num_classes=10, T=2)),
    "qkformer-imagenet": ("qkformer-10-384", dict(img_size=32, embed_dim=32, num_heads=2, num_classes=10, depth=5,
                                                  T=2)),
    "qkformer-cifar": ("qkformer-cifar10-4-384", dict(img_size=16, embed_dim=32, depth=4, T=2)),
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _calibrated(case: str, batch: int = 4) -> tuple[torch.nn.Module, torch.Tensor, dict]:
    name, kw = SMALL[case]
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    x = example_input(model, batch, seed=1)
    calibrate_bn(model, x)
    return model, x, kw


@torch.no_grad()
def _run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    functional.reset_net(model)
    y = model(x)
    functional.reset_net(model)
    return y


def test_schedule_composes_keep_ratios_and_counts_the_package() -> None:
    flow = token_schedule(64, [(48, True), (64, True), (32, True), (1, False)])
    assert [(p.image, p.merged, p.package, p.tokens) for p in flow] == [
        (48, 16, True, 49), (48, 0, True, 49), (24, 25, True, 25), (24, 0, True, 25)]
    assert [p.active for p in token_schedule(8, [(8, True), (7, True), (1, True)])] == [False, True, True]
    assert token_schedule(8, [(1, True), (1, True)])[1].merged == 0  # 1 token left: nothing more to prune


def test_selector_keeps_the_most_active_tokens_and_packages_the_rest() -> None:
    # [T=2, B=1, N=4, C=2] (layout nc); token activities 4, 0, 6, 2
    x = torch.tensor([[[[1., 1.], [0., 0.], [2., 1.], [1., 0.]]], [[[1., 1.], [0., 0.], [1., 2.], [0., 1.]]]])
    sel = TokenSelector(count=2, width=4, layout="nc")
    y = sel(x)
    assert y.shape == (2, 1, 3, 2)
    assert torch.equal(y[:, :, :2], x[:, :, [0, 2]])  # kept in their original order
    # package: the pruned tokens 1 (activity 0) and 3 (activity 2), weighted by activity: token 3 itself
    assert torch.equal(y[:, :, 2], x[:, :, 3])
    # a second selection merges the old package (weight = its activity) with the newly pruned token
    z = TokenSelector(count=2, width=4, layout="nc", has_package=True)(y)  # keeps 1 of the 2 image tokens
    assert z.shape == (2, 1, 2, 2) and torch.equal(z[:, :, 0], x[:, :, 2])
    w = torch.tensor([4.0, 2.0]) / 6.0  # token 0 (activity 4) and the package (activity 2)
    assert torch.allclose(z[:, :, 1], w[0] * x[:, :, 0] + w[1] * x[:, :, 3])
    # all-silent tokens merge into a zero package
    assert torch.equal(TokenSelector(count=1, width=2, layout="nc")(torch.zeros(2, 1, 2, 3)), torch.zeros(2, 1, 2, 3))


@pytest.mark.parametrize("layout", ["cfhw", "nc", "cn"])
def test_layouts_round_trip_and_select_the_same_tokens(layout: str) -> None:
    gen = torch.Generator().manual_seed(0)
    canon = (torch.rand(2, 6, 3, 5, generator=gen) > 0.6).float()  # [B, N, T, C]
    x = {"cfhw": canon.permute(2, 0, 3, 1).reshape(3, 2, 5, 2, 3), "nc": canon.permute(2, 0, 1, 3),
         "cn": canon.permute(2, 0, 3, 1)}[layout]
    assert torch.equal(to_tokens(x, layout), canon)
    out = to_tokens(TokenSelector(count=3, width=6, layout=layout)(x), layout)
    ref = to_tokens(TokenSelector(count=3, width=6, layout="nc")(from_tokens(canon, "nc")), "nc")
    assert torch.equal(out, ref) and out.shape == (2, 4, 3, 5)


@pytest.mark.parametrize("case", sorted(SMALL))
def test_every_token_kept_is_bit_identical(case: str) -> None:
    """Token groups at full width and T at its trained value change nothing, also next to channel pruning."""
    model, x, kw = _calibrated(case)
    name = model.hwsearch_config
    groups = groups_of(model)
    work = {g.name: g.width for g in groups if isinstance(g, (TokenGroup, TimeGroup))}
    assert any(g.startswith(("block.", "stage3.")) for g in work)
    base = _run(model, x)
    assert base.std() > 0  # the calibrated model fires: the comparison is not vacuous
    same = prune(model, PruningPlan(model=name, keep=work, model_kwargs=kw), groups)
    assert torch.equal(_run(same, x), base)
    assert not any(n.endswith("token_select") for n, _ in same.named_modules())
    mlp = next(g for g in groups if isinstance(g, ChannelGroup) and g.kind == "mlp")
    channel = PruningPlan(model=name, keep={mlp.name: mlp.width // 2}, model_kwargs=kw)
    both = PruningPlan(model=name, keep={**work, mlp.name: mlp.width // 2}, model_kwargs=kw)
    assert torch.equal(_run(prune(model, both, groups), x), _run(prune(model, channel, groups), x))


@pytest.mark.parametrize("case", ["spikformer-cifar", "sdt-imagenet", "qkformer-cifar"])
def test_pruned_blocks_run_on_the_scheduled_tokens(case: str) -> None:
    model, x, kw = _calibrated(case)
    groups = groups_of(model)
    tokens = [g for g in groups if isinstance(g, TokenGroup)]
    N = tokens[0].width
    keep = {tokens[0].name: N // 2, tokens[1].name: N // 2, "T": 1}
    pruned = prune(model, PruningPlan(model=model.hwsearch_config, keep=keep, model_kwargs=kw), groups)
    seen: dict[str, tuple[int, ...]] = {}
    blocks = [g.block for g in tokens[:2]]
    hooks = [pruned.get_submodule(b).register_forward_hook(
        lambda m, a, o, b=b: seen.__setitem__(b, tuple(a[0].shape))) for b in blocks]
    out = _run(pruned, x)
    for h in hooks:
        h.remove()
    flat = {b: (s[2] if tokens[0].layout == "nc" else s[3] * s[4]) for b, s in seen.items()}
    assert flat == {blocks[0]: N // 2 + 1, blocks[1]: N // 4 + 1}  # kept image tokens + the package
    assert all(s[0] == 1 for s in seen.values()) and pruned.T == 1
    assert not torch.equal(out, _run(model, x))


@pytest.mark.parametrize("case", sorted(SMALL))
@given(data=st.data())
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_analytic_counts_equal_the_model_with_tokens_removed(case: str, data: st.DataObject) -> None:
    """Random token plans (every token group pruned, T and some channel groups too) on every family:
    params, dense MACs (fvcore: conv, linear, attention and package-merge matmuls), LIF output
    elements (spikingjelly monitors) and every per-layer row equal the analytic model's."""
    name, kw = SMALL[case]
    model = create_model(name, **kw)
    groups = groups_of(model)
    keep: dict[str, int] = {}
    for g in groups:
        if isinstance(g, (TokenGroup, TimeGroup)):
            keep[g.name] = data.draw(st.integers(g.min_width, g.width if isinstance(g, TimeGroup) else g.width - 1),
                                     label=g.name)
        elif isinstance(g, ChannelGroup) and g.kind in ("mlp", "embed") and data.draw(st.booleans(), label=g.name):
            keep[g.name] = data.draw(st.sampled_from(g.allowed_counts()), label=g.name)
    pruned = prune(model, PruningPlan(model=name, keep=keep, model_kwargs=kw), groups)
    measured = MeasuredCostModel().measure(pruned)
    analytic = AnalyticCostModel().cost(name, plan_widths(groups, pruned.hwsearch_plan), model_kwargs=kw)
    for field in ("params", "macs", "attention_macs", "nonspike_macs", "act_elements", "peak_activation_bytes", "T"):
        assert getattr(analytic, field) == getattr(measured, field), field
    rows = lambda c: {r.name: (r.kind, r.params, r.macs, r.act_elements, r.input_binary) for r in c.layers}  # noqa: E731
    assert rows(analytic) == rows(measured)
    assert any(r.name.endswith("token_select.matmul1") for r in measured.layers)


def test_macs_shrink_with_tokens_and_t_as_the_formulas_say() -> None:
    """Spikformer CIFAR block at N tokens: 12·N·D² (+ q/k/v/proj/MLP biases-free) and 2·N²·D attention
    per step; halving the tokens before block 1 and T = 1 of 4 change exactly those terms."""
    m = AnalyticCostModel()
    name = "spikformer-digits-2-64"
    full = m.cost(name)
    D, N, T = 64, 64, 4
    half = m.cost(name, {"block.1.tokens": 32})
    n = 33  # 32 kept + the package
    block = lambda n: 12 * n * D * D + 2 * n * n * D  # noqa: E731  (linear layers + the two attention matmuls)
    merge = 32 * D  # the package merges the 32 pruned tokens, D channels each
    assert full.macs - half.macs == T * (block(N) - block(n) - merge)
    assert full.act_elements - half.act_elements == T * 10 * D * (N - n)  # 10·N·D spikes per block per step
    one = m.cost(name, {"T": 1})
    assert one.T == 1 and one.macs * T == full.macs + (T - 1) * D * 10  # the head runs once per image
    assert one.act_elements * T == full.act_elements


def test_plan_validation_is_one_line() -> None:
    model = create_model("spikformer-digits-2-64")
    with pytest.raises(PlanError, match=r"keeps 0 of 64 tokens in block.0.tokens \(allowed 1..64\)"):
        prune(model, PruningPlan(model="spikformer-digits-2-64", keep={"block.0.tokens": 0}))
    with pytest.raises(PlanError, match=r"keeps 5 of 4 time steps in T"):
        prune(model, PruningPlan(model="spikformer-digits-2-64", keep={"T": 5}))
    assert "T" not in {g.name for g in groups_of(create_model("spikformer-cifar10dvs-2-256", embed_dim=32, depth=1,
                                                                      num_heads=4))}  # DVS: T from the frames


def test_save_and_load_pruned_keep_tokens_and_t(tmp_path) -> None:
    model, x, kw = _calibrated("spikformer-cifar")
    plan = PruningPlan(model=model.hwsearch_config, keep={"block.0.tokens": 12, "block.1.tokens": 8, "T": 1,
                                                          "block.0.mlp.hidden": 64}, model_kwargs=kw)
    pruned = prune(model, plan)
    save_pruned(pruned, tmp_path / "p")
    again = load_pruned(tmp_path / "p")
    assert again.T == 1 and again.block[1].token_select.count == 8
    assert torch.equal(_run(again, x), _run(pruned, x))
    saved = PruningPlan.load(tmp_path / "p" / "plan.json")
    assert saved.counts()["block.1.tokens"] == 8 and saved.counts()["T"] == 1


def test_search_space_has_a_variable_per_token_block_and_a_level_per_t() -> None:
    model = create_model("spikformer-digits-2-64")
    space = PlanEncoding.from_model(model, axes=("mlp", "tokens", "time"), rates=(0.25, 0.5, 0.75))
    assert space.names() == ["block.0.mlp.hidden", "block.1.mlp.hidden", "block.0.tokens", "block.1.tokens", "T"]
    assert space["block.0.tokens"].levels == (64, 48, 32, 16) and space["T"].levels == (4, 3, 2, 1)
    assert space["T"].kind == "time" and space["block.1.tokens"].params == 0
    plan = space.plan({"block.1.tokens": 2, "T": 3})
    pruned = prune(model, plan)
    assert pruned.T == 1 and pruned.block[1].token_select.count == 32


def test_prefix_reuse_stops_before_the_first_selection() -> None:
    groups = groups_of(create_model("spikformer-digits-2-64"))
    chain = ("patch_embed", "block.0", "block.1")
    assert prefix_length(chain, touched_modules(groups, {"block.1.tokens": 32})) == 2
    assert prefix_length(chain, touched_modules(groups, {"block.1.tokens": 64})) == 3
    assert prefix_length(chain, touched_modules(groups, {"T": 2})) == 0


def test_report_and_comparison_show_the_kept_tokens() -> None:
    from hwsearch.reports.report import _tokens_cell, plan_token_flow, token_flow, work_columns
    from hwsearch.search.results import Candidate, Result

    space = PlanEncoding.from_model(create_model("spikformer-digits-2-64"), axes=("mlp", "tokens", "time"),
                                   rates=(0.25, 0.5, 0.75))
    levels = {"block.0.tokens": 2, "block.1.tokens": 2, "T": 1}  # 32 of 64, then half again; T = 3
    flow = token_flow(space, levels)
    assert flow == {"block.0": "32 + 1", "block.1": "16 + 1", "T": "T = 3"}
    assert _tokens_cell(flow, "block.1.mlp.hidden") == "16 + 1" and _tokens_cell(flow, "patch_embed.c1") == "all"
    best = Result(candidate=Candidate(levels=levels), status="ok", accuracy=90.0, acc_drop=1.0, costs={})
    assert work_columns(space, best) == {"tokens": "block.0: 32 + 1; block.1: 16 + 1", "T": "3"}
    assert token_flow(PlanEncoding.from_model(create_model("spikformer-digits-2-64")), {}) == {}
    plan = prune(create_model("spikformer-digits-2-64"), space.plan(levels)).hwsearch_plan
    assert plan_token_flow(plan) == "tokens per block (kept + package): block.0 32 + 1, block.1 16 + 1; T = 3"


def test_cost_command_prints_the_token_flow(capsys, demo_study_path, tmp_path) -> None:  # noqa: ANN001
    from hwsearch.cli import main

    PruningPlan(model="spikformer-digits-2-64", keep={"block.1.tokens": 16, "T": 2}).save(tmp_path / "p.json")
    assert main(["cost", "--study", str(demo_study_path), "--plan", str(tmp_path / "p.json"), "--measured"]) == 0
    out = capsys.readouterr().out
    assert "tokens per block (kept + package): block.0 64, block.1 16 + 1; T = 2" in out and "T=2" in out


@pytest.mark.parametrize("case", ["spikformer-imagenet", "sdt-cifar", "qkformer-cifar"])
def test_sops_follow_the_kept_tokens_and_t(case: str) -> None:
    """Firing rates measured on the token-pruned, calibrated model give the same SOPs in both cost models."""
    model, x, kw = _calibrated(case)
    groups = groups_of(model)
    tokens = [g for g in groups if isinstance(g, TokenGroup)]
    keep = {tokens[0].name: tokens[0].width // 2, tokens[1].name: tokens[1].width // 2, "T": 1}
    pruned = prune(model, PruningPlan(model=model.hwsearch_config, keep=keep, model_kwargs=kw), groups)
    measured = MeasuredCostModel(calibration=[x]).measure(pruned)
    rates = measured.firing_rates()
    assert sum(r > 0 for r in rates.values()) > len(rates) // 2  # calibrated: the comparison is not vacuous
    analytic = AnalyticCostModel(firing_rates=rates).cost(pruned.hwsearch_plan)
    assert measured.sops > 0 and analytic.sops == pytest.approx(measured.sops, rel=1e-12)
    full = AnalyticCostModel(firing_rates=rates).cost(model.hwsearch_config, model_kwargs=kw)
    assert analytic.sops < full.sops / 2  # T = 1 of 2, fewer tokens


def test_report_table_has_a_tokens_column() -> None:
    from types import SimpleNamespace

    from hwsearch.reports.report import report_markdown
    from hwsearch.search.results import Candidate, Constraints, Result

    space = PlanEncoding.from_model(create_model("spikformer-digits-2-64"), axes=("mlp", "tokens"), rates=(0.5,))
    best = Result(candidate=Candidate(levels={"block.0.tokens": 1}), status="ok", accuracy=90.0, acc_drop=1.0,
                  costs={"param_mb": 0.6, "macs_g": 0.07, "act_mb": 0.07, "params": 1.0})
    base = Result(candidate=Candidate(levels={}), status="ok", accuracy=91.0, acc_drop=0.0, costs=dict(best.costs))
    data = SimpleNamespace(eval_split="val", confirm_split=None, test_split=None, calib_split="train")
    setup = SimpleNamespace(constraints=Constraints(), space=space, study=SimpleNamespace(name="demo", data=data),
                            spec=SimpleNamespace(bn_recalibrate=0, stop_drop=None), run_dir=Path("."))
    res = SimpleNamespace(baseline=base, best=best, interrupted=False, strategy="x", results=[best], notes=[],
                          confirmations=[], objective="accuracy", evaluations=1, seconds=1.0, profile_evaluations=0,
                          profile_source="", baseline_confirm_accuracy=None, best_confirm_accuracy=None,
                          baseline_test_accuracy=None, best_test_accuracy=None, confirm_drop=None, test_drop=None,
                          best_model=None, run_dir=None)
    text = report_markdown(setup, res)
    assert "| group | kind | width | kept | rate | tokens |" in text
    assert "| block.0.tokens | tokens | 64 | 32 | 0.50 | 32 + 1 |" in text
    assert "| block.1.mlp.hidden | mlp | 256 | 256 | 0.00 | 32 + 1 |" in text
