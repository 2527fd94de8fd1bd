"""The hub's wake of a ticket holder's stream, in process: publish -> the holder's wait returns.

``python -m bench.hub_wake``: 500 crowd readers (each does a little work per
wake, as writing a frame) and one first reader (a registered display) wait on
an ``EventHub``; one reader for ticket ``t1`` waits too, once in the crowd (as
before the holder feed) and once as ``Reader("t1")``; an event about ``t1`` is
published 60 times. No server, no browser: the wake alone.
"""

from __future__ import annotations

import statistics
import threading
import time

from jonot_local.events import EventHub, Reader


def run(holder_first: bool, n_crowd: int = 500, rounds: int = 60) -> tuple[float, ...]:
    """p50, p99 and max ms from publish to the holder's wait returning."""
    hub = EventHub()
    stop = False
    def crowd() -> None:
        after = 0
        while not stop:
            got = hub.wait(after, 1.0)
            if got:
                after = got[-1][0]
                bytes(2000)  # a little work per wake, as writing a frame
    def screen(reader: Reader) -> None:
        after = 0
        while not stop:
            got = hub.wait(after, 1.0, reader)
            if got:
                after = got[-1][0]
    ts = [threading.Thread(target=crowd, daemon=True) for _ in range(n_crowd)]
    ts.append(threading.Thread(target=screen, args=(Reader(),), daemon=True))
    for t in ts:
        t.start()
    time.sleep(1.0)
    lat: list[float] = []
    holder = Reader("t1") if holder_first else None
    after = 0
    for _ in range(rounds):
        done = threading.Event()
        box: dict[str, float] = {}

        def h() -> None:
            nonlocal after
            got = hub.wait(after, 5.0, holder)
            box["t"] = time.perf_counter()
            after = got[-1][0] if got else after
            done.set()
        th = threading.Thread(target=h)
        th.start()
        time.sleep(0.05)
        t0 = time.perf_counter()
        hub.publish([{"kind": "ticket", "ticket_id": "t1"}])
        done.wait(5)
        th.join()
        lat.append(box["t"] - t0)
        if holder is not None:
            hub.leave(holder)
        time.sleep(0.1)
    stop = True
    hub.close()
    lat.sort()
    return (round(statistics.median(lat) * 1000, 2),
            round(lat[max(0, int(len(lat) * 0.99) - 1)] * 1000, 2), round(lat[-1] * 1000, 2))


def main() -> None:
    for first in (False, True):
        p50, p99, top = run(first)
        label = "holder woken first" if first else "holder in the crowd"
        print(f"{label}: publish -> wait returns p50 / p99 / max {p50} / {p99} / {top} ms")


if __name__ == "__main__":
    main()
