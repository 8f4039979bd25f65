"""A TaskWorker pays its one-off costs when it starts, not in its campaign's first task:
the first torch optimizer imports torch._dynamo (about 1 s), which once made every
worker's first task ten times as long as the others and cost a short benchmark campaign
several percent of its wall time (`metanas bench scaling` starts its clock after the
workers start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from metanas.cluster.task_worker import TaskWorkerCore
from metanas.platform.config import load_campaign
assert "torch._dynamo" not in sys.modules, "imported before the worker started"
TaskWorkerCore(load_campaign(sys.argv[1]))
print("torch._dynamo" in sys.modules)
"""


def test_a_started_worker_has_imported_what_its_first_optimizer_needs():
    # (a fresh process: this one may have imported it already)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO / "examples" / "digits.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "True"
