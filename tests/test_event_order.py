"""The event hub wakes the office's own screens first, then the crowd.

A first reader (a registered display or desk, a signed-in staff page) gets an
event at once; readers without a token (patients' phones) get it when every
first reader has come back for more, or after ``hold_s`` at most, and never miss
it either way.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from jonot_local.events import EventHub, Reader


def _waiting(hub: EventHub, after: int, reader: Reader | None, out: list[Any],
             timeout: float = 5.0) -> threading.Thread:
    def run() -> None:
        events = hub.wait(after, timeout, reader)
        out.append((time.monotonic(), events))

    t = threading.Thread(target=run)
    t.start()
    return t


def _until(cond: Any, limit: float = 2.0) -> None:
    deadline = time.monotonic() + limit
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_the_crowd_waits_until_the_first_reader_is_back():
    hub = EventHub(hold_s=5.0)
    tv = Reader()
    first: list[Any] = []
    crowd: list[Any] = []
    t1 = _waiting(hub, 0, tv, first)
    t2 = _waiting(hub, 0, None, crowd)
    _until(lambda: hub._first_waiting)
    hub.publish([{"kind": "ticket", "n": 1}])
    t1.join(2)
    assert first and [e["n"] for _, e in first[0][1]] == [1]
    time.sleep(0.1)
    assert crowd == [], "the crowd woke before the display had written its answer"
    again: list[Any] = []
    t3 = _waiting(hub, 1, tv, again)  # the display is back for more: the crowd may go
    t2.join(2)
    assert crowd and [e["n"] for _, e in crowd[0][1]] == [1]
    hub.close()
    t3.join(2)


def test_a_first_reader_that_never_comes_back_holds_the_crowd_for_hold_s_only():
    hub = EventHub(hold_s=0.15)
    first: list[Any] = []
    crowd: list[Any] = []
    t1 = _waiting(hub, 0, Reader(), first)
    t2 = _waiting(hub, 0, None, crowd)
    _until(lambda: hub._first_waiting)
    published = time.monotonic()
    hub.publish([{"n": 1}])
    t1.join(2)
    t2.join(2)
    assert crowd, "the crowd was never released"
    held = crowd[0][0] - published
    assert 0.1 <= held < 1.5, held
    hub.close()


def test_a_stream_that_ends_lets_the_crowd_go_at_once():
    hub = EventHub(hold_s=5.0)
    tv = Reader()
    first: list[Any] = []
    crowd: list[Any] = []
    t1 = _waiting(hub, 0, tv, first)
    t2 = _waiting(hub, 0, None, crowd)
    _until(lambda: hub._first_waiting)
    hub.publish([{"n": 1}])
    t1.join(2)
    hub.leave(tv)
    t2.join(2)
    assert crowd and crowd[0][1]
    hub.close()


def test_without_first_readers_the_crowd_is_woken_at_once_and_misses_nothing():
    hub = EventHub(hold_s=5.0)
    crowd: list[Any] = []
    t = _waiting(hub, 0, None, crowd)
    _until(lambda: t.is_alive())
    time.sleep(0.05)
    hub.publish([{"n": 1}, {"n": 2}])
    t.join(2)
    assert [e["n"] for _, e in crowd[0][1]] == [1, 2]
    # Events published while the crowd was held all arrive, in order.
    tv = Reader()
    first: list[Any] = []
    t1 = _waiting(hub, 2, tv, first)
    _until(lambda: hub._first_waiting)
    late: list[Any] = []
    t2 = _waiting(hub, 2, None, late)
    hub.publish([{"n": 3}])
    hub.publish([{"n": 4}])
    t1.join(2)
    hub.leave(tv)
    t2.join(2)
    assert [e["n"] for _, e in late[0][1]] == [3, 4]
    hub.close()
