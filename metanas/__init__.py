"""metanas: meta-learning-guided neural architecture and hyperparameter search on Ray.

Heavy dependencies (ray, torch) load only when the names that need them are used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "search", "run_campaign", "load_campaign", "SearchSpace", "CellSpace", "Learner", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from metanas.platform.learner import load

        return load
    if name == "search":
        from metanas.platform.search import search

        return search
    if name == "Learner":
        from metanas.platform.learner import Learner

        return Learner
    if name == "run_campaign":
        from metanas.platform.campaign import run_campaign

        return run_campaign
    if name == "load_campaign":
        from metanas.platform.config import load_campaign

        return load_campaign
    if name == "SearchSpace":
        from metanas.platform.space import SearchSpace

        return SearchSpace
    if name == "CellSpace":
        from metanas.platform.darts_space import CellSpace

        return CellSpace
    raise AttributeError(f"module 'metanas' has no attribute {name!r}")
