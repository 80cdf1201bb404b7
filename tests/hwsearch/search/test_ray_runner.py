"""RayRunner with real Ray: a SIGKILLed worker fails exactly the candidate it was running, even with
candidates in flight and queued behind it; results keep the submission order."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hwsearch.search.session import prepare
from hwsearch.search.results import Candidate
from hwsearch.search.runners import RayRunner

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def setup(quick_study_path: Path, tmp_path_factory: pytest.TempPathFactory):
    return prepare(quick_study_path, constraints={"param_mb": 0.6, "max_acc_drop": 50.0},
                   run_dir=tmp_path_factory.mktemp("run"), rates=(0.25, 0.5), eval_subset=60, progress=False)


def test_killed_worker_with_candidates_in_flight_and_queued(setup, ray_session) -> None:
    v = setup.space.variables
    cands = [Candidate(levels={v[i].name: 1 + i % 2}) for i in range(7)]
    with RayRunner(workers=2, capacity=len(cands)) as runner:
        runner.start(setup.spec)
        for c in cands:  # two start at once, five wait in the driver
            runner.submit(c)
        os.kill(runner.pids[0], signal.SIGKILL)  # the worker that got the first candidate
        results = [runner.next_result() for _ in cands]
        assert runner.wait_ready(timeout_s=60) == 2  # the killed worker is back
        stats = runner.stats
    assert [r.candidate.key for r in results] == [c.key for c in cands]
    assert results[0].status == "failed" and "worker died" in results[0].error
    assert all(r.status in ("ok", "stopped") and r.accuracy is not None for r in results[1:])
    assert (stats.failed_by_death, stats.restarts) == (1, 1)

