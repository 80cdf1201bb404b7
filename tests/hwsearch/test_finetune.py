"""Recovery fine-tuning: deterministic for a seed, resumable after SIGKILL, with/without columns in the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import hwsearch
from hwsearch.cli import main
from hwsearch.finetune import STATE_FILE, SUMMARY_FILE, distillation_loss
from hwsearch.pruning import PruningPlan, load_pruned, prune, save_pruned

QUICK = dict(rates=(0.25, 0.5), progress=False, confirm_top=1)


@pytest.fixture(scope="module")
def tiny_study(quick_study_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick study with small eval / confirm / test slices: each fine-tuning epoch ends in an eval."""
    text = quick_study_path.read_text()
    for old, new in [('eval_split = "val[:240]"', 'eval_split = "val[:60]"'),
                     ('confirm_split = "val[240:300]"', 'confirm_split = "val[240:270]"'),
                     ('test_split = "test[:60]"', 'test_split = "test[:30]"'),
                     ("[train]\n", '[train]\ntrain_split = "train[:32]"\n')]:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path_factory.mktemp("tiny-study") / "demo-tiny.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def pruned_dir(tiny_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = hwsearch.load_model(hwsearch.load_study(tiny_study).checkpoint).model
    plan = PruningPlan(model="spikformer-digits-2-64", keep={"block.0.mlp.hidden": 32, "block.1.mlp.hidden": 32,
                                                              "block.0.attn.v": 16})
    return save_pruned(prune(model, plan), tmp_path_factory.mktemp("pruned") / "best")


def _finetune(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hwsearch.cli", "finetune", *args, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_distillation_loss_is_cross_entropy_at_alpha_zero_and_zero_on_the_teacher() -> None:
    logits, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    assert torch.allclose(distillation_loss(logits, logits + 3.0, y, temperature=4.0, alpha=0.0),
                          torch.nn.functional.cross_entropy(logits, y))
    assert float(distillation_loss(logits, logits, y, temperature=2.0, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)


def test_deterministic_and_resumable_after_sigkill(tiny_study: Path, pruned_dir: Path, tmp_path: Path) -> None:
    common = [str(pruned_dir), "--study", str(tiny_study), "--epochs", "3", "--train-limit", "32"]
    whole = _finetune([*common, "--out", str(tmp_path / "whole")])
    killed = _finetune([*common, "--out", str(tmp_path / "killed")])
    state = tmp_path / "killed" / STATE_FILE
    deadline = time.monotonic() + 240
    while not state.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert state.exists(), killed.stderr.read().decode()[-2000:] if killed.stderr else ""
    assert torch.load(state, weights_only=True)["epoch"] < 3  # killed mid-run
    assert not (tmp_path / "killed" / "model.pth").exists()
    resumed = _finetune([*common, "--out", str(tmp_path / "killed"), "--resume"])
    for proc in (whole, resumed):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
    a, b = load_pruned(tmp_path / "whole"), load_pruned(tmp_path / "killed")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    summary = (tmp_path / "whole" / SUMMARY_FILE).read_text()
    assert '"eval_after"' in summary and '"best_epoch"' in summary


def test_run_then_finetune_top_k_adds_a_row_per_model(tiny_study: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    res = hwsearch.run(tiny_study, strategy="prioritized", out=run, constraints={"param_mb": 0.5}, **QUICK)
    assert res.best is not None
    ranking = json.loads((run / "pareto" / "ranking.json").read_text())
    assert len(ranking) == 1 and ranking[0] != res.best.candidate.key  # the plan after the answer
    code = main(["finetune", str(run), "--study", str(tiny_study), "--epochs", "1", "--train-limit", "32",
                 "--top", "3", "--quiet"])
    assert code == 0
    assert "ranks 1 plan(s) after the answer: fine-tuning 2 model(s), not 3" in capsys.readouterr().out
    key = ranking[0]
    runner_up = run / "pareto" / key
    assert (runner_up / "model.pth").is_file() and load_pruned(runner_up / ".." / f"{key}-finetuned") is not None
    done = json.loads((run / "pareto" / f"{key}-finetuned" / SUMMARY_FILE).read_text())
    evaluated = json.loads((runner_up / "summary.json").read_text())
    assert done["eval_before"] == pytest.approx(evaluated["accuracy_eval"])  # rebuilt = the model the search measured
    report = (run / "report.md").read_text()
    assert "## Fine-tuning" in report and "| answer | `best-finetuned` |" in report
    label = "pareto #1" + ("" if evaluated["feasible"] else " (missed the drop limit)")
    assert f"| {label} | `pareto/{key}-finetuned` |" in report
    for name in ("pareto.csv", "trials.csv"):  # pareto.csv holds the feasible candidates only
        frame = pd.read_csv(run / name).set_index("key")
        keys = [res.best.candidate.key] + ([key] if name == "trials.csv" or evaluated["feasible"] else [])
        for k in keys:
            assert pd.notna(frame.loc[k, "finetuned_test_accuracy"]) and frame.loc[k, "finetune_epochs"] == 1
    assert load_pruned(run / "best-finetuned") is not None
    assert main(["finetune", str(run), "--study", str(tiny_study), "--epochs", "1", "--quiet"]) == 2  # exists
    assert main(["finetune", str(run), "--top", "2", "--out", str(tmp_path / "x"), "--quiet"]) == 2


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--alpha", "2"], ["--loss", "mse"], ["--temperature", "-1"],
                                  ["--top", "0"]])
def test_bad_options_exit_2(args: list[str], pruned_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["finetune", str(pruned_dir), *args])
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


def test_missing_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", str(tmp_path)]) == 2
    assert "no pruned model in" in capsys.readouterr().err


def test_top_k_needs_a_run_directory(pruned_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", str(pruned_dir), "--top", "2"]) == 2
    assert "--top 2 needs a run directory" in capsys.readouterr().err


def test_run_with_finetune_epochs_fine_tunes_the_answer(tiny_study: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    code = main(["run", "--study", str(tiny_study), "--strategy", "prioritized", "--rates", "0.25,0.5",
                 "--budget-mb", "0.5", "--finetune-epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0
    assert "fine-tuned     " in capsys.readouterr().out
    assert (out / "best-finetuned" / "model.pth").is_file() and "## Fine-tuning" in (out / "report.md").read_text()


def test_compare_with_finetune_epochs_adds_the_columns(tiny_study: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    code = main(["compare", "--study", str(tiny_study), "--strategies", "prioritized,knapsack", "--eval-budget", "3",
                 "--rates", "0.25,0.5", "--budget-mb", "0.5", "--finetune-epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0
    table = pd.read_csv(out / "comparison.csv").set_index("strategy")
    for name in ("prioritized", "knapsack"):
        if pd.notna(table.loc[name, "best_top1"]):
            assert pd.notna(table.loc[name, "finetuned_top1"]) and pd.notna(table.loc[name, "finetuned_test_drop"])
            assert "## Fine-tuning" in (out / name / "report.md").read_text()
            assert (out / name / "best-finetuned" / "model.pth").is_file()
    assert table[["best_top1"]].notna().any().item()
