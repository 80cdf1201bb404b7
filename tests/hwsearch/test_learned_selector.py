"""SPViT's learned token selector: exact costs (its scorer's parameters and MACs), activity-like ranking
at initialisation, and training by ``hwsearch finetune --token-selector learned`` with the keep-ratio loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from spikingjelly.activation_based import functional

import hwsearch
import hwsearch.data
import hwsearch.loading
from costmodels import AnalyticCostModel, MeasuredCostModel
from hwsearch.finetune import finetune
from hwsearch.pruning import PlanError, PruningPlan, load_pruned, prune, save_pruned
from hwsearch.pruning._tokens import keep_ratio_loss, learn_token_scores
from search_spaces import create_model
from search_spaces.tokens import LearnedScorer, TokenSelector

SMALL = {
    "spikformer-cifar": ("spikformer-cifar10-4-384", dict(embed_dim=32, num_heads=4, depth=2, img_size=16, T=2)),
    "sdt-imagenet": ("sdt-8-384", dict(embed_dim=32, num_heads=4, depth=2, img_size=32, num_classes=10, T=2)),
    "qkformer-cifar": ("qkformer-cifar10-4-384", dict(img_size=16, embed_dim=32, depth=4, T=2)),
}


@pytest.mark.parametrize("case", sorted(SMALL))
def test_learned_selector_costs_equal_the_model(case: str) -> None:
    name, kw = SMALL[case]
    model = create_model(name, **kw)
    tokens = [g for g in hwsearch.pruning.groups_of(model) if g.kind == "tokens"]
    keep = {tokens[0].name: tokens[0].width // 2, tokens[1].name: tokens[1].width // 2, "T": 1}
    plan = PruningPlan(model=name, keep=keep, model_kwargs=kw, token_score="learned")
    pruned = prune(model, plan)
    measured = MeasuredCostModel().measure(pruned)
    analytic = AnalyticCostModel().cost(pruned.hwsearch_plan)
    activity = AnalyticCostModel().cost(PruningPlan(model=name, keep=keep, model_kwargs=kw))
    assert analytic.params == measured.params == sum(p.numel() for p in pruned.parameters())
    assert analytic.params - activity.params == 2 * (32 * 4 + 4 + 4)  # two selectors: proj (C x 4 + 4), mix (4)
    for field in ("live_params", "macs", "nonspike_macs", "act_elements"):
        assert getattr(analytic, field) == getattr(measured, field), field
    rows = lambda c: {r.name: (r.kind, r.params, r.macs) for r in c.layers}  # noqa: E731
    assert rows(analytic) == rows(measured)


def test_learned_scorer_ranks_like_activity_at_initialisation() -> None:
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 3, 16, 8, generator=gen) > 0.7).float()  # [T, B, N, C] spikes, layout nc
    a = TokenSelector(count=5, width=16, layout="nc")(x)
    learned = TokenSelector(count=5, width=16, layout="nc", score="learned", channels=8)
    assert isinstance(learned.scorer, LearnedScorer)
    b = learned(x)
    assert torch.equal(a[:, :, :5], b[:, :, :5])  # same kept tokens
    assert not torch.equal(a[:, :, 5], b[:, :, 5])  # package weights come from the scorer
    with pytest.raises(ValueError, match="needs the block's input width"):
        TokenSelector(count=5, width=16, layout="nc", score="learned")


def test_a_plan_with_an_unknown_token_score_is_refused() -> None:
    model = create_model("spikformer-digits-2-64")
    with pytest.raises(PlanError, match="unknown token score 'activty' in the plan; did you mean 'activity'"):
        prune(model, PruningPlan(model="spikformer-digits-2-64", keep={"block.1.tokens": 32}, token_score="activty"))


def test_finetune_trains_the_selector_with_the_keep_ratio_loss(quick_study_path: Path, tmp_path: Path) -> None:
    text = quick_study_path.read_text().replace("[train]\n", '[train]\ntrain_split = "train[:48]"\n')
    text = text.replace('eval_split = "val[:240]"', 'eval_split = "val[:60]"')
    study_path = tmp_path / "s.toml"
    study_path.write_text(text)
    study = hwsearch.load_study(study_path)
    model = hwsearch.load_model(study.checkpoint).model
    plan = PruningPlan(model="spikformer-digits-2-64", keep={"block.0.tokens": 32, "block.1.tokens": 32})
    src = save_pruned(prune(model, plan), tmp_path / "best")
    probe = load_pruned(src)
    assert learn_token_scores(probe) == 2 and probe.hwsearch_plan.token_score == "learned"
    probe.train()
    x, y = next(iter(hwsearch.data.make_loader(hwsearch.loading.study_dataset(study, "train[:16]"), batch_size=16)))
    scorers = [p for n, p in probe.named_parameters() if ".scorer." in n]
    functional.reset_net(probe)
    logits = probe(x)
    loss = keep_ratio_loss(probe)
    assert loss is not None and float(loss) > 0 and keep_ratio_loss(probe) is None  # consumed once
    torch.nn.functional.cross_entropy(logits, y).backward(retain_graph=True)  # through the weighted package token
    assert sum(float(p.grad.abs().sum()) for p in scorers if p.grad is not None) > 0
    probe.zero_grad()
    loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in scorers if p.grad is not None) > 0
    functional.reset_net(probe)
    tuned, res = finetune(study, src, epochs=1, loss="ce", out=tmp_path / "ft", progress=False,
                          token_selector="learned")
    start = LearnedScorer(64).proj.weight
    assert torch.equal(tuned.block[0].token_select.scorer.proj.weight, start) == (res.best_epoch == 0)
    again = load_pruned(tmp_path / "ft")
    assert again.hwsearch_plan.token_score == "learned" and again.block[1].token_select.scorer is not None
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        functional.reset_net(again)
        functional.reset_net(tuned)
        assert torch.equal(again(x), tuned.eval()(x))
    cost = AnalyticCostModel().cost(again.hwsearch_plan)
    assert cost.params == sum(p.numel() for p in again.parameters())
