"""Successive halving: the bars, the evaluator's halved status, and the driver applying it where it may."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import hwsearch
from hwsearch.errors import UserError
from hwsearch.search.halving import MIN_RUNG_POPULATION, Halving, stage_boundaries
from hwsearch.search.results import Candidate, Result

QUICK = dict(rates=(0.25, 0.5), eval_subset=60, progress=False, confirm_top=1)


def _result(stages: tuple[int, ...], status: str = "ok") -> Result:
    return Result(candidate=Candidate(levels={}), status=status, accuracy=50.0, stage_correct=stages)


def test_rungs_are_the_stage_boundaries_without_the_whole_split() -> None:
    assert stage_boundaries([30, 30, 60, 120]) == (30, 60, 120)
    assert stage_boundaries([60]) == ()


def test_bars_keep_the_top_fraction_of_each_rung_once_it_has_a_population() -> None:
    h = Halving(3, (30, 60, 120))
    assert h.bars() == ()
    for stages in [(20, 45, 100, 200), (25, 50), (10,)]:  # a halved and a stopped one count where they reached
        h.observe(_result(stages))
    assert len(h.population[30]) == MIN_RUNG_POPULATION and h.bars() == ((30, 25),)
    for stages in [(28, 55, 110, 220), (29, 58, 112, 230), (5,)]:
        h.observe(_result(stages))
    # rung 30: [29, 28, 25, 20, 10, 5] -> top 2 (ceil 6/3) -> bar 28; rung 60: [58, 55, 50, 45] -> 55; rung 120: [112, 110, 100] -> 112
    assert h.bars() == ((30, 28), (60, 55), (120, 112))
    h.observe(_result((1,), status="failed"))
    assert len(h.population[30]) == 6


def test_eta_below_two_is_refused() -> None:
    with pytest.raises(UserError, match="eta >= 2"):
        Halving(1.5, (30,))


def test_search_halves_sampled_candidates_below_the_bar(quick_study_path: Path, tmp_path: Path) -> None:
    # 60 eval images staged 30 + 30: one rung at 30 images; a loose drop limit so only halving stops
    res = hwsearch.run(quick_study_path, strategy="random", trials=10, out=tmp_path / "h", seed=0, halving=2,
                          constraints={"param_mb": 0.6, "max_acc_drop": 60.0}, **QUICK)
    own = [r for r in res.results if r.candidate.tag != "profile"]
    halved = [r for r in own if r.halved]
    assert halved and any(r.ok for r in own)
    # replay the bars in evaluation order (serial: each candidate was submitted after the previous told)
    h = Halving(2, (30,))
    for r in own:
        bar = dict(h.bars()).get(30)
        if r.halved:
            assert r.samples == 30 and bar is not None and r.stage_correct[0] < bar
            assert r.accuracy == pytest.approx(100.0 * (r.stage_correct[0] + 30) / 60)  # an upper bound
        elif r.ok:
            assert bar is None or r.stage_correct[0] >= bar
        h.observe(r)
    assert res.best is not None and res.best.ok  # never answers with a halved candidate
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "h" / "optuna.journal")))
    trials = optuna.load_study(study_name="random", storage=storage).get_trials()
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert {t.system_attrs["hwsearch:key"] for t in pruned} >= {r.candidate.key for r in halved}
    assert all(t.user_attrs["status"] in ("halved", "stopped") for t in pruned)
    assert sum(t.user_attrs["status"] == "halved" for t in pruned) == len(halved)
    trials_csv = (tmp_path / "h" / "trials.csv").read_text()
    assert trials_csv.count(",halved,") == len(halved)
    assert any(n.startswith(f"successive halving (eta 2): {len(halved)} of 10") for n in res.notes)


def test_procedures_and_cost_objectives_are_never_halved(quick_study_path: Path, tmp_path: Path) -> None:
    greedy = hwsearch.run(quick_study_path, strategy="prioritized", out=tmp_path / "p", halving=2,
                             constraints={"param_mb": 0.6, "max_acc_drop": 60.0}, **QUICK)
    assert greedy.results and not any(r.halved for r in greedy.results)
    saving = hwsearch.run(quick_study_path, strategy="random", trials=6, out=tmp_path / "s", halving=2,
                             constraints={"param_mb": "none", "max_acc_drop": 60.0}, **QUICK)
    assert saving.objective == "param_mb" and not any(r.halved for r in saving.results)
