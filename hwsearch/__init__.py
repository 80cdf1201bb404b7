"""hwsearch: hardware-aware structured-pruning search for Spiking Vision Transformers.

The public API is re-exported here lazily, so ``import hwsearch`` stays cheap::

    import hwsearch
    study = hwsearch.load_study("studies/demo.toml")
    loaded = hwsearch.load_model(study.checkpoint, study.model)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_study": "hwsearch.study",
    "Study": "hwsearch.study",
    "load_model": "hwsearch.checkpoints",
    "read_checkpoint": "hwsearch.checkpoints",
    "save_checkpoint": "hwsearch.checkpoints",
    "create_model": "search_spaces",
    "list_models": "search_spaces",
    "UserError": "hwsearch.errors",
    "run": "hwsearch.runs",
    "compare": "hwsearch.comparison",
    "prune": "hwsearch.pruning",
    "load_pruned": "hwsearch.pruning",
    "PruningPlan": "hwsearch.pruning",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hwsearch' has no attribute {name!r}")
