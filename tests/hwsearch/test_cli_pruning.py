"""`hwsearch groups` and `hwsearch prune` end to end on the demo study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hwsearch.cli import main
from hwsearch.pruning import PruningPlan, load_pruned


def test_groups_lists_every_group(capsys: pytest.CaptureFixture[str], demo_study_path: Path) -> None:
    assert main(["groups", "--study", str(demo_study_path)]) == 0
    out = capsys.readouterr().out
    for name in ("embed", "patch_embed.c1", "block.0.attn.heads", "block.1.attn.qk", "block.1.mlp.hidden", "block",
                 "block.1.tokens", "T"):
        assert f" {name} " in f" {out} ".replace("\n", " \n ")
    assert "256" in out  # MLP hidden width of the demo (4 x 64)


def test_prune_writes_a_reloadable_model(capsys: pytest.CaptureFixture[str], demo_study_path: Path, tmp_path: Path) -> None:
    plan = PruningPlan(model="spikformer-digits-2-64", keep={"block.0.mlp.hidden": 128, "block.1.attn.heads": 2, "embed": 48})
    plan.save(tmp_path / "plan.json")
    assert main(["prune", "--study", str(demo_study_path), "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "out")]) == 0
    model = load_pruned(tmp_path / "out")
    cost = json.loads((tmp_path / "out" / "cost.json").read_text())
    assert cost["params_after"] == sum(p.numel() for p in model.parameters()) < cost["params_before"]
    saved = PruningPlan.load(tmp_path / "out" / "plan.json")
    assert saved.resolved and len(saved.keep["block.0.mlp.hidden"]) == 128 and len(saved.checkpoint_sha256) == 64
    assert model.block[1].attn.num_heads == 2
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_prune_refuses_a_zero_width_plan(capsys: pytest.CaptureFixture[str], demo_study_path: Path, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"model": "spikformer-digits-2-64", "keep": {"block.0.mlp.hidden": 0}}))
    code = main(["prune", "--study", str(demo_study_path), "--plan", str(tmp_path / "p.json"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: plan keeps 0 of 256 channels in block.0.mlp.hidden") and "\n" not in err


def test_prune_refuses_a_plan_for_another_model(capsys: pytest.CaptureFixture[str], demo_study_path: Path, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"model": "spikformer-8-384", "keep": {}}))
    code = main(["prune", "--study", str(demo_study_path), "--plan", str(tmp_path / "p.json"), "--out", str(tmp_path / "o")])
    assert code == 2 and "is for 'spikformer-8-384'" in capsys.readouterr().err
