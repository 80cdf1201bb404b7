"""Checks of output paths, storage, Ray address and input files, run before any model is loaded.

A search measures its baseline and profile before it writes anything; a bad ``--out``, ``--storage``,
``--ray-address``, ``--resume`` or ``--sensitivity`` must fail before that work, not after it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from hwsearch.errors import UserError

__all__ = ["check_out_dir", "check_out_file", "check_search_args"]



def _writable_parent(path: Path) -> Path:
    """The nearest existing ancestor of ``path`` (what must be writable to create it)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(path: Path, flag: str = "--out") -> None:
    """``path`` is a writable folder or can be created as one."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder; pass a folder path (it is created if missing)")
    anchor = _writable_parent(path)
    if not anchor.is_dir():
        raise UserError(f"{flag} {path}: {anchor} is a file, so the folder cannot be created; pick another path")
    _probe(anchor, path, flag)


def _probe(folder: Path, path: Path, flag: str) -> None:
    """Create and delete a file in ``folder``: the only test that also holds for root and read-only mounts."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".hwsearch-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write in {folder} ({e.strerror or type(e).__name__}); "
                        "pick a folder you can write to") from None


def check_out_file(path: Path, flag: str = "--out") -> None:
    """``path`` is a file that can be written (not a folder; its folder writable or creatable)."""
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; pass a file path such as {path / 'model.pth'}")
    anchor = _writable_parent(path.parent)
    if not anchor.is_dir():
        raise UserError(f"{flag} {path}: {anchor} is a file, so the folder cannot be created; pick another path")
    _probe(anchor, path, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} is read-only; pick another path")


def _check_storage(url: str) -> None:
    if url.endswith(".journal") and "://" not in url:
        check_out_file(Path(url), "--storage")
        return
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise UserError(f"--storage {url!r} is neither an Optuna URL nor a .journal path; use sqlite:///runs/x.db, "
                        "postgresql://..., or runs/x.journal")
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise UserError(f"--storage {url!r}: a SQLite URL has three slashes then the file, e.g. sqlite:///runs/x.db")
        check_out_file(Path(rest[1:] or "."), "--storage")


def _check_resume(args: argparse.Namespace, out: Path) -> None:
    url = getattr(args, "storage", None)
    if url and "://" in url and not url.startswith("sqlite:///"):
        return  # a database server: only Optuna can tell
    path = Path(url[len("sqlite:///"):]) if url and url.startswith("sqlite:///") else Path(url) if url else out / "optuna.journal"
    if not path.is_file() or path.stat().st_size == 0:
        raise UserError(f"--resume: nothing ran yet ({path} does not exist); drop --resume to start the run")


def _check_sensitivity(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"--sensitivity {path}: no such file; pass a sensitivity.json / .csv written by "
                        "`hwsearch sensitivity`, or drop --sensitivity to profile")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"--sensitivity {path} is not valid JSON ({e}); pass a sensitivity.json written by hwsearch") from None
        if not isinstance(data, dict) or "entries" not in data:
            raise UserError(f"--sensitivity {path} is not a sensitivity table (a JSON object with `entries`); "
                            "pass sensitivity.json from a run directory")


def check_search_args(args: argparse.Namespace, out: Path) -> None:
    """Every check ``run``, ``compare`` and ``sensitivity`` can make before loading the model."""
    from hwsearch.search.runners.cluster import check_workers

    check_out_dir(out)
    if getattr(args, "storage", None):
        _check_storage(args.storage)
    # --workers against this machine's cores, or a bounded trial join of --ray-address and its CPUs
    check_workers(getattr(args, "workers", 1), getattr(args, "ray_address", None))
    if getattr(args, "resume", False):
        _check_resume(args, out)
    if getattr(args, "sensitivity", None) is not None:
        _check_sensitivity(args.sensitivity)
