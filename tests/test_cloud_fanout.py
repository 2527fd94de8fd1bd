# ruff: noqa: F811
"""The cloud's fan-out: the views of an office's watched tickets read together (and the
same as one by one), streams whose own ticket changed handed their frame first, no
change lost between a stream's first view and its watch, and on PostgreSQL a process
skips its own NOTIFY echo while two processes still wake each other's streams."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from jonot_local.sync.cloud import relay
from jonot_local.sync.cloud.fanout import GONE, Fanout, read_views, sse
from jonot_local.sync.cloud.offices import add_office
from jonot_local.sync.cloud.store import open_cloud_store

from jonot_local.ids import new_ticket_hash, new_ulid

from .cloud_support import CloudProcess, FakeOffice
from .support import until
from .test_cloud import Backend, backend, cloud, office_with_queue, pg_url, read_events  # noqa: F401

pytestmark = pytest.mark.slow

STALE_S, SERVICE_S = 600.0, 300.0


def _office(backend: Backend, cloud: CloudProcess) -> dict[str, Any]:
    """An office with a desk and tickets of every kind: waiting (normal and priority, one
    without an order key), called, completed, and one in another queue."""
    office, queue_id = office_with_queue(backend, cloud)
    other_q, other_entry = office.queue(name="Laboratory", prefix="L")
    desk_id = new_ulid()
    entries = [other_entry, office.entry("desk", desk_id, 1, {"id": desk_id, "name": "Room 3"})]
    hashes: dict[str, str] = {}

    def ticket(number: int, queue: str = queue_id, **fields: Any) -> str:
        h = new_ticket_hash()
        tid, entry = office.ticket(queue, number, ticket_hash=h, **fields)
        hashes[tid] = h
        entries.append(entry)
        return tid

    waiting = [ticket(n) for n in range(1, 6)]
    prio = [ticket(n, priority="priority") for n in (6, 7)]
    keyless = ticket(8, order_key=None)
    called = ticket(9, state="CALLED", desk_id=desk_id, called_at="2026-12-01T08:05:00.000000Z")
    done = ticket(10, state="COMPLETED")
    lab = ticket(1, queue=other_q)
    office.push(entries)
    return {"office": office, "queue_id": queue_id, "desk_id": desk_id, "hashes": hashes,
            "waiting": waiting, "prio": prio, "keyless": keyless, "called": called,
            "done": done, "lab": lab}


def _reference(backend: Backend, ticket_id: str, now: datetime) -> dict[str, Any]:
    with backend.store.read() as tx:
        row = tx.one("SELECT * FROM ticket WHERE ticket_id = ?", (ticket_id,))
        assert row is not None
        return relay.holder_view(tx, row, url="", stale_after_s=STALE_S,
                                 default_service_s=SERVICE_S, now=now)


def test_views_read_together_are_each_tickets_holder_view(backend, cloud):
    o = _office(backend, cloud)
    ids = list(o["hashes"]) + [new_ulid()]
    now = datetime.now(UTC)
    with backend.store.read() as tx:
        views = read_views(tx, o["office"].office_id, ids, stale_after_s=STALE_S,
                           default_service_s=SERVICE_S, now=now)
        assert read_views(tx, new_ulid(), ids, stale_after_s=STALE_S,
                          default_service_s=SERVICE_S) == {}  # another office's: none
    assert sorted(views) == sorted(o["hashes"])
    for ticket_id in o["hashes"]:
        want = _reference(backend, ticket_id, now)
        assert json.dumps(views[ticket_id]) == json.dumps(want), ticket_id  # byte for byte
    positions = {tid: views[tid]["position"] for tid in o["prio"] + o["waiting"]}
    assert sorted(positions.values()) == list(range(1, 8))  # priority ones first
    assert views[o["called"]]["desk_name"] == "Room 3"


class RecordingFanout(Fanout):
    """A fan-out that notes the order in which it hands frames to streams."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.handed: list[tuple[str, bool]] = []
        super().__init__(*args, **kw)

    def _hand(self, items: Any, first_wave: bool) -> None:
        items = list(items)
        self.handed.extend((w.ticket_id, first_wave) for w, _ in items)
        super()._hand(items, first_wave)


def _watch(fan: Fanout, backend: Backend, o: dict[str, Any], ticket_id: str,
           base: str = "https://cloud.test") -> Any:
    seen = backend.store.changes.seen(o["office"].office_id)
    first = _reference(backend, ticket_id, datetime.now(UTC))
    return fan.watch(o["office"].office_id, ticket_id, o["hashes"][ticket_id], base,
                     {**first, "url": f"{base}/t/{o['hashes'][ticket_id]}"}, seen)


def _call(backend: Backend, office_id: str, ticket_id: str, desk_id: str) -> None:
    """What a push calling the ticket does to the cloud's rows, committed in this process."""
    with backend.store.write(lock_office=office_id) as tx:
        tx.lock_office(office_id)
        tx.execute("UPDATE ticket SET state = 'CALLED', version = version + 1, desk_id = ?, "
                   "called_at = ? WHERE ticket_id = ?",
                   (desk_id, "2026-12-01T09:00:00.000000Z", ticket_id))
        tx.wake(office_id)


def test_the_called_tickets_stream_goes_first_and_each_stream_gets_its_own_view(backend,
                                                                                  cloud):
    o = _office(backend, cloud)
    fan = RecordingFanout(backend.store, STALE_S, SERVICE_S, heartbeat_s=60)
    try:
        head, *rest = o["waiting"]
        watches = {tid: _watch(fan, backend, o, tid) for tid in [*reversed(rest), head]}
        second = _watch(fan, backend, o, head, base="http://other.test")  # two tabs
        lab = _watch(fan, backend, o, o["lab"])
        reads = fan.reads
        _call(backend, o["office"].office_id, head, o["desk_id"])
        until(lambda: len(fan.handed) >= len(watches) + 1, "every moved view handed")
        # One read for the whole office (one more if the set-up push's NOTIFY came late),
        # not one per stream.
        assert 1 <= fan.reads - reads <= 2 < len(watches)
        # The called ticket's two streams first, in the first wave; the rest after.
        assert sorted(fan.handed[:2]) == [(head, True), (head, True)]
        assert {t for t, _ in fan.handed[2:]} == set(rest)
        assert not any(first for _, first in fan.handed[2:])
        for tid, w in [*watches.items(), (head, second)]:
            got = fan.next(w, 5)
            assert isinstance(got, tuple), tid
            view, frame = got
            assert frame == sse("ticket", view)
            assert view == {**_reference(backend, tid, datetime.now(UTC)), "url": view["url"]}
            assert view["state"] == ("CALLED" if tid == head else "WAITING")
            assert view["id"] == tid and view["url"] == f"{w.base_url}/t/{o['hashes'][tid]}"
        assert fan.next(lab, 0.2) is None  # another queue's ticket: nothing moved
        assert fan.next(second, 0) is None  # each frame is taken once
    finally:
        fan.close()


def test_a_change_between_the_first_view_and_the_watch_is_not_lost(backend, cloud):
    o = _office(backend, cloud)
    fan = Fanout(backend.store, STALE_S, SERVICE_S, heartbeat_s=60)
    try:
        tid = o["waiting"][0]
        seen = backend.store.changes.seen(o["office"].office_id)
        first = _reference(backend, tid, datetime.now(UTC))
        _call(backend, o["office"].office_id, tid, o["desk_id"])  # before the watch
        w = fan.watch(o["office"].office_id, tid, o["hashes"][tid], "https://c.test", first,
                      seen)
        got = fan.next(w, 10)
        assert isinstance(got, tuple) and got[0]["state"] == "CALLED"
        with backend.store.write() as tx:  # the ticket leaves the cloud
            tx.execute("DELETE FROM ticket WHERE ticket_id = ?", (tid,))
            tx.wake(o["office"].office_id)
        assert fan.next(w, 10) == GONE
        fan.unwatch(w)
        assert fan.watching == 0
    finally:
        fan.close()


def test_a_stream_from_the_app_gets_its_ticket_called_and_ended(backend, cloud):
    o = _office(backend, cloud)
    office = o["office"]
    streams = {}
    for tid in o["waiting"][:3]:
        events: list = []
        resp = requests.get(f"{cloud.url}/api/v1/tickets/by-hash/{o['hashes'][tid]}/events",
                            stream=True, timeout=20)
        reader = threading.Thread(target=read_events, args=(resp, events, 3), daemon=True)
        reader.start()
        streams[tid] = (resp, events, reader)
    until(lambda: all(ev for _, ev, _ in streams.values()), "first views")
    head = o["waiting"][0]
    office.push([office.ticket(o["queue_id"], 1, state="CALLED", version=2, ticket_id=head,
                               desk_id=o["desk_id"], order_key=1.0,
                               called_at="2026-12-01T08:10:00.000000Z")[1]])
    # A stream is sent its ticket's view as it is when it wakes: a completion pushed before
    # the call reached it would be shown instead of the call. Calls and completions are
    # minutes apart at a desk; here the call is seen first.
    until(lambda: any(e == "ticket" and d.get("state") == "CALLED"
                       for e, d in streams[head][1]), "the call on the head's stream")
    office.push([office.ticket(o["queue_id"], 1, state="COMPLETED", version=3,
                               ticket_id=head, order_key=1.0)[1]])
    for tid, (resp, events, reader) in streams.items():
        reader.join(15 if tid == head else 5)
        resp.close()
        assert all(d.get("id") == tid for e, d in events if e == "ticket")
    assert [(e, d["state"]) for e, d in streams[head][1]] == [
        ("ticket", "WAITING"), ("ticket", "CALLED"), ("ticket", "COMPLETED")]
    # the others moved up by one when the head was called
    for n, tid in enumerate(o["waiting"][1:3]):
        positions = [d["position"] for e, d in streams[tid][1] if e == "ticket"]
        assert positions[:2] == [n + 4, n + 3], positions  # behind the two priority ones


# -- PostgreSQL: two processes, no echo ------------------------------------------------------

def test_a_process_skips_its_own_notify_and_hears_the_others(pg_url, tmp_path):  # noqa: F811
    mine = open_cloud_store(tmp_path / "a", pg_url)
    theirs = open_cloud_store(tmp_path / "b", pg_url)
    try:
        office_id, _ = add_office(mine, "Echo")
        time.sleep(0.5)  # both LISTEN connections up
        heard: list[Any] = []
        mine.changes.subscribe(heard.append)
        before = mine.changes.seen(office_id)
        with mine.write() as tx:
            tx.wake(office_id)
        until(lambda: mine.echoes_skipped >= 1, "the echo of the own commit")  # type: ignore[attr-defined]
        assert heard == [{office_id}]  # woken once, by the commit itself
        assert mine.changes.seen(office_id) == (before[0], before[1] + 1)
        with theirs.write() as tx:
            tx.wake(office_id)
        until(lambda: len(heard) == 2, "the other process's commit")
        assert heard[1] == {office_id}
        assert mine.echoes_skipped == 1  # type: ignore[attr-defined]
    finally:
        mine.close()
        theirs.close()


def test_two_processes_wake_their_streams_for_a_push_through_either(pg_url, tmp_path):  # noqa: F811
    store = open_cloud_store(tmp_path, pg_url)
    procs = [CloudProcess(tmp_path / f"p{i}", pg_url).start() for i in range(2)]
    try:
        office_id, token = add_office(store, "Shared streams")
        office = FakeOffice(procs[1].url, token, office_id)
        queue_id, q = office.queue()
        hashes, ids, entries = [], [], [q]
        for n in range(1, 9):
            h = new_ticket_hash()
            tid, entry = office.ticket(queue_id, n, ticket_hash=h)
            hashes.append(h)
            ids.append(tid)
            entries.append(entry)
        office.push(entries)
        streams = []
        for n, h in enumerate(hashes[:6]):
            proc = procs[n % 2]
            events: list = []
            resp = requests.get(f"{proc.url}/api/v1/tickets/by-hash/{h}/events", stream=True,
                                timeout=20)
            reader = threading.Thread(target=read_events, args=(resp, events, 2), daemon=True)
            reader.start()
            streams.append((ids[n], resp, events, reader))
        until(lambda: all(s[2] for s in streams), "first views on both processes")
        office.push([office.ticket(queue_id, 1, state="CALLED", version=2,
                                   ticket_id=ids[0])[1]])
        for tid, resp, events, reader in streams:
            reader.join(10)
            resp.close()
            assert [d["id"] for _, d in events] == [tid, tid]
        assert [d["state"] for _, d in streams[0][2]] == ["WAITING", "CALLED"]
        for n, (_, _, events, _) in enumerate(streams[1:], start=2):
            assert [d["position"] for _, d in events] == [n, n - 1]
    finally:
        for p in procs:
            p.stop()
        store.close()
