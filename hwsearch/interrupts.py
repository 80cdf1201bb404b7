"""SIGINT and SIGTERM as one interruption: finished work is kept, partial outputs written, exit 130 / 143.

The CLI calls :func:`install` once: both signals then raise :class:`Interrupted` (a ``KeyboardInterrupt``,
so every ``except KeyboardInterrupt`` that stores finished evaluations handles SIGTERM too). Inside
:func:`deferred` (writing the outputs) a signal is only recorded, so files are never left half-written;
the caller asks :func:`pending` afterwards. :func:`exit_code` is ``128 + signal`` of the last one received.
Ray replaces the SIGTERM handler in ``ray.init``; :func:`reinstall` puts ours back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "deferred", "exit_code", "install", "pending", "received", "reinstall"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM once :func:`install` was called."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    installed = False
    defer = 0
    pending: int | None = None
    last: int | None = None


def _handler(signum: int, frame: FrameType | None) -> None:
    _State.last = signum
    if _State.defer:
        _State.pending = signum
        return
    raise Interrupted(signum)


def install() -> None:
    """Route SIGINT and SIGTERM to :class:`Interrupted` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in _SIGNALS:
        signal.signal(s, _handler)
    _State.installed = True


def reinstall() -> None:
    """Put the handlers back after a library (Ray) replaced them, if :func:`install` was called."""
    if _State.installed:
        install()


@contextmanager
def deferred() -> Iterator[None]:
    """Record, do not raise, signals arriving inside the block (see :func:`pending`)."""
    _State.defer += 1
    try:
        yield
    finally:
        _State.defer -= 1


def pending() -> int | None:
    """The signal recorded inside :func:`deferred` (cleared by this call), or None."""
    signum, _State.pending = _State.pending, None
    return signum


def received() -> int | None:
    """The last SIGINT / SIGTERM received since :func:`install`, or None."""
    return _State.last


def exit_code(default: int = 130) -> int:
    """``128 + signal`` of the last interruption (130 SIGINT, 143 SIGTERM); ``default`` when none."""
    return 128 + _State.last if _State.last is not None else default
