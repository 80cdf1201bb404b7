"""The shared sensitivity profile, in one place: every searched group alone at every level, evaluated once.

PrimeSVT's robustness profiling and PSViT's sensitivity analysis are the same measurement. Here:

* ``table``: :func:`sensitivity_candidates` (what is measured) and :class:`SensitivityTable` (the
  results as a table strategies read, NNI / Distiller CSV exports, the plot);
* ``strategy``: :class:`ProfileAll`, the strategy that asks those candidates, run through the same
  ask/tell loop as every search;
* ``cache``: :func:`ensure_profile`, the profile of a run's setup: from a given table file, the user
  cache (keyed by :func:`profile_fingerprint`), or computed once and cached.

Strategies given no table (a library user driving them directly) profile through
:meth:`~hwsearch.search.strategies._stepwise.StepwiseStrategy` with the same candidates and table.
"""

from __future__ import annotations

import importlib
from typing import Any

from hwsearch.search.profiling.table import (
    PROFILE_TAG, SensitivityEntry, SensitivityMeta, SensitivityTable, sensitivity_candidates,
)

# The loop-dependent parts load on first use (the strategies import the table from here).
_LAZY = {
    "ProfileAll": "hwsearch.search.profiling.strategy",
    "Profile": "hwsearch.search.profiling.cache",
    "cache_dir": "hwsearch.search.profiling.cache",
    "ensure_profile": "hwsearch.search.profiling.cache",
    "load_table_file": "hwsearch.search.profiling.cache",
    "profile_fingerprint": "hwsearch.search.profiling.cache",
}

__all__ = ["PROFILE_TAG", "SensitivityEntry", "SensitivityMeta", "SensitivityTable", "sensitivity_candidates", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hwsearch.search.profiling' has no attribute {name!r}")
