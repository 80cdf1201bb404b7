"""The shared profile (cache key, reuse, CSV input), the prior built from it, BN re-estimation, compare."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import hwsearch
from hwsearch.search.session import prepare
from hwsearch.errors import UserError
from hwsearch.search.evaluation import recalibrate_bn
from hwsearch.search.prior import Prior
from hwsearch.search.profiling import cache_dir, ensure_profile, profile_fingerprint
from hwsearch.search.results import Candidate
from hwsearch.search.runners import SerialRunner

QUICK = dict(rates=(0.25, 0.5), eval_subset=60, progress=False, confirm_top=1)


@pytest.fixture(scope="module")
def setup(quick_study_path: Path, tmp_path_factory: pytest.TempPathFactory):
    return prepare(quick_study_path, constraints={"param_mb": 0.5, "max_acc_drop": 5.0},
                   run_dir=tmp_path_factory.mktemp("profile"), **QUICK)


@pytest.fixture(scope="module")
def profile(setup):
    runner = SerialRunner()
    runner.start(setup.spec)
    return ensure_profile(setup, runner, progress=False)


def test_profile_is_cached_under_its_fingerprint(setup, profile, tmp_path: Path) -> None:
    assert len(profile.results) == 18 and profile.table.entries
    assert (cache_dir() / "profiles").is_dir()
    runner = SerialRunner()
    runner.start(setup.spec)
    other_dir = replace(setup, run_dir=tmp_path / "elsewhere")  # another --out reuses it
    again = ensure_profile(other_dir, runner, progress=False)
    assert again.new_evaluations == 0 and again.source.startswith("cache")
    assert [r.accuracy for r in again.results] == [r.accuracy for r in profile.results]
    assert (tmp_path / "elsewhere" / "sensitivity.csv").is_file()


def test_fingerprint_names_everything_the_numbers_depend_on(setup, quick_study_path: Path, tmp_path: Path) -> None:
    fp = profile_fingerprint(setup)
    assert {"checkpoint", "eval", "rates", "criterion", "variables", "bn_recalibrate"} <= set(fp)
    assert fp["eval"]["samples"].endswith("/60")
    other = prepare(quick_study_path, constraints={"param_mb": 0.5}, run_dir=tmp_path, rates=(0.25, 0.5, 0.75),
                    eval_subset=60, progress=False)
    assert profile_fingerprint(other)["rates"] != fp["rates"]
    bn = prepare(quick_study_path, constraints={"param_mb": 0.5}, run_dir=tmp_path, bn_recalibrate=1, **QUICK)
    assert profile_fingerprint(bn)["bn_recalibrate"] == 1 and profile_fingerprint(bn) != fp
    subset = prepare(quick_study_path, constraints={"param_mb": 0.5}, run_dir=tmp_path, rates=(0.25, 0.5),
                     eval_subset=59, progress=False)
    assert profile_fingerprint(subset)["eval"] != fp["eval"]


def test_sensitivity_csv_is_accepted_like_the_json(setup, profile, tmp_path: Path) -> None:
    from hwsearch.search.profiling import load_table_file

    run = setup.run_dir
    for name in ("sensitivity.csv", "sensitivity_long.csv", "sensitivity.json"):
        table = load_table_file(run / name, setup)
        for e in profile.table.entries:
            assert table.drop(e.variable, e.level) == pytest.approx(profile.table.drop(e.variable, e.level)), name
    bad = tmp_path / "bad.csv"
    bad.write_text("layername,0.25\nnot.a.group,90\n")
    with pytest.raises(UserError, match="unknown group 'not.a.group'"):
        load_table_file(bad, setup)
    with pytest.raises(UserError, match="no such file"):
        load_table_file(tmp_path / "absent.csv", setup)


def test_prior_excludes_intolerant_levels_and_projects_onto_the_budget(setup, profile) -> None:
    prior = Prior(setup.space, profile.table, setup.constraints, setup.local.costs, mode="exclude")
    for v in setup.space.variables:
        for lv in prior.allowed[v.name][1:]:
            assert profile.table.drop(v.name, lv) <= 5.0
        assert prior.allowed[v.name][0] == 0
    rng = np.random.default_rng(0)
    for _ in range(20):
        levels = prior.draw(rng)
        proj = prior.project(levels)
        if proj is not None:
            assert setup.local.costs(proj)["param_mb"] <= 0.5 + 1e-12
            assert all(proj.get(n, 0) >= min(levels[n], max(prior.allowed[n])) or proj.get(n, 0) in prior.allowed[n]
                       for n in levels)
    filled = prior.fill({}, rng)
    assert prior.predicted_drop(filled) <= 5.0


def test_bn_recalibration_is_deterministic_and_starts_at_the_first_pruned_module(setup, quick_study_path: Path,
                                                                                tmp_path: Path) -> None:
    s = prepare(quick_study_path, constraints={"param_mb": 0.5}, run_dir=tmp_path, bn_recalibrate=1, **QUICK)
    cand = Candidate(levels={"block.1.mlp.hidden": 1})
    a, b = s.local.pruned_model(cand), s.local.pruned_model(cand)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    plain = s.local.model.state_dict()
    first = s.local.first_pruned_module(cand)
    assert first is not None and first.startswith("block.1.mlp")
    for k in sa:  # before the first pruned module nothing changed; after it the BN statistics did
        if k.startswith("patch_embed") or k.startswith("block.0"):
            assert torch.equal(sa[k], plain[k]), k
    assert any(not torch.equal(sa[k], plain[k]) for k in sa if "running_mean" in k and k.startswith("block.1.mlp"))
    m = copy.deepcopy(s.local.model)
    recalibrate_bn(m, s.spec.calibration_batches)
    assert any(not torch.equal(m.state_dict()[k], plain[k]) for k in plain if "running_var" in k)


def test_compare_runs_with_the_default_rate_grid(quick_study_path: Path, tmp_path: Path) -> None:
    """The shared profile (79 candidates on the default grid) is not counted in --eval-budget."""
    table, runs = hwsearch.compare(quick_study_path, strategies=["knapsack", "random"], eval_budget=3,
                                   constraints={"param_mb": 0.5, "max_acc_drop": 5.0}, out=tmp_path / "c",
                                   eval_subset=20, progress=False)
    assert list(table["strategy"]) == ["(shared profile)", "knapsack", "random"]
    assert int(table.loc[0, "evaluations"]) == 79
    assert all(r.evaluations <= 3 for r in runs)
    assert (tmp_path / "c" / "comparison.csv").is_file() and (tmp_path / "c" / "random" / "report.md").is_file()
    report = (tmp_path / "c" / "random" / "report.md").read_text()
    assert "top-1 test split" in report and "`best/`" in report or "No evaluated candidate" in report
    meta = json.loads((tmp_path / "c" / "random" / "best" / "summary.json").read_text()) if (
        tmp_path / "c" / "random" / "best").is_dir() else None
    if meta is not None:
        assert meta["accuracy_confirm"] is not None


def test_profile_store_is_reused_under_another_budget(quick_study_path: Path, tmp_path: Path, monkeypatch) -> None:
    """The profile does not depend on the cost budget: a run directory's stored profile resumes under another."""
    monkeypatch.setenv("HWSEARCH_CACHE_DIR", str(tmp_path / "empty-cache"))  # force the run-dir store
    kw = dict(run_dir=tmp_path / "p", rates=(0.5,), eval_subset=30, progress=False)
    first = prepare(quick_study_path, constraints={"param_mb": 0.5}, **kw)
    runner = SerialRunner()
    runner.start(first.spec)
    made = ensure_profile(first, runner, progress=False, use_cache=False)
    second = prepare(quick_study_path, constraints={"param_mb": 0.55}, **kw)
    again = ensure_profile(second, runner, progress=False, use_cache=False)
    assert made.new_evaluations == 9 and again.new_evaluations == 0  # replayed from the run's store
    assert [r.accuracy for r in again.results] == [r.accuracy for r in made.results]
