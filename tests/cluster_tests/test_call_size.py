"""How many meta-training tasks a worker call carries (`CallSizer`, no Ray)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from metanas.cluster.call_size import CallSizer, most_tasks_per_call

LONG_QUEUE = ["conv4"] * 1000


def size(sizer: CallSizer, key: str, ahead: list[str]) -> int:
    return sizer.size(key, len(ahead), iter(ahead))


def test_a_learners_first_call_carries_one_task_then_as_many_as_fit_in_call_s():
    sizer = CallSizer(call_s=0.5, most=8, calls_in_flight=4)
    assert size(sizer, "conv4", LONG_QUEUE) == 1  # its task time is not known yet
    sizer.saw("conv4", 0.1)
    assert size(sizer, "conv4", LONG_QUEUE) == 5
    assert size(sizer, "supernet", LONG_QUEUE) == 1  # (each learner its own time)
    sizer.saw("supernet", 0.3)  # (the nearest count: 2 tasks of 0.3 s are nearer 0.5 s than 1)
    assert size(sizer, "supernet", LONG_QUEUE) == 2


def test_calls_shrink_as_the_work_left_runs_out_and_never_exceed_meta_batch():
    sizer = CallSizer(call_s=1.0, most=8, calls_in_flight=4)
    sizer.saw("x", 0.01)
    assert size(sizer, "x", ["x"] * 1000) == 8
    assert [size(sizer, "x", ["x"] * (q - 1)) for q in (24, 12, 7, 3)] == [6, 3, 1, 1]


def test_the_share_is_of_the_seconds_left_not_the_tasks_left():
    """A long task's call shrinks when short tasks are all that is left behind it: the
    workers must finish together, and the short ones cannot fill in for a long call."""
    sizer = CallSizer(call_s=1.0, most=8, calls_in_flight=2)
    sizer.saw("long", 0.25)
    sizer.saw("short", 0.01)
    assert size(sizer, "long", ["long"] * 20) == 4
    assert size(sizer, "long", ["long"] + ["short"] * 20) == 1  # 0.7 s left: 0.35 s per call in flight


def test_async_calls_stay_within_about_one_meta_step_of_staleness():
    assert most_tasks_per_call("sync", meta_batch=8, workers=64, calls_per_worker=2) == 8
    assert most_tasks_per_call("async", meta_batch=8, workers=64, calls_per_worker=2) == 1
    # the last task of a worker's second call starts 2 * (k - 1) tasks later than with one
    # task per call, while every worker sends updates: 2 * (k - 1) * workers / meta_batch steps
    for k, workers in ((3, 2), (2, 4), (1, 8)):
        assert 2 * (k - 1) * workers / 8 <= 1 < 2 * k * workers / 8
        assert most_tasks_per_call("async", 8, workers, calls_per_worker=2) == k


def test_a_long_queue_is_not_read():
    """The driver sizes every call: with thousands of tasks queued it must not walk them."""
    sizer = CallSizer(call_s=0.5, most=8, calls_in_flight=128)
    sizer.saw("x", 0.04)

    def unread():
        raise AssertionError("the queue was read")
        yield

    assert sizer.size("x", 5000, unread()) == 8


def test_call_s_0_is_one_task_per_call():
    sizer = CallSizer(call_s=0.0, most=8, calls_in_flight=2)
    sizer.saw("x", 0.001)
    assert size(sizer, "x", LONG_QUEUE) == 1


def test_the_task_time_follows_a_drift():
    sizer = CallSizer(call_s=0.4, most=100, calls_in_flight=1)
    sizer.saw("x", 0.01)
    for _ in range(30):  # the supernet's tasks get slower when its architecture steps start
        sizer.saw("x", 0.1)
    assert size(sizer, "x", ["x"] * 1000) == 4


@given(
    call_s=st.floats(0.0, 10.0),
    most=st.integers(1, 64),
    in_flight=st.integers(1, 64),
    seconds=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=20),
    queued=st.integers(0, 10_000),
)
# (found on a fresh clone: 2 tasks of 4 s, rounded up from 1.5, were past the 1.6 left per call)
@example(call_s=6.0, most=2, in_flight=5, seconds=[5.0, 0.0], queued=7)
def test_a_call_is_never_empty_never_over_meta_batch_and_about_call_s_when_it_is_several_tasks(
    call_s, most, in_flight, seconds, queued
):
    sizer = CallSizer(call_s, most, in_flight)
    for s in seconds:
        sizer.saw("x", s)
    n = size(sizer, "x", ["x"] * queued)
    t = sizer.task_s["x"]
    assert 1 <= n <= most
    assert n == 1 or (n - 0.5) * t <= call_s + 1e-9
    assert n == 1 or n * in_flight <= queued + 1  # its share of the work left
