"""The run's event log: every line on disk as soon as it is written (a crash loses nothing
before it), a torn last line skipped, a resumed stage appending to the same file on a line of its own."""

from __future__ import annotations

from metanas.cluster.events import EVENTS_FILE, EventLog, read_events


def test_each_event_is_on_disk_as_written_and_a_resumed_stage_appends(tmp_path):
    log = EventLog(tmp_path, "first")
    log({"kind": "task", "slot": 0})
    # read while the log is still open, as after a crash of the driver
    assert [e["slot"] for e in read_events(tmp_path)] == [0]
    log({"kind": "task", "slot": 1})
    log.close()
    with (tmp_path / EVENTS_FILE).open("a") as f:
        f.write('{"t": 1, "kind": "ta')  # a torn line: the crash came mid-write
    resumed = EventLog(tmp_path, "derived")
    resumed({"kind": "rewind", "to_iteration": 0})
    resumed.close()
    events = read_events(tmp_path)
    assert [(e["stage"], e["kind"]) for e in events] == [
        ("first", "task"),
        ("first", "task"),
        ("derived", "rewind"),  # on a line of its own, not glued to the torn one
    ]
