"""hwsearch.heap: freed heap memory held by glibc goes back to the OS between evaluation batches."""

from __future__ import annotations

import pytest

from hwsearch import heap


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(heap._libc() is None, reason="needs glibc (mallinfo2, malloc_trim)")
def test_release_free_heap_gives_held_memory_back() -> None:
    blocks = [bytes([1]) * 100_000 for _ in range(3000)]  # 300 MB of heap chunks (below the mmap threshold)
    top = bytes([1]) * 100_000  # allocated last: glibc cannot shrink the heap from its top by itself
    del blocks
    held = _rss_mb()
    assert heap.release_free_heap(min_mb=1e6) is False  # under the threshold: nothing done
    assert _rss_mb() > held - 50
    assert heap.release_free_heap(min_mb=100) is True
    assert _rss_mb() < held - 200
    del top


@pytest.mark.skipif(heap._libc() is None, reason="needs glibc (mallinfo2, malloc_trim)")
def test_heap_releaser_trims_at_most_every_interval() -> None:
    releaser = heap.HeapReleaser(min_mb=100, every_s=3600)
    for expected in (True, False):  # the second time the same memory is held again, but too soon
        blocks = [bytes([1]) * 100_000 for _ in range(2000)]  # 200 MB of heap chunks
        top = bytes([1]) * 100_000
        del blocks
        held = _rss_mb()
        assert releaser() is expected
        assert (_rss_mb() < held - 150) is expected
        del top


@pytest.mark.skipif(heap._libc() is None, reason="needs glibc (mallinfo2, malloc_trim)")
def test_first_batch_starts_from_a_trimmed_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ran before an evaluation (here: 200 MB freed) is released before its first forward, not after it."""
    import torch

    from hwsearch.search.metrics import correct_per_batch

    monkeypatch.setattr(heap._between_batches(), "last_trim", None)  # no trim of another test just before
    seen: list[float] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(_rss_mb())
            return torch.zeros(len(x), 2)

    blocks = [bytes([1]) * 100_000 for _ in range(2000)]
    top = bytes([1]) * 100_000
    del blocks
    held = _rss_mb()
    assert list(correct_per_batch(Probe(), [(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))])) == [(3, 3)]
    assert seen[0] < held - 150
    del top
