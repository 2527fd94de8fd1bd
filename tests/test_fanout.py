"""The office's holder fan-out: the hub wakes a holder first for its own ticket, the
holder feed reads every watched view once per change and gives each stream its own."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jonot_local.api.holder_feed import HolderFeed, holder_views
from jonot_local.api.tickets import holder_view
from jonot_local.domain import queues, tickets, users
from jonot_local.events import EventHub, Reader

from .support import until
from .test_streams import make_app


class Waiter(threading.Thread):
    """One ``hub.wait`` in a thread; ``order`` gets its name when it returns."""

    def __init__(self, hub: EventHub, name: str, order: list[str],
                 reader: Reader | None = None) -> None:
        super().__init__(daemon=True)
        self.hub, self.label, self.order, self.reader = hub, name, order, reader
        self.got: list[tuple[int, dict[str, Any]]] | None = None

    def run(self) -> None:
        self.got = self.hub.wait(0, 20, self.reader)
        self.order.append(self.label)


def test_a_holder_is_woken_with_the_screens_for_its_own_ticket_and_with_the_crowd_else():
    hub = EventHub(hold_s=60)  # the crowd waits until the first readers are back
    order: list[str] = []
    screen, mine, other = Reader(), Reader("t1"), Reader("t2")
    waiters = [Waiter(hub, "screen", order, screen), Waiter(hub, "holder t1", order, mine),
               Waiter(hub, "holder t2", order, other), Waiter(hub, "crowd", order)]
    for w in waiters:
        w.start()
    until(lambda: screen in hub._first_waiting and len(hub._ticket_waiting) == 2
           and len(hub._cond._waiters) == 1, "every waiter waiting")  # type: ignore[attr-defined]
    hub.publish([{"kind": "ticket", "ticket_id": "t1", "action": "called"}])
    waiters[0].join(10)
    waiters[1].join(10)
    assert sorted(order) == ["holder t1", "screen"]
    assert waiters[2].is_alive() and waiters[3].is_alive()  # held until those are back
    hub.leave(screen)
    assert waiters[3].is_alive()  # the woken holder is not back yet
    hub.leave(mine)
    for w in waiters[2:]:
        w.join(10)
    assert sorted(order[2:]) == ["crowd", "holder t2"]
    for w in waiters:
        assert w.got == [(1, {"kind": "ticket", "ticket_id": "t1", "action": "called"})]
    hub.close()


def test_a_holder_arriving_during_a_hold_gets_its_own_event_at_once():
    hub = EventHub(hold_s=60)
    screen = Reader()
    order: list[str] = []
    first = Waiter(hub, "screen", order, screen)
    first.start()
    until(lambda: screen in hub._first_waiting, "the screen waiting")
    hub.publish([{"kind": "ticket", "ticket_id": "t9"}, {"kind": "ticket", "ticket_id": "t1"}])
    first.join(10)
    # The crowd is held (the screen is not back); a holder of t1 comes now: t1's event
    # is its own, so it is not held with the crowd.
    holder = Reader("t1")
    assert [s for s, _ in hub.wait(0, 20, holder) or []] == [1, 2]
    late = Waiter(hub, "crowd", order)
    late.start()
    until(lambda: len(hub._cond._waiters) == 1, "the crowd waiting")  # type: ignore[attr-defined]
    hub.leave(screen)
    assert late.is_alive()  # the holder is not back yet
    hub.leave(holder)
    late.join(10)
    assert [s for s, _ in late.got or []] == [1, 2]  # nothing missed by the crowd
    hub.close()


def test_a_holder_that_fell_behind_the_backlog_returns_at_once_to_reload():
    hub = EventHub(backlog=2)
    hub.publish([{"kind": "ticket", "ticket_id": "x"} for _ in range(5)])
    assert hub.wait(1, 20, Reader("t1")) is None


# -- the holder feed --------------------------------------------------------------------------

@pytest.fixture
def office(tmp_path: Path) -> Iterator[dict[str, Any]]:
    app = make_app(tmp_path)
    rt = app.extensions["jonot"]
    with rt.store.write() as tx:
        a = queues.create_queue(tx, name="General", prefix="A")
        lab = queues.create_queue(tx, name="Laboratory", prefix="L")
        desk = queues.create_desk(tx, name="Room 3", queue_ids=[a.id, lab.id])
        staff = users.create_user(tx, "nurse", "nurse-password", role="staff")
        made = [tickets.join(tx, a.id) for _ in range(5)]
        made += [tickets.join(tx, a.id, priority="priority", source="desk") for _ in range(2)]
        made += [tickets.join(tx, lab.id) for _ in range(3)]
        tickets.call(tx, made[0].id, desk.id, user_id=staff["id"])
        tickets.call(tx, made[7].id, desk.id, user_id=staff["id"])
        tickets.complete(tx, made[7].id, user_id=staff["id"])
        tickets.call(tx, made[8].id, desk.id, user_id=staff["id"])
        tickets.transfer(tx, made[8].id, a.id, user_id=staff["id"])
        tickets.cancel(tx, made[3].id, by="customer")
    yield {"app": app, "rt": rt, "a": a, "lab": lab, "desk": desk, "staff": staff,
           "tickets": made}
    rt.hub.close()
    rt.store.close()


def _reference(office: dict[str, Any], ticket_id: str) -> dict[str, Any]:
    rt = office["rt"]
    with office["app"].test_request_context("/", base_url="http://office.test:8080"), \
            rt.store.read() as tx:
        return holder_view(tx, tickets.get(tx, ticket_id))


def test_holder_views_read_together_are_each_tickets_holder_view(office: dict[str, Any]):
    rt = office["rt"]
    ids = [t.id for t in office["tickets"]]
    views = holder_views(rt.store, ids + ["no-such-ticket"], rt.settings.default_service_s)
    assert sorted(views) == sorted(ids)
    for ticket_id in ids:
        want = _reference(office, ticket_id)
        got = {**views[ticket_id], "url": want["url"], "cloud_url": want["cloud_url"]}
        assert list(got) == list(want) and got == want, ticket_id  # the same keys in order
    assert {views[t.id]["position"] for t in office["tickets"][:7]} >= {1, 2, 3, 4, 5}


def test_the_feed_reads_once_per_change_for_every_watched_ticket(office: dict[str, Any]):
    rt = office["rt"]
    feed = HolderFeed(rt.store, rt.hub, rt.settings)
    watched = [t for t in office["tickets"] if t.id != office["tickets"][3].id]
    for t in watched:
        feed.watch(t.id)
    base = "http://office.test:8080/"
    seq = rt.hub.last_seq
    for t in watched:
        view, data = feed.view(t.id, seq, base)  # type: ignore[misc]
        assert view == _reference(office, t.id)
        assert data == json.dumps(view, separators=(",", ":"))
    assert feed.reads == 1
    with rt.store.write() as tx:  # one change: the next waiting is called
        called = tickets.call_next(tx, office["desk"].id, user_id=office["staff"]["id"])
    assert called is not None
    seq = rt.hub.last_seq
    for t in watched:
        view, _ = feed.view(t.id, seq, base)  # type: ignore[misc]
        assert view == _reference(office, t.id), t.code
        assert view["id"] == t.id and view["hash"] == t.hash
    assert feed.reads == 2
    assert feed.view(called.id, seq, base)[0]["state"] == "CALLED"  # type: ignore[index]
    # A ticket no longer watched is forgotten, so a later watch reads it afresh.
    feed.unwatch(called.id)
    with rt.store.write() as tx:
        tickets.recall(tx, called.id)
    feed.watch(called.id)
    assert feed.view(called.id, rt.hub.last_seq, base)[0]["recall_count"] == 1  # type: ignore[index]
