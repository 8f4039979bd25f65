"""metanas: meta-learning-guided neural architecture and hyperparameter search on Ray.

Heavy dependencies (ray, torch) load only when the names that need them are used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use, PEP 562)
_EXPORTS = {
    "load": "metanas.platform.campaign",
    "run_campaign": "metanas.platform.campaign",
    "load_campaign": "metanas.platform.config",
    "search": "metanas.platform.search",
    "propose": "metanas.platform.search",
    "explain_search": "metanas.platform.explain_search",
    "MemorySampler": "metanas.memory.sampler",
    "MemoryCallback": "metanas.memory.callback",
    "SearchFailed": "metanas.searchers.base",
    "SearchInterrupted": "metanas.searchers.base",
    "Learner": "metanas.searchers.darts.learner",
    "CellSpace": "metanas.searchers.darts.cell_space",
    "SearchSpace": "metanas.searchers.space",
    "Categorical": "metanas.searchers.space",
    "Float": "metanas.searchers.space",
    "Int": "metanas.searchers.space",
    "Ordinal": "metanas.searchers.space",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'metanas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
