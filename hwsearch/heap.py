"""Keep a long evaluation's memory at one batch: give glibc's freed heap back to the OS between batches.

glibc serves tensors below its (dynamically raised, up to 32 MB) mmap threshold from the heap and keeps
freed heap memory for reuse; across the batches of a large model this fragments, and the resident
size grows batch after batch (measured on spikformer-8-512 at 224x224, batch 8: 1010, 1232, 1453 MB
over the model in three identical forwards). ``malloc_trim`` gives the freed pages back (then: 1008,
1015, 1016 MB). A trim and the page faults that follow it cost tens of milliseconds: nothing against a
large model's batch of seconds, but 10 % of the demo's evaluation time when done after each of its
0.2 s batches (measured). So between evaluation batches :func:`release_heap_between_batches` trims when more than
:data:`RELEASE_MIN_MB` of freed memory is held and the last trim is at least :data:`TRIM_EVERY_S`
seconds ago (:class:`HeapReleaser`). :func:`hwsearch.search.metrics.correct_per_batch` asks before the first batch
too, since whatever ran before the evaluation (a previous forward, calibration, pruning) may have left freed
memory resident that the first batch's peak would add to: on spikformer-8-512 (256 streamed images, batch
16, after one untrimmed forward) the first batch peaked 420 MB above the later ones (measured with the
search spaces of commit df28c89: 2,518 MB over the process before the model, goal 2,266 MB; with the trim
before the first batch 2,198 MB). :func:`release_free_heap` trims whenever more than ``min_mb`` is held. No
process-wide allocator setting (``mallopt``) is changed. A no-op without glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import time

__all__ = ["HeapReleaser", "RELEASE_MIN_MB", "release_free_heap", "release_heap_between_batches", "TRIM_EVERY_S"]

log = logging.getLogger(__name__)

#: Freed heap memory (MB) held before :func:`release_free_heap` gives it back to the OS.
RELEASE_MIN_MB = 64.0

#: Seconds between two trims of :func:`release_heap_between_batches` (a trim costs tens of ms: at most ~1 %).
TRIM_EVERY_S = 5.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallinfo2") and hasattr(libc, "malloc_trim")):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return libc


class HeapReleaser:
    """Calls ``malloc_trim`` when more than ``min_mb`` of freed heap is held, at most every ``every_s`` seconds."""

    def __init__(self, min_mb: float = RELEASE_MIN_MB, every_s: float = 0.0) -> None:
        self.min_bytes = min_mb * 1e6
        self.every_s = every_s
        self.last_trim: float | None = None

    def __call__(self) -> bool:
        """Trim if due; True when it trimmed."""
        libc = _libc()
        if libc is None:
            return False
        if self.last_trim is not None and time.monotonic() - self.last_trim < self.every_s:
            return False
        if libc.mallinfo2().fordblks < self.min_bytes:
            return False
        held = libc.mallinfo2().fordblks
        libc.malloc_trim(0)
        log.debug("gave %.0f MB of freed heap back to the OS", held / 1e6)
        self.last_trim = time.monotonic()
        return True


def release_free_heap(min_mb: float = RELEASE_MIN_MB) -> bool:
    """Return freed heap memory to the OS if more than ``min_mb`` is held; True when it trimmed."""
    return HeapReleaser(min_mb)()


@functools.cache
def _between_batches() -> HeapReleaser:
    """The process's one releaser between evaluation batches (it remembers when it last trimmed)."""
    return HeapReleaser(RELEASE_MIN_MB, every_s=TRIM_EVERY_S)


def release_heap_between_batches() -> bool:
    """Between evaluation batches: trim when over :data:`RELEASE_MIN_MB` held, at most every :data:`TRIM_EVERY_S`."""
    return _between_batches()()
