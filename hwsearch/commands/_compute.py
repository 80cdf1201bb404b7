"""``--threads`` and ``--device``: one helper for every command that runs the model."""

from __future__ import annotations

import argparse
from typing import TypedDict

from hwsearch.commands._values import positive_int
from hwsearch.devices import DEVICES, Compute

__all__ = ["ComputeSettings", "add_compute_options", "compute_from_args", "compute_settings"]


class ComputeSettings(TypedDict):
    """The keyword arguments :func:`compute_settings` gives :func:`hwsearch.search.session.prepare`."""

    threads: int | None
    device: str | None


def add_compute_options(p: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` and ``--device cpu|cuda|auto`` to a command."""
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads per process (with --workers: per worker; default: measured, the CPUs this "
                        "process may use minus the current load average, or $OMP_NUM_THREADS when set)")
    p.add_argument("--device", default="cpu", metavar="|".join(DEVICES),
                   help="where the model runs: cpu (default), cuda (or cuda:N; fails when no GPU is visible) or "
                        "auto (cuda when a GPU is visible, else cpu)")


def compute_from_args(args: argparse.Namespace) -> Compute:
    """Validate ``--threads`` / ``--device`` (one-line errors) and set this process's torch threads."""
    return Compute.resolve(threads=getattr(args, "threads", None), device=getattr(args, "device", None))


def compute_settings(args: argparse.Namespace) -> ComputeSettings:
    """``threads`` (None: measured default) and ``device`` for :func:`hwsearch.search.session.prepare`, unresolved."""
    return {"threads": getattr(args, "threads", None), "device": getattr(args, "device", None)}
