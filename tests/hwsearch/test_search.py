"""The search driver end to end on the demo study: outputs, budget check, resume after SIGKILL, Ray."""

from __future__ import annotations

import logging

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import hwsearch
from hwsearch.errors import UserError
from hwsearch.search.evaluation import EvaluatorSpec
from hwsearch.search.results import Candidate
from hwsearch.search.runners import RayRunner, SerialRunner
from hwsearch.search.session import prepare
from hwsearch.search.loop import run_strategy
from hwsearch.search.strategies import create_strategy

QUICK = dict(rates=(0.25, 0.5), eval_subset=60, progress=False, confirm_top=1)


@pytest.fixture(scope="module")
def setup(quick_study_path: Path, tmp_path_factory: pytest.TempPathFactory):
    return prepare(quick_study_path, constraints={"param_mb": 0.6, "max_acc_drop": 5.0},
                   run_dir=tmp_path_factory.mktemp("run"), rates=(0.25, 0.5), eval_subset=60, progress=False)


def test_search_writes_every_output(quick_study_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="hwsearch"):
        res = hwsearch.run(quick_study_path, strategy="random", trials=4, out=tmp_path / "r", seed=1,
                           constraints={"param_mb": 0.62, "max_acc_drop": 50.0}, **QUICK)
    said = caplog.text  # what -v (INFO) and -vv (DEBUG) show: set-up, the loop, each candidate, the outputs
    for line in ("baseline: top-1", "random: finished after", "candidates are costed with: analytic", "wrote "):
        assert line in said, line
    assert sum("candidate " in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records) >= 4
    own = [r for r in res.results if r.candidate.tag != "profile"]
    profile = [r for r in res.results if r.candidate.tag == "profile"]
    assert len(own) == 4 and res.evaluations == 4 and len(profile) == 18  # 9 groups x 2 rates, shared
    assert isinstance(res.trials, pd.DataFrame) and len(res.trials) == 22
    for name in ("trials.csv", "pareto.csv", "pareto.png", "report.md", "optuna.journal", "sensitivity.csv"):
        assert (tmp_path / "r" / name).is_file(), name
    assert pd.read_csv(tmp_path / "r" / "pareto.csv").columns.size > 5
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert {"accuracy", "param_mb", "macs_g", "act_mb", "feasible"} <= set(trials.columns)
    assert any(c.startswith("rate:block.0.mlp.hidden") for c in trials.columns)
    report = (tmp_path / "r" / "report.md").read_text()
    assert report.index("## Requested vs achieved") < report.index("## Run")
    assert "top-1 confirm split (val[240:300]" in report and "top-1 test split (test[:60]" in report
    if res.best is not None:
        assert (tmp_path / "r" / "best" / "model.pth").is_file()
        assert res.best.costs["param_mb"] <= 0.62 and res.best.acc_drop <= 50.0
        pruned_params = sum(p.numel() for p in res.best_model.parameters())
        assert pruned_params == res.best.costs["params"]  # the cost model predicted the pruned model exactly
        assert res.best_confirm_accuracy is not None and res.best_test_accuracy is not None
        # a second search reuses the cached profile: 0 new profile evaluations
        again = hwsearch.run(quick_study_path, strategy="random", trials=2, out=tmp_path / "r2", seed=2,
                                constraints={"param_mb": 0.62, "max_acc_drop": 50.0}, **QUICK)
        assert again.profile_evaluations == 0 and again.profile_source.startswith("cache")


def test_unreachable_budget_fails_before_any_evaluation(quick_study_path: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"budget param_mb 0.01 MB is below the smallest reachable model .* raise --budget-mb"):
        hwsearch.run(quick_study_path, strategy="random", trials=2, out=tmp_path / "u",
                        constraints={"param_mb": 0.01}, **QUICK)
    assert not (tmp_path / "u" / "optuna.journal").exists()


def test_existing_run_needs_resume(quick_study_path: Path, tmp_path: Path) -> None:
    kw = dict(strategy="random", trials=2, out=tmp_path / "r", constraints={"param_mb": 0.62}, **QUICK)
    first = hwsearch.run(quick_study_path, **kw)
    with pytest.raises(UserError, match="pass --resume"):
        hwsearch.run(quick_study_path, **kw)
    again = hwsearch.run(quick_study_path, resume=True, **kw)  # nothing new to evaluate: replayed
    assert [r.candidate.key for r in again.results] == [r.candidate.key for r in first.results]
    assert [r.accuracy for r in again.results] == [r.accuracy for r in first.results]


def _journal_trials(path: Path) -> int:
    """The strategy's own trials in a run's journal (the shared profile's are not counted)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not path.exists():
        return 0
    storage = JournalStorage(JournalFileBackend(str(path)))
    try:
        trials = optuna.load_study(study_name="random", storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return 0
    return sum(1 for t in trials if t.user_attrs.get("tag") != "profile")


def test_sigkill_then_resume_keeps_every_finished_trial(quick_study_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "hwsearch.cli", "run", "--study", str(quick_study_path), "--strategy", "random",
           "--trials", "8", "--rates", "0.25,0.5", "--eval-subset", "60", "--budget-mb", "0.62", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = out / "optuna.journal"
    deadline = time.time() + 240
    while _journal_trials(journal) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _journal_trials(journal)
    assert 3 <= before < 8, "the run must be killed mid-way"
    from hwsearch.search.storage import ResultStore, open_storage

    setup_ = prepare(quick_study_path, constraints={"param_mb": 0.62}, run_dir=out, rates=(0.25, 0.5), eval_subset=60,
                     progress=False)
    kept = [r.candidate.key for r in ResultStore(open_storage(out), "random", setup_.space).results()
            if r.candidate.tag != "profile"]
    res = hwsearch.run(quick_study_path, strategy="random", trials=8, out=out, resume=True,
                          constraints={"param_mb": 0.62}, **QUICK)
    own = [r for r in res.results if r.candidate.tag != "profile"]
    assert len(own) == 8
    assert kept == [r.candidate.key for r in own[: len(kept)]]  # earlier trials replayed, in order
    assert _journal_trials(journal) == 8  # nothing evaluated twice


@pytest.mark.ray
def test_ray_and_serial_runners_give_the_same_trials(setup, ray_session, tmp_path: Path) -> None:
    def run(runner, name):
        from dataclasses import replace

        s = replace(setup, run_dir=tmp_path / name)
        with runner:
            runner.start(s.spec)
            out = run_strategy(s, create_strategy("tpe", seed=3, n_startup_trials=2), runner, study_name="tpe",
                               problem=s.problem(eval_budget=5), eval_budget=5, progress=False)
        return [(r.candidate.key, r.accuracy) for r in out.results]

    serial = run(SerialRunner(capacity=2), "serial")
    parallel = run(RayRunner(workers=2), "ray")
    assert serial == parallel and len(serial) == 5


@pytest.mark.ray
def test_a_killed_ray_worker_fails_only_its_candidate(setup, ray_session) -> None:
    from dataclasses import replace

    spec: EvaluatorSpec = replace(setup.spec, allow_fault_injection=True)
    v = setup.space.variables
    cands = [Candidate(levels={v[-1].name: 1}), Candidate(levels={v[-2].name: 1}, tag="fault:exit"),
             Candidate(levels={v[-3].name: 1}), Candidate(levels={v[-4].name: 1}, tag="fault:raise")]
    with RayRunner(workers=2) as runner:
        runner.start(spec)
        results = []
        for c in cands:
            while not runner.free_slots():
                results.append(runner.next_result())
            runner.submit(c)
        while runner.in_flight():
            results.append(runner.next_result())
        after = None
        runner.submit(Candidate(levels={v[-1].name: 2}))  # the restarted worker still evaluates
        after = runner.next_result()
    status = {r.candidate.tag or r.candidate.key: r.status for r in results}
    assert status["fault:exit"] == "failed" and status["fault:raise"] == "failed"
    assert [r.status for r in results if not r.candidate.tag] == ["ok", "ok"]
    assert "died" in next(r.error for r in results if r.candidate.tag == "fault:exit")
    assert after.status == "ok"


def test_ctrl_c_writes_partial_results_and_resume_continues(quick_study_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "i"
    cmd = [sys.executable, "-m", "hwsearch.cli", "run", "--study", str(quick_study_path), "--strategy", "random",
           "--trials", "8", "--rates", "0.25,0.5", "--eval-subset", "60", "--budget-mb", "0.62", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while _journal_trials(out / "optuna.journal") < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    done = pd.read_csv(out / "trials.csv")
    done = done[done["tag"] != "profile"]
    assert 2 <= len(done) < 8
    assert "Interrupted" in (out / "report.md").read_text()
    res = hwsearch.run(quick_study_path, strategy="random", trials=8, out=out, resume=True,
                          constraints={"param_mb": 0.62}, **QUICK)
    own = [r for r in res.results if r.candidate.tag != "profile"]
    assert len(own) == 8
    assert list(done["key"]) == [r.candidate.key for r in own[: len(done)]]


def test_resume_refuses_another_fingerprint(quick_study_path: Path, tmp_path: Path) -> None:
    kw = dict(strategy="random", trials=2, out=tmp_path / "f", constraints={"param_mb": 0.62}, progress=False,
              eval_subset=60)
    hwsearch.run(quick_study_path, rates=(0.25, 0.5), **kw)
    with pytest.raises(UserError, match="made with another .*rates"):
        hwsearch.run(quick_study_path, rates=(0.25, 0.5, 0.75), resume=True, **kw)
    with pytest.raises(UserError, match="made with another .*criterion"):
        hwsearch.run(quick_study_path, rates=(0.25, 0.5), criterion="l1", resume=True, **kw)


def test_early_stop_is_exact(setup) -> None:
    """Every stopped candidate's full accuracy breaks the drop limit (measured without the early stop)."""
    from dataclasses import replace

    from hwsearch.search.evaluation import Evaluator

    spec = replace(setup.spec, stop_drop=1.0)  # a strict limit, so some candidates stop
    fast, full = Evaluator(spec), Evaluator(replace(setup.spec, stop_drop=None))
    stopped = 0
    for v in setup.space.variables:
        for lv in range(1, len(v.levels)):
            cand = Candidate(levels={v.name: lv})
            quick, whole = fast(cand), full(cand)
            assert whole.ok and whole.samples == 60
            if quick.stopped:
                stopped += 1
                assert quick.samples < 60 and quick.accuracy >= whole.accuracy  # an exact upper bound
                assert whole.acc_drop > 1.0  # the full evaluation breaks the limit too
            else:
                assert quick.accuracy == whole.accuracy and quick.samples == 60
    assert stopped, "no candidate stopped: the test proves nothing"
