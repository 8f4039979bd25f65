"""The task memory: typed records (Arrow schema), the Parquet + FAISS store, and what a search
learns from them (past tasks, the memory model, warm-start policies, the Optuna sampler).

Names load on first use (PEP 562), so ``import metanas.memory`` pulls in neither faiss nor
pyarrow, torch or ray; code that only needs the records never pays for the store.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {
    "ARROW_SCHEMA": "metanas.memory.records",
    "TaskRecord": "metanas.memory.records",
    "records_to_table": "metanas.memory.records",
    "MemoryStore": "metanas.memory.store",
    "EXACT_THRESHOLD": "metanas.memory.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Called by Python for a name not yet in this module: import it from its module."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'metanas.memory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
