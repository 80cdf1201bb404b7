"""End to end, as a new user: the README's study defines its own Spikformer on image folders this test
writes; train, evaluate, groups, cost, run and load_pruned work through the console script and in fresh
processes, with nothing registered in Python."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
HWSEARCH = str(Path(sys.executable).parent / "hwsearch")


def readme_study() -> str:
    """The first TOML block of the README's "Your own model and data" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own model and data", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def write_images(root: Path, size: int = 32, counts: dict[str, int] | None = None) -> None:
    """3 classes told apart by their dominant colour, as PNG files in ROOT/<split>/<class>/."""
    rng = np.random.default_rng(0)
    for split, n in (counts or {"train": 16, "val": 8, "test": 8}).items():
        for c in range(3):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                a[:, :, c] += 150
                Image.fromarray(a).save(folder / f"{i}.png")


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``hwsearch ARGS`` in a subprocess (``python`` as the first arg: a Python snippet instead)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", args[1]] if args[0] == "python" else [HWSEARCH, *args]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in res.stderr, res.stderr
    if check:
        assert res.returncode == 0, res.stderr
    return res


FRESH = (
    "import torch, hwsearch\n"
    "m = hwsearch.load_pruned('runs/mine/best')\n"
    "from spikingjelly.activation_based import functional\n"
    "y = m(torch.rand(2, 3, 32, 32)); functional.reset_net(m)\n"
    "print(m.hwsearch_config, sum(p.numel() for p in m.parameters()), tuple(y.shape))\n"
    "print(hwsearch.load_model('checkpoints/my-spikformer.pth').config)\n"
)
BEST = "runs/mine/best"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the README's study (mine.toml), its images, a 1-epoch checkpoint and a 5-trial run."""
    work = tmp_path_factory.mktemp("own-model")
    write_images(work / "images")
    study = readme_study()
    (work / "mine.toml").write_text(study)
    other = study.replace('model = "my-spikformer"', 'model = "my-other"').replace("depth = 2", "depth = 1")
    (work / "other.toml").write_text(other)  # the same checkpoint under another configuration
    (work / "big.toml").write_text(study.replace('transform = "custom"', 'transform = "custom"\nresize = 48'))
    (work / "plain.toml").write_text("\n".join(line for line in study.splitlines()
                                               if not line.startswith(("transform", "mean", "std"))))
    cli("train", "--study", "mine.toml", cwd=work)
    cli("run", "--study", "mine.toml", "--trials", "5", "--rates", "0.25,0.5,0.75", "--out", "runs/mine", "--quiet",
        cwd=work)
    return work


@pytest.fixture(scope="module")
def runs(trained: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every later command, two at a time (they only read): name -> finished process."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = {
        "evaluate": ("evaluate", "--study", "mine.toml", "--json"),
        "cost": ("cost", "--study", "mine.toml", "--json"),
        "groups": ("groups", "--study", "mine.toml", "--kind", "mlp"),
        "evaluate_best": ("evaluate", "--study", "mine.toml", "--model-dir", BEST, "--json"),
        "cost_best": ("cost", "--study", "mine.toml", "--model-dir", BEST, "--json"),
        "groups_best": ("groups", "--study", "mine.toml", "--model-dir", BEST),
        "fresh": ("python", FRESH),
        "taylor": ("run", "--study", "mine.toml", "--criterion", "taylor", "--trials", "2", "--rates", "0.5",
                   "--out", "runs/taylor", "--quiet"),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {k: pool.submit(cli, *v, cwd=trained, check=False) for k, v in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_train_records_the_configuration_in_the_checkpoint(trained: Path) -> None:
    obj = torch.load(trained / "checkpoints" / "my-spikformer.pth", weights_only=True)
    definition = obj["hwsearch_model"]
    assert (definition["name"], definition["family"], definition["layout"]) == ("my-spikformer", "spikformer", "cifar")
    assert {k: definition["kwargs"][k] for k in ("depth", "embed_dim", "num_heads", "T", "num_classes")} == {
        "depth": 2, "embed_dim": 32, "num_heads": 2, "T": 2, "num_classes": 3}
    assert obj["arch"] == "spikformer" and obj["state_dict"]["head.weight"].shape == (3, 32)


def test_evaluate_groups_and_cost_agree_on_the_own_configuration(runs: dict) -> None:
    ev, cost = json.loads(ok(runs["evaluate"])), json.loads(ok(runs["cost"]))["analytic"]
    assert ev["model"] == "my-spikformer" and ev["samples"] == 24
    assert ev["params"] == cost["params"]
    assert re.search(r"block\.1\.mlp\.hidden\s+mlp\s+channel\s+64\b", ok(runs["groups"]))  # mlp_ratio 2 x D 32


def test_the_pruned_model_evaluates_from_its_folder(trained: Path, runs: dict) -> None:
    best = trained / BEST
    summary = json.loads((best / "summary.json").read_text())
    arch = json.loads((best / "architecture.json").read_text())
    ev, cost = json.loads(ok(runs["evaluate_best"])), json.loads(ok(runs["cost_best"]))
    assert ev["params"] == arch["params"] == cost["analytic"]["params"] == summary["params"]
    assert ev["params"] < json.loads(ok(runs["cost"]))["analytic"]["params"]
    assert ev["top1"] == pytest.approx(summary["accuracy_test"], abs=1e-4)  # the run's test split, re-measured
    assert "block.0.attn.heads" in ok(runs["groups_best"])


def test_fresh_processes_need_no_registration(trained: Path, runs: dict) -> None:
    params = json.loads((trained / BEST / "architecture.json").read_text())["params"]
    assert ok(runs["fresh"]).split("\n")[:2] == [f"my-spikformer {params} (2, 3)", "my-spikformer"]


def in_process(args: list[str], cwd: Path, capsys, monkeypatch) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """``hwsearch ARGS`` through ``hwsearch.cli.main`` in this process: (exit code, stdout, stderr)."""
    from hwsearch.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    rc = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def test_a_checkpoint_of_another_configuration_names_the_one_it_was_trained_as(trained: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rc, _, err = in_process(["evaluate", "--study", "other.toml"], trained, capsys, monkeypatch)
    assert rc == 2
    assert "the file was trained as 'my-spikformer': set model = \"my-spikformer\"" in err


def test_images_of_another_size_name_both_sizes(trained: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rc, _, err = in_process(["evaluate", "--study", "big.toml"], trained, capsys, monkeypatch)
    assert rc == 2 and err.count("\n") == 1
    assert "inputs of 3x48x48 but model 'my-spikformer' takes 3x32x32" in err


def test_no_transform_is_none_for_a_32_pixel_model_and_says_so(trained: Path, capsys, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    rc, out, _ = in_process(["evaluate", "--study", "plain.toml", "--json"], trained, capsys, monkeypatch)
    assert rc == 0 and json.loads(out)["samples"] == 24
    assert "using 'none' for 32 px images" in caplog.text


def test_search_ranks_channels_by_taylor_importance(trained: Path, runs: dict) -> None:
    ok(runs["taylor"])
    report = (trained / "runs" / "taylor" / "report.md").read_text()
    assert "ranking `taylor`" in report
    import pandas as pd

    trials = pd.read_csv(trained / "runs" / "taylor" / "trials.csv")
    assert set(trials["status"]) == {"ok"} and len(trials) >= 9  # 9 profile candidates, then the search's own
