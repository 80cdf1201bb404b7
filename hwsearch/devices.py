"""Where and how wide evaluations run: ``--device cpu|cuda|auto`` and ``--threads``.

The default thread count is measured, not fixed: the CPUs this process may use
(``os.sched_getaffinity``) minus the run-queue load already on them (the 1-minute load average). On a
2-core machine already running two busy processes a second torch thread only competes for the same
cores (measured on the demo: 18-41 s per batch with 2 threads against 2.7-4.2 s with 1); on an idle
machine every core is used. ``OMP_NUM_THREADS`` in the environment, when set, is taken as the user's
choice. An explicit ``--threads N`` always wins.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwsearch.errors import UserError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "Compute", "available_cpus", "default_threads", "resolve_device", "apply_threads"]

log = logging.getLogger(__name__)

#: What ``--device`` accepts (``cuda:N`` picks one GPU).
DEVICES = ("cpu", "cuda", "auto")
_CUDA_N = re.compile(r"^cuda:\d+$")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; the machine's count where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(*, cpus: int | None = None, load: float | None = None) -> int:
    """The measured default: ``OMP_NUM_THREADS`` if set, else free CPUs = CPUs - current load (>= 1).

    ``cpus`` / ``load`` override the measured values (CPUs available, 1-minute load average).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cpus = available_cpus() if cpus is None else cpus
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cpus, int(cpus - load + 0.5)))


def resolve_device(name: str | None) -> "torch.device":
    """``cpu``, ``cuda``/``cuda:N`` (must be visible) or ``auto`` (CUDA when visible) -> a torch device."""
    import torch

    name = (name or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or _CUDA_N.match(name):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA GPU is visible to torch on this machine; "
                            "use --device cpu (or auto)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA GPU(s) are visible; "
                            f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return torch.device(name)
    raise UserError(f"unknown --device {name!r}; use cpu, cuda (or cuda:N) or auto")


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to ``threads`` (None: :func:`default_threads`); returns the count."""
    import torch

    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    n = threads if threads is not None else default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@dataclass(frozen=True, slots=True, kw_only=True)
class Compute:
    """Resolved ``--threads`` and ``--device`` of one command (``threads``: torch threads per process)."""

    threads: int
    device: str = "cpu"

    @classmethod
    def resolve(cls, *, threads: int | None = None, device: str | None = None) -> Compute:
        """Validate both (one-line errors) and set the threads of this process."""
        dev = resolve_device(device)
        n = apply_threads(threads)
        log.info("compute: %d torch thread(s), device %s", n, dev)
        return cls(threads=n, device=str(dev))
