"""Starting a private Ray instance or joining a cluster, in bounded time and with one-line errors.

Without ``--ray-address`` hwsearch starts a *private* local instance (``ray.init(address="local")``) bound to
the loopback address, so another Ray instance on the host is never joined by accident. With an address it
first checks that something listens there (:data:`CONNECT_TIMEOUT_S`), then joins in a child process
bounded by :data:`JOIN_TIMEOUT_S` (a failed join only prints Ray's retry warnings there), and turns the
cause into one line: nothing listening, token authentication, Ray version mismatch. The probe also reads the
cluster's CPUs, so ``--workers`` is checked before any model is loaded.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from hwsearch.errors import UserError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "JOIN_TIMEOUT_S",
    "ClusterInfo",
    "check_workers",
    "local_cpus",
    "probe_cluster",
    "start_ray",
]

log = logging.getLogger(__name__)

#: Seconds to wait for a TCP connection to the cluster's address.
CONNECT_TIMEOUT_S = 5.0
#: Seconds a trial join (in a child process) may take before the address is reported unreachable.
JOIN_TIMEOUT_S = 60.0
AUTH_FIX = ("the cluster uses token authentication and this process has no valid token (InvalidAuthToken); "
            "export RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token "
            "or RAY_AUTH_TOKEN_PATH; `ray get-auth-token` on the head prints it)")

_PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
res = ray.cluster_resources()
print("HWSEARCH_PROBE " + json.dumps({"cpus": res.get("CPU", 0.0), "nodes": len([n for n in ray.nodes() if n["Alive"]]),
                                      "version": ray.__version__}), flush=True)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfo:
    """What a trial join found: CPUs and live nodes of the cluster."""

    cpus: float
    nodes: int


def local_cpus() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` of an address (``ray://`` prefix allowed); None for ``auto``."""
    if address == "auto":
        return None
    bare = address.split("://", 1)[-1]
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--ray-address {address!r} is not HOST:PORT; pass e.g. 127.0.0.1:6379 (the head's GCS port) "
                        "or auto")
    return host.strip("[]") or "127.0.0.1", int(port)


def _cause(address: str, text: str) -> str:
    """One line naming why joining ``address`` failed, from the child's output."""
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        return f"cannot join the Ray cluster at {address}: {AUTH_FIX}"
    if "version mismatch" in text.lower() or "Version mismatch" in text:
        import ray

        line = next((x for x in text.splitlines() if "ersion" in x and "mismatch" in x.lower()), "")
        return (f"cannot join the Ray cluster at {address}: Ray version mismatch ({line.strip()[:160]}); install the "
                f"cluster's Ray version here (this process has ray {ray.__version__}, Python "
                f"{sys.version_info.major}.{sys.version_info.minor})")
    if "Could not find any running Ray instance" in text or "ConnectionError" in text:
        last = [x for x in text.splitlines() if "Error" in x]
        why = last[-1].split(":", 1)[-1].strip()[:200] if last else "no Ray cluster answered"
        return f"cannot join the Ray cluster at {address}: {why}; start it with `ray start --head` or fix --ray-address"
    last = [x for x in text.splitlines() if x.strip()]
    return f"cannot join the Ray cluster at {address}: {(last[-1] if last else 'unknown cause')[:200]}; fix --ray-address"


def probe_cluster(address: str, *, timeout_s: float = JOIN_TIMEOUT_S) -> ClusterInfo:
    """Check that ``address`` can be joined (bounded time); raise :class:`UserError` naming the cause."""
    hp = _host_port(address)
    if hp is not None:
        try:
            with socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError as e:
            raise UserError(f"cannot join the Ray cluster at {address}: nothing is listening there "
                            f"({e.strerror or type(e).__name__}); start one with `ray start --head --port {hp[1]}` "
                            "or fix --ray-address") from None
    code, out = _run_probe(address, timeout_s)
    if code is None:
        raise UserError(f"cannot join the Ray cluster at {address}: no answer within {timeout_s:g} s (is it a Ray "
                        "head's GCS port? a firewall?); fix --ray-address")
    line = next((x for x in out.splitlines() if x.startswith("HWSEARCH_PROBE ")), None)
    if code != 0 or line is None:
        raise UserError(_cause(address, out))
    data = json.loads(line.split(" ", 1)[1])
    return ClusterInfo(cpus=float(data["cpus"]), nodes=int(data["nodes"]))


def _run_probe(address: str, timeout_s: float) -> tuple[int | None, str]:
    """Run the trial join in a child; its exit code (None: timed out) and output.

    Ray retries a refused token for about 20 s, one warning a second; the first such warning ends the
    child at once, since retrying cannot fix a missing token.
    """
    proc = subprocess.Popen([sys.executable, "-c", _PROBE, address], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "RAY_BACKEND_LOG_LEVEL": "warning"})
    lines: list[str] = []
    refused = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "InvalidAuthToken" in line:
                refused.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and not refused.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    code = proc.poll()
    if code is None:
        proc.kill()
        proc.wait()
        code = 1 if refused.is_set() else None
    reader.join(timeout=5)
    return code, "".join(lines)


def check_workers(workers: int, address: str | None) -> ClusterInfo | None:
    """Validate ``--workers`` (and join ``--ray-address`` once) before any model is loaded."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if address:
        info = probe_cluster(address)
        if workers > info.cpus:
            raise UserError(f"--workers {workers} exceeds the {info.cpus:g} CPUs of the Ray cluster at {address} "
                            f"({info.nodes} nodes); use --workers {max(1, int(info.cpus))} or add nodes")
        return info
    if workers > 1 and workers > local_cpus():
        raise UserError(f"--workers {workers} exceeds the {local_cpus()} CPU cores of this machine; use --workers "
                        f"{local_cpus()} or less, or join a cluster with --ray-address")
    return None


def start_ray(workers: int, address: str | None, threads: int | None = None) -> bool:
    """See :func:`_start_ray`; afterwards SIGINT / SIGTERM are hwsearch's again (``ray.init`` replaces them)."""
    from hwsearch import interrupts

    try:
        return _start_ray(workers, address, threads)
    finally:
        interrupts.reinstall()


def _start_ray(workers: int, address: str | None, threads: int | None = None) -> bool:
    """Join ``address`` or start a private local instance (``workers`` x ``threads`` CPUs); True when this
    call initialised Ray here.

    ``ray.shutdown()`` then stops a private instance (every process it started) or only disconnects from a
    joined cluster.
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        probe_cluster(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as e:  # noqa: BLE001 - the probe passed; report whatever changed since
            raise UserError(_cause(address, f"{type(e).__name__}: {e}")) from None
        cpus = float(ray.cluster_resources().get("CPU", 0.0))  # type: ignore[no-untyped-call]
        if workers > cpus:
            ray.shutdown()
            raise UserError(f"--workers {workers} exceeds the {cpus:g} CPUs of the Ray cluster at {address}; "
                            f"use --workers {max(1, int(cpus))} or add nodes")
        return True
    check_workers(workers, None)  # compare and sensitivity come here without the command-line check
    try:
        ray.init(address="local", num_cpus=workers * (threads or 1), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, _node_ip_address="127.0.0.1")
    except Exception as e:  # noqa: BLE001 - a failed private start is the user's environment
        raise UserError(f"cannot start a private local Ray instance: {str(e).splitlines()[0][:200]}; free space in "
                        "/dev/shm and /tmp, or run serially with --workers 1") from None
    return True
