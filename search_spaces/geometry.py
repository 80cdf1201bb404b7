"""Feature-map geometry the families share (the cost models and the token groups use it)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pair", "pool_out"]


def pair(x: int | Sequence[int]) -> tuple[int, int]:
    """``(x, x)`` for an int, else the first two entries as ints."""
    return (int(x), int(x)) if isinstance(x, int) else (int(x[0]), int(x[1]))


def pool_out(hw: tuple[int, int]) -> tuple[int, int]:
    """Output size of MaxPool2d(3, 2, 1) or a 1×1 stride-2 conv: ⌊(h − 1)/2⌋ + 1."""
    return ((hw[0] - 1) // 2 + 1, (hw[1] - 1) // 2 + 1)
