"""A benchmark's step in a process of its own: a process joins one Ray cluster in its life,
so each simulated cluster runs in a child, which prints its result as its last JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_child(module: str, spec: dict[str, Any], what: str) -> Any:
    """`python -m module SPEC` (SPEC as JSON); its last JSON line, or an error naming `what`."""
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)], capture_output=True, text=True, timeout=1800
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("{", "["))]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])
