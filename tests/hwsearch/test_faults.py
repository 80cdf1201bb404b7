"""Runs that survive faults, through the console script: real signals, real Ray, a real SIGKILLed worker.

- SIGTERM while profiling on Ray: finished evaluations kept, partial outputs, exit 143, no Ray process left.
- SIGINT while searching, SIGTERM while re-measuring, SIGINT while writing: each run continued with the
  printed ``--resume`` command; exits 130 / 143 / 130 and nothing is evaluated twice.
- A Ray worker SIGKILLed mid-run fails exactly the candidate it was running.
- Bad Ray options fail at once with one line; ``hwsearch --help`` loads no torch.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

HWSEARCH = str(Path(sys.executable).parent / "hwsearch")
PROFILE = 18  # the quick study's shared profile: 9 groups x 2 rates


def _quick(study: Path, out: Path, trials: int = 6) -> list[str]:
    return ["run", "--study", str(study), "--strategy", "random", "--trials", str(trials), "--rates", "0.25,0.5",
            "--eval-subset", "60", "--budget-mb", "0.62", "--out", str(out), "--quiet"]


def _trials(journal: Path, study: str) -> int:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not journal.exists():
        return 0
    try:
        return len(optuna.load_study(study_name=study, storage=JournalStorage(JournalFileBackend(str(journal)))).trials)
    except KeyError:
        return 0


def _wait(proc: subprocess.Popen[str], until: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not until():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "the run never reached the stage"
        time.sleep(0.1)


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children of children included), from /proc."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(p)
    return alive


def _line_waiter(proc: subprocess.Popen[str], needle: str) -> Callable[[], bool]:
    """True once ``needle`` appeared on the run's stderr (read line by line; the rest is kept)."""
    seen: list[str] = []

    def found() -> bool:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        seen.append(line)
        return needle in line

    found.seen = seen  # type: ignore[attr-defined]
    return found


@pytest.mark.ray
@pytest.mark.slow
def test_sigterm_while_profiling_on_ray_keeps_results_and_leaves_no_process(quick_study_path: Path,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "t"
    env = {**os.environ, "HWSEARCH_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([HWSEARCH, *_quick(quick_study_path, out), "--workers", "2"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait(proc, lambda: _trials(out / "optuna.journal", "profile") >= 3)
    ray_processes = _descendants(proc.pid)
    assert len(ray_processes) >= 4  # raylet, GCS, agents, the two workers
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "interrupted while profiling" in stdout
    resume = err.strip().splitlines()[-1].strip()
    assert resume.startswith("hwsearch run ") and resume.endswith("--resume") and "--workers 2" in resume
    trials = pd.read_csv(out / "trials.csv")
    assert 3 <= len(trials) < PROFILE and set(trials["tag"]) == {"profile"}
    assert len(trials) == _trials(out / "optuna.journal", "profile")  # every stored evaluation is in the table
    assert "Interrupted" in (out / "report.md").read_text()
    assert list(pd.read_csv(out / "pareto.csv").columns)[:3] == ["number", "tag", "status"]
    deadline = time.time() + 15
    while _alive(ray_processes) and time.time() < deadline:
        time.sleep(0.2)
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in _alive(ray_processes)}
    assert not left, f"orphan Ray processes: {left}"


TRIALS = 40


@pytest.mark.slow
def test_signals_at_every_later_stage_then_resume(demo_study_path: Path, tmp_path: Path) -> None:
    """SIGINT while searching, SIGTERM while re-measuring, SIGINT while writing; each resumed as printed.

    The demo study's full confirmation and test splits (480 images per re-measured candidate) keep the
    re-measuring stage long enough for the signal to land inside it."""
    quick_study_path = demo_study_path
    out = tmp_path / "s"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(argv: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen([HWSEARCH, "-v", *argv], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    # 1. the strategy loop; 40 trials, so the signal lands before the last however fast evaluations are
    proc = start(_quick(quick_study_path, out, trials=TRIALS))
    _wait(proc, lambda: _trials(out / "optuna.journal", "random") >= PROFILE + 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    first = pd.read_csv(out / "trials.csv")
    own = first[first["tag"] != "profile"]
    assert 2 <= len(own) < TRIALS and "Interrupted" in (out / "report.md").read_text()
    resume = shlex.split(err.strip().splitlines()[-1])
    assert resume[0] == "hwsearch" and resume[-1] == "--resume"

    for stage, sig, code in (("re-measuring", signal.SIGTERM, 143), ("writing the outputs", signal.SIGINT, 130)):
        proc = start(resume[2:])  # the printed command (its -v included)
        waiter = _line_waiter(proc, stage)
        _wait(proc, waiter)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        err = "".join(waiter.seen) + err  # type: ignore[attr-defined]
        assert proc.returncode == code, err
        assert "Traceback" not in err and err.strip().splitlines()[-1].strip().endswith("--resume")
        report = (out / "report.md").read_text()
        assert "Interrupted" in report and stage.split()[0] in report
        table = pd.read_csv(out / "trials.csv")
        assert len(table[table["tag"] != "profile"]) == TRIALS  # the search itself had finished
        assert list(table["key"][: len(first)]) == list(first["key"])  # earlier trials kept, in order
    assert (out / "pareto.png").is_file() and (out / "best" / "model.pth").is_file()  # writing was completed
    assert _trials(out / "optuna.journal", "random") == PROFILE + TRIALS  # nothing evaluated twice


@pytest.mark.ray
@pytest.mark.slow
def test_a_sigkilled_ray_worker_fails_exactly_its_candidate(quick_study_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "w"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # 16 trials: the kill (after 2) lands while candidates are still running, however fast the machine
    proc = subprocess.Popen([HWSEARCH, "-v", *_quick(quick_study_path, out, trials=16), "--workers", "2"], env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiter = _line_waiter(proc, "Ray workers on")
    _wait(proc, waiter)
    pids = [int(p) for p in re.findall(r"\d+", waiter.seen[-1].split("pids", 1)[1])]  # type: ignore[attr-defined]
    _wait(proc, lambda: _trials(out / "optuna.journal", "random") >= PROFILE + 2)
    busy = _busiest(pids)
    os.kill(busy, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 3), err
    own = pd.read_csv(out / "trials.csv")
    own = own[own["tag"] != "profile"]
    assert len(own) == 16
    failed = own[own["status"] == "failed"]
    assert len(failed) == 1 and "worker died" in failed["error"].iloc[0], own[["status", "error"]]
    assert "1 candidate(s) failed by a worker death" in err


def _busiest(pids: list[int]) -> int:
    """The worker using the CPU now (the one evaluating): CPU ticks over 0.3 s."""
    def ticks(p: int) -> int:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = {p: ticks(p) for p in pids}
    time.sleep(0.3)
    return max(pids, key=lambda p: ticks(p) - before[p])


@pytest.mark.parametrize(("argv", "needle"), [
    (["--ray-address", "127.0.0.1:1"], "cannot join the Ray cluster at 127.0.0.1:1: nothing is listening there"),
    (["--workers", "1000"], "--workers 1000 exceeds the"),
])
def test_bad_ray_options_fail_at_once_with_one_line(argv: list[str], needle: str, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run([HWSEARCH, "run", "--out", str(tmp_path / "x"), *argv], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert time.perf_counter() - t0 < 15 and not (tmp_path / "x").exists()  # before any model was loaded


def test_ray_options_checked_in_process() -> None:
    from hwsearch.errors import UserError
    from hwsearch.search.runners import check_workers

    with pytest.raises(UserError, match="is not HOST:PORT"):
        check_workers(2, "nonsense")
    with pytest.raises(UserError, match="--workers must be at least 1, got 0"):
        check_workers(0, None)
    assert check_workers(1, None) is None


def test_help_loads_no_torch_and_takes_little_cpu() -> None:
    code = ("import resource, sys, hwsearch.cli as c\n"
            "c.build_parser().format_help()\n"
            "u = resource.getrusage(resource.RUSAGE_SELF)\n"
            "print('torch' in sys.modules, u.ru_utime + u.ru_stime)")
    loaded, cpu = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == "False" and float(cpu) < 1.0
    proc = subprocess.run([HWSEARCH, "--help"], capture_output=True, text=True, check=True)
    assert "run" in proc.stdout and proc.stderr == ""  # no warning (Triton or other) before argument parsing


def test_sigint_while_compare_profiles_then_resume(quick_study_path: Path, tmp_path: Path) -> None:
    """compare: a signal during the shared profile keeps its evaluations and prints the resume command;
    the resumed comparison evaluates none of them again."""
    out = tmp_path / "c"
    env = {**os.environ, "HWSEARCH_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    argv = ["compare", "--study", str(quick_study_path), "--strategies", "prioritized", "--eval-budget", "2",
            "--rates", "0.25,0.5", "--eval-subset", "60", "--budget-mb", "0.62", "--out", str(out), "--quiet"]
    proc = subprocess.Popen([HWSEARCH, *argv], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait(proc, lambda: _trials(out / "optuna.journal", "profile") >= 3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    stored = _trials(out / "optuna.journal", "profile")
    assert 3 <= stored < PROFILE and pd.read_csv(out / "comparison.csv")["interrupted"].all()
    resume = shlex.split(err.strip().splitlines()[-1])
    assert resume[:2] == ["hwsearch", "compare"] and resume[-1] == "--resume"
    done = subprocess.run([HWSEARCH, *resume[1:]], env=env, text=True, capture_output=True, timeout=300)
    assert done.returncode in (0, 3), done.stderr
    assert _trials(out / "optuna.journal", "profile") == PROFILE  # the stored ones were not evaluated again
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["strategy"]) == ["(shared profile)", "prioritized"]
    assert table["evaluations"].iloc[0] == PROFILE - stored
