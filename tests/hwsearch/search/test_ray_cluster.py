"""Joining a real two-node Ray cluster (``ray start --head`` plus a second ``ray start --address`` node on
this machine, token authentication as Ray 2.60 sets it up) through the console script, then stopping
only the processes this module started."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BIN = Path(sys.executable).parent
RAY_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ours(tag: str) -> list[int]:
    """Processes whose command line names this module's Ray folder."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and d.name != str(os.getpid()):
            try:
                if tag.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A head and a second node, one CPU each, token authentication; yields (address, env with token)."""
    temp = tempfile.mkdtemp(prefix="hwr", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in RAY_ENV}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), OMP_NUM_THREADS="1")
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}", "--disable-usage-stats",
              f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}"]
    try:
        subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
                        f"--dashboard-port={_free_port()}", f"--ray-client-server-port={_free_port()}", *common],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", env
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _ours(temp):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + 2
            while _ours(temp) and time.time() < deadline:
                time.sleep(0.2)
        assert not _ours(temp), "a process of this module's cluster survived"
        shutil.rmtree(temp, ignore_errors=True)


def _run(args: list[str], env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "hwsearch"), "-v", "run", "--strategy", "random", "--trials", "4", "--rates",
                           "0.25,0.5", "--eval-subset", "60", "--budget-mb", "0.62", "--out", str(out), "--quiet", *args],
                          env=env, capture_output=True, text=True, timeout=240, check=False)


def test_joining_without_the_token_names_the_cause_and_the_fix(cluster, tmp_path: Path) -> None:
    address, env = cluster
    bare = {k: v for k, v in env.items() if k not in RAY_ENV}
    bare["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    proc = _run(["--workers", "2", "--ray-address", address], bare, tmp_path / "a")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: cannot join the Ray cluster at {address}")
    assert "InvalidAuthToken" in proc.stderr and "RAY_AUTH_MODE=token" in proc.stderr


def test_workers_are_checked_against_the_cluster(cluster, tmp_path: Path) -> None:
    address, env = cluster
    proc = _run(["--workers", "3", "--ray-address", address], env, tmp_path / "b")
    assert proc.returncode == 2 and "--workers 3 exceeds the 2 CPUs of the Ray cluster" in proc.stderr, proc.stderr
    assert not (tmp_path / "b").exists()


def test_a_search_runs_across_both_nodes(cluster, quick_study_path: Path, tmp_path: Path) -> None:
    address, env = cluster
    out = tmp_path / "c"
    proc = _run(["--study", str(quick_study_path), "--workers", "2", "--ray-address", address], env, out)
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    assert "2 Ray workers on 2 node(s)" in proc.stderr
    trials = pd.read_csv(out / "trials.csv")
    own = trials[trials["tag"] != "profile"]
    assert len(own) == 4 and set(own["status"]) <= {"ok", "stopped"}
