"""Keep a long evaluation's memory at one batch: give glibc's freed heap back to the OS between batches.

glibc serves tensors below its (dynamically raised, up to 32 MB) mmap threshold from the heap and keeps
freed heap memory for reuse; across the batches of a large model this fragments, and the resident
size grows batch after batch (measured on spikformer-8-512 at 224x224, batch 8: 1010, 1232, 1453 MB
over the model in three identical forwards). ``malloc_trim`` gives the freed pages back (then: 1008,
1015, 1016 MB), about 0.1 s against a batch's seconds. Between evaluation batches
:func:`release_grown_heap` trims only when the held freed memory has *grown* by :data:`GROWTH_MB` since
the last trim (:class:`HeapReleaser`), so a small model whose batches reuse the same freed memory pays
nothing. :func:`release_free_heap` trims whenever more than ``min_mb`` is held. A no-op without glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

__all__ = ["GROWTH_MB", "HeapReleaser", "RELEASE_MIN_MB", "release_free_heap", "release_grown_heap"]

log = logging.getLogger(__name__)

#: Freed heap memory (MB) held before :func:`release_free_heap` gives it back to the OS.
RELEASE_MIN_MB = 256.0

#: Growth of the held freed heap (MB) after which :func:`release_grown_heap` trims.
GROWTH_MB = 64.0


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
    """Calls ``malloc_trim`` when the freed heap memory held has grown by ``min_mb`` since its last trim.

    Growth, not size, is what costs: the demo's batches leave about 300 MB of freed heap that the next
    batch reuses, and trimming it after every batch (then faulting the pages back in) took 10 % of its
    evaluation time (measured); a large model whose held heap grows batch after batch (fragmentation) is
    trimmed whenever it has grown by ``min_mb``. glibc keeps trimmed chunks on its free lists, so the
    held figure does not fall after a trim: the next trim waits for new growth.
    """

    def __init__(self, min_mb: float = RELEASE_MIN_MB) -> None:
        self.min_bytes = min_mb * 1e6
        self.held_after_trim = 0

    def __call__(self) -> bool:
        """Trim if the held freed memory grew by ``min_mb`` since the last trim; True when it trimmed."""
        libc = _libc()
        if libc is None or libc.mallinfo2().fordblks < self.held_after_trim + self.min_bytes:
            return False
        libc.malloc_trim(0)
        self.held_after_trim = libc.mallinfo2().fordblks
        return True


def release_free_heap(min_mb: float = RELEASE_MIN_MB) -> bool:
    """Return freed heap memory to the OS if more than ``min_mb`` is held; True when it trimmed."""
    return HeapReleaser(min_mb)()


_BETWEEN_BATCHES: list[HeapReleaser] = []


def release_grown_heap() -> bool:
    """Between evaluation batches: trim when this process's held freed heap grew by :data:`GROWTH_MB`."""
    if not _BETWEEN_BATCHES:
        _BETWEEN_BATCHES.append(HeapReleaser(GROWTH_MB))
    return _BETWEEN_BATCHES[0]()
