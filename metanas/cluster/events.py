"""The run's event log, `OUT/events.jsonl`: one JSON line per meta-training task try, async
update and rewind, stamped with the driver's clock. `metanas explain` draws the worker
timeline and the staleness histogram from it. Each line is flushed as it is written, so a
crash loses nothing before it; a resumed campaign appends to the same file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


class EventLog:
    def __init__(self, run_root: Path, stage: str) -> None:
        self.path = Path(run_root) / EVENTS_FILE
        self.stage = stage

    def __call__(self, event: dict[str, Any]) -> None:
        line = json.dumps({"t": round(time.time(), 4), "stage": self.stage, **event})
        with self.path.open("a") as f:
            f.write(line + "\n")


def read_events(run_root: Path) -> list[dict[str, Any]]:
    """Every event of a run, in order; a torn last line (a crash mid-write) is skipped."""
    path = Path(run_root) / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
