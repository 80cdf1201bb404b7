"""argparse value types shared by the commands: each rejects a bad value at parse time (exit 2, one line)."""

from __future__ import annotations

import argparse
import math

__all__ = ["count", "fraction", "positive_float", "positive_int", "rate_list", "MAX_RATE"]

#: A rate is the fraction of a group removed; 1 would remove it entirely (min widths forbid that).
MAX_RATE = 1.0


def _whole(text: str, least: int) -> int:
    expected = f"expected a whole number >= {least}, got {text!r}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(expected) from None
    if value < least:
        raise argparse.ArgumentTypeError(expected)
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _whole(text, 1)


def count(text: str) -> int:
    """A whole number >= 0."""
    return _whole(text, 0)


def _finite(text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _finite(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = _finite(text, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def rate_list(text: str) -> tuple[float, ...]:
    """Comma-separated pruning rates, each in (0, 1), e.g. ``0.25,0.5,0.75``."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates in (0, 1) such as 0.25,0.5, got {text!r}")
    rates = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"rate {part!r} is not a number; give rates in (0, 1) such as 0.25,0.5") from None
        if not math.isfinite(value) or not 0 < value < MAX_RATE:
            raise argparse.ArgumentTypeError(
                f"rate {part} is outside (0, 1): a rate is the fraction of a group removed (0 keeps it, 1 removes it)")
        rates.append(value)
    return tuple(sorted(set(rates)))
