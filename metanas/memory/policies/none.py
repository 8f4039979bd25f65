"""`none`: a cold search; the memory is not read."""

from __future__ import annotations

from metanas.memory.policies.base import WarmStartPolicy


class NoWarmStart(WarmStartPolicy):
    name = "none"
    uses_memory = False
