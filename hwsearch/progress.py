"""Progress bars on stderr: live on a terminal, a plain line every 30 s otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar", "NON_TTY_INTERVAL_S"]

NON_TTY_INTERVAL_S = 30.0


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm[Any]:
    """A tqdm bar on stderr; disabled when ``enabled`` is False; throttled when stderr is not a terminal."""
    tty = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.1 if tty else NON_TTY_INTERVAL_S)
    kwargs.setdefault("dynamic_ncols", tty)
    return tqdm(iterable, disable=not enabled, file=sys.stderr, **kwargs)
