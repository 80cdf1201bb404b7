"""The Optuna storage as optuna-dashboard shows it: metric name, rates with their real distributions,
start and end times, short user attributes; and the stored results still resume a run exactly."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

import hwsearch
from hwsearch.search.session import prepare
from hwsearch.reports.pareto import pareto_front, trials_frame
from hwsearch.search.storage import METRIC_NAME, ResultStore, open_storage

SHORT = {"status", "tag", "drop_pt", "drop_pt_at_least", "param_mb", "macs_g", "act_mb", "params", "feasible", "error"}


@pytest.fixture(scope="module")
def run(quick_study_path: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("dash") / "r"
    setup = prepare(quick_study_path, constraints={"param_mb": 0.62}, run_dir=out, rates=(0.25, 0.5), eval_subset=60,
                    progress=False, confirm_top=1)
    res = hwsearch.run(quick_study_path, strategy="random", trials=3, seed=2, progress=False, setup=setup)
    res.space = setup.space  # type: ignore[attr-defined]
    return res, out


def test_the_journal_reads_as_the_user_thinks_of_the_study(run) -> None:
    res, out = run
    study = optuna.load_study(study_name="random", storage=JournalStorage(JournalFileBackend(str(out / "optuna.journal"))))
    assert study.metric_names == [METRIC_NAME]
    table = pd.read_csv(out / "trials.csv").set_index("key")
    space = {f"rate:{v.name}": v for v in res_space(res).variables}
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == len(res.results) == len(table)
    for t in trials:
        key = t.system_attrs["hwsearch:key"]
        assert set(t.params) == set(space)
        for name, value in t.params.items():
            assert value == table.loc[key, name]  # the rate trials.csv shows, not a level index
            assert t.distributions[name] == CategoricalDistribution(tuple(round(r, 4) for r in space[name].rates))
        assert t.datetime_start is not None and t.datetime_complete is not None
        result = json.loads(t.system_attrs["hwsearch:result"])
        assert abs(t.duration.total_seconds() - result["seconds"]) < 1e-3 and result["seconds"] > 0
        assert set(t.user_attrs) <= SHORT and len(json.dumps(t.user_attrs)) < 300
        assert t.user_attrs["status"] == table.loc[key, "status"]
        assert t.user_attrs["param_mb"] == round(table.loc[key, "param_mb"], 4)
        if t.state == TrialState.COMPLETE:
            assert t.value == table.loc[key, "accuracy"] and t.user_attrs["drop_pt"] == round(table.loc[key, "acc_drop"], 3)


def test_stored_results_round_trip(run) -> None:
    res, out = run
    stored = ResultStore(open_storage(out), "random", res_space(res)).results()
    assert [(r.candidate.key, r.accuracy, r.status) for r in stored] == \
        [(r.candidate.key, r.accuracy, r.status) for r in res.results]


def test_pareto_csv_has_its_header_when_nothing_is_feasible(run, tmp_path: Path) -> None:
    res, _ = run
    infeasible = [r for r in res.results if not r.feasible]
    assert infeasible and pareto_front(infeasible) == []
    trials_frame(pareto_front(infeasible), res_space(res)).to_csv(tmp_path / "pareto.csv", index=False)
    columns = list(pd.read_csv(tmp_path / "pareto.csv").columns)
    assert columns[:5] == ["number", "tag", "status", "accuracy", "acc_drop"] and "key" in columns


def res_space(res):  # type: ignore[no-untyped-def]
    return res.space
