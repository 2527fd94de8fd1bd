"""Ticket rules of SPEC §3 beyond the state machine: numbering, codes, order, picking,
closed queues, position and estimated wait, now serving, validation and hashes."""

from __future__ import annotations

import itertools
import math
import string
import time
from datetime import timedelta
from typing import Any

import pytest

from jonot_local.domain import queues, status, tickets
from jonot_local.domain.errors import NotFound, QueueClosed, QueueEmpty, ValidationError
from jonot_local.domain.model import CALLED, WAITING
from jonot_local.ids import HASH_LENGTH, new_ulid
from jonot_local.timeutil import to_iso, utcnow

DEFAULT_S = 300.0

# -- one app for the module (conftest's shared world), fresh queues and desks per test ------

pytestmark = pytest.mark.shared_world(hash_lookup_per_min=100_000, default_service_s=DEFAULT_S)


@pytest.fixture
def new_queue(world: Any) -> Any:
    """Make a fresh queue with a prefix no other test uses."""

    def make(name: str = "Queue", **kw: Any) -> Any:
        prefix = world.prefix()
        with world.store.write() as tx:
            return queues.create_queue(tx, name=f"{name} {prefix}", prefix=prefix, **kw)

    return make


@pytest.fixture
def new_desk(world: Any) -> Any:
    counter = itertools.count()

    def make(queue_list: list[Any], pick_mode: str = "queue_order") -> Any:
        with world.store.write() as tx:
            return queues.create_desk(tx, name=f"Desk {world.prefix()}{next(counter)}",
                                      queue_ids=[q.id for q in queue_list], pick_mode=pick_mode)

    return make


# -- helpers ----------------------------------------------------------------------------------

def do(store: Any, fn: Any, *args: Any, **kw: Any) -> Any:
    """Run one domain function in its own write transaction."""
    with store.write() as tx:
        return fn(tx, *args, **kw)


def join(store: Any, queue: Any, **kw: Any) -> tickets.Ticket:
    return do(store, tickets.join, queue.id, **kw)


def fresh(store: Any, ticket_id: str) -> tickets.Ticket:
    with store.read() as tx:
        return tickets.get(tx, ticket_id)


def position(store: Any, ticket_id: str) -> int | None:
    with store.read() as tx:
        return status.position(tx, tickets.get(tx, ticket_id))


def waiting_codes(store: Any, queue: Any) -> list[str]:
    """The waiting tickets of a queue in the order their positions say, checked 1..W."""
    with store.read() as tx:
        rows = tx.all("SELECT id FROM tickets WHERE queue_id = ? AND state = 'WAITING'",
                      (queue.id,))
        placed = []
        for row in rows:
            t = tickets.get(tx, row["id"])
            placed.append((status.position(tx, t), t.code))
    placed.sort()
    assert [p for p, _ in placed] == list(range(1, len(placed) + 1))
    return [code for _, code in placed]


def call_next(store: Any, desk: Any) -> tickets.Ticket:
    return do(store, tickets.call_next, desk.id)


def set_call_started(store: Any, ticket_id: str, seconds_ago: float) -> None:
    """Pretend the open call of a ticket began ``seconds_ago`` (to simulate a service time)."""
    moment = to_iso(utcnow() - timedelta(seconds=seconds_ago))
    with store.write() as tx:
        tx.execute("UPDATE interactions SET started_at = ? WHERE ticket_id = ? "
                   "AND ended_at IS NULL", (moment, ticket_id))
        tx.execute("UPDATE tickets SET called_at = ? WHERE id = ?", (moment, ticket_id))


# -- numbering and codes ----------------------------------------------------------------------

def test_numbers_are_1_2_3_per_queue(store, office):
    a, lab = office["a"], office["lab"]
    got = [(t.queue_id, t.number) for t in
           (join(store, a), join(store, a), join(store, lab), join(store, a), join(store, lab))]
    assert got == [(a.id, 1), (a.id, 2), (lab.id, 1), (a.id, 3), (lab.id, 2)]


def test_codes_are_prefix_and_number_padded_to_three_digits(store, new_queue):
    q = new_queue()
    with store.write() as tx:
        issued = [tickets.join(tx, q.id) for _ in range(1042)]
    p = q.prefix
    assert issued[0].code == f"{p}001"
    assert issued[6].code == f"{p}007"
    assert issued[41].code == f"{p}042"
    assert issued[99].code == f"{p}100"
    assert issued[998].code == f"{p}999"
    assert issued[1041].code == f"{p}1042"
    assert [t.number for t in issued] == list(range(1, 1043))


def test_numbers_are_never_reused_after_cancel_or_transfer(store, office):
    a, lab, room1 = office["a"], office["lab"], office["room1"]
    t1, t2, t3 = join(store, a), join(store, a), join(store, a)
    do(store, tickets.cancel, t3.id, by="customer")
    assert join(store, a).number == 4, "a canceled number is not given out again"
    do(store, tickets.call, t2.id, room1.id)
    moved = do(store, tickets.transfer, t2.id, lab.id)
    assert (moved.queue_id, moved.code, moved.number) == (lab.id, t2.code, 2)
    assert moved.state == WAITING
    # The other queue's numbering is unaffected; the origin queue goes on from where it was.
    assert join(store, lab).code == f"{lab.prefix}001"
    assert join(store, a).number == 5
    # A customer whose ticket was canceled joins again and gets a new number.
    again = join(store, a, name="same person")
    assert again.number == 6 and again.id != t3.id and again.hash != t3.hash
    with store.read() as tx:
        numbers = [r["number"] for r in tx.all(
            "SELECT number FROM tickets WHERE origin_queue_id = ? ORDER BY number", (a.id,))]
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert t1.number == 1


def test_a_ticket_transferred_there_and_back_keeps_its_code(store, office):
    a, lab, room2 = office["a"], office["lab"], office["room2"]
    t = join(store, a)
    do(store, tickets.call, t.id, room2.id)
    do(store, tickets.transfer, t.id, lab.id)
    do(store, tickets.call, t.id, room2.id)
    back = do(store, tickets.transfer, t.id, a.id)
    assert (back.queue_id, back.code, back.number, back.origin_queue_id) == (a.id, t.code, 1, a.id)
    assert join(store, a).number == 2 and join(store, lab).number == 1


def test_transfer_to_its_own_queue_or_an_unknown_queue_is_refused(store, office):
    t = join(store, office["a"])
    do(store, tickets.call, t.id, office["room1"].id)
    called = fresh(store, t.id)
    with pytest.raises(ValidationError):
        do(store, tickets.transfer, t.id, office["a"].id)
    with pytest.raises(NotFound):
        do(store, tickets.transfer, t.id, "no-such-queue")
    assert fresh(store, t.id) == called


def test_join_an_unknown_queue_is_not_found(store):
    with pytest.raises(NotFound):
        do(store, tickets.join, "no-such-queue")


# -- order: priority, reorder, return, transfer -----------------------------------------------

def test_priority_tickets_are_served_first_in_their_own_order(store, office):
    a, room1 = office["a"], office["room1"]
    n1, n2 = join(store, a), join(store, a)
    p1 = join(store, a, priority=True)
    n3 = join(store, a)
    p2 = join(store, a, priority=True)
    assert waiting_codes(store, a) == [p1.code, p2.code, n1.code, n2.code, n3.code]
    assert position(store, p2.id) == 2 and position(store, n1.id) == 3
    served = [call_next(store, room1).code for _ in range(5)]
    assert served == [p1.code, p2.code, n1.code, n2.code, n3.code]


def test_priority_can_be_given_later(store, office):
    a, room1 = office["a"], office["room1"]
    n1, n2, n3 = join(store, a), join(store, a), join(store, a)
    do(store, tickets.update, n3.id, version=n3.version, priority="priority")
    assert waiting_codes(store, a) == [n3.code, n1.code, n2.code]
    assert call_next(store, room1).id == n3.id


def test_reorder_after_a_ticket_and_to_the_front(store, office):
    a = office["a"]
    t = [join(store, a) for _ in range(5)]
    c = [x.code for x in t]
    do(store, tickets.reorder, t[4].id, after=t[1].id)
    assert waiting_codes(store, a) == [c[0], c[1], c[4], c[2], c[3]]
    do(store, tickets.reorder, t[3].id, after=None)
    assert waiting_codes(store, a) == [c[3], c[0], c[1], c[4], c[2]]
    do(store, tickets.reorder, t[3].id, after=t[2].id)  # to the end
    assert waiting_codes(store, a) == [c[0], c[1], c[4], c[2], c[3]]
    do(store, tickets.reorder, t[0].id, after=t[1].id)  # just after its neighbour
    assert waiting_codes(store, a) == [c[1], c[0], c[4], c[2], c[3]]
    served = [call_next(store, office["room1"]).code for _ in range(5)]
    assert served == [c[1], c[0], c[4], c[2], c[3]]


def test_reorder_keeps_priority_first(store, office):
    a = office["a"]
    n1, n2 = join(store, a), join(store, a)
    p = join(store, a, priority=True)
    do(store, tickets.reorder, n2.id, after=None)
    assert waiting_codes(store, a) == [p.code, n2.code, n1.code]
    do(store, tickets.reorder, p.id, after=n1.id)
    assert waiting_codes(store, a) == [p.code, n2.code, n1.code]


def test_reorder_refuses_bad_anchors(store, office):
    a, lab = office["a"], office["lab"]
    t1, t2 = join(store, a), join(store, a)
    other = join(store, lab)
    called = join(store, a)
    do(store, tickets.call, called.id, office["room1"].id)
    before = fresh(store, t1.id)
    for anchor in (t1.id, other.id, called.id, "no-such-ticket"):
        with pytest.raises(ValidationError):
            do(store, tickets.reorder, t1.id, after=anchor)
    assert fresh(store, t1.id) == before
    assert waiting_codes(store, a) == [t1.code, t2.code]


def test_many_reorders_into_the_same_gap_keep_the_order(store, office):
    """Halving the gap between two order keys runs out of float precision: respacing
    must keep every ticket's place, also that of a ticket being served right now."""
    a, room1 = office["a"], office["room1"]
    t = [join(store, a) for _ in range(4)]
    do(store, tickets.call, t[2].id, room1.id)  # t2 is at the desk, holding its place
    mover, anchor = t[3], t[0]
    expected = [t[0].code, t[1].code, t[2].code, t[3].code]
    for _ in range(80):  # t3 and t1 take turns right after t0: the gap halves each time
        do(store, tickets.reorder, mover.id, after=anchor.id)
        expected.remove(mover.code)
        expected.insert(1, mover.code)
        assert waiting_codes(store, a) == [c for c in expected if c != t[2].code]
        mover = t[1] if mover is t[3] else t[3]
    do(store, tickets.return_to_queue, t[2].id)
    assert waiting_codes(store, a) == expected, "the returned ticket keeps its place"


def test_return_keeps_the_tickets_place(store, office):
    a, room1, room2 = office["a"], office["room1"], office["room2"]
    t = [join(store, a) for _ in range(4)]
    codes = [x.code for x in t]
    first = call_next(store, room1)
    assert first.id == t[0].id
    assert position(store, t[1].id) == 1
    do(store, tickets.return_to_queue, first.id)
    assert waiting_codes(store, a) == codes
    # Called out of order and returned: back between its neighbours.
    do(store, tickets.call, t[2].id, room2.id)
    assert waiting_codes(store, a) == [codes[0], codes[1], codes[3]]
    join(store, a)  # someone new joins meanwhile
    do(store, tickets.return_to_queue, t[2].id)
    assert waiting_codes(store, a)[:4] == codes
    assert call_next(store, room1).id == t[0].id


def test_transfer_goes_to_the_end_or_the_front(store, office):
    a, lab, room2 = office["a"], office["lab"], office["room2"]
    l1, l2 = join(store, lab), join(store, lab)
    x, y = join(store, a), join(store, a)
    do(store, tickets.call, x.id, room2.id)
    do(store, tickets.transfer, x.id, lab.id)
    assert waiting_codes(store, lab) == [l1.code, l2.code, x.code]
    do(store, tickets.call, y.id, room2.id)
    do(store, tickets.transfer, y.id, lab.id, to_front=True)
    assert waiting_codes(store, lab) == [y.code, l1.code, l2.code, x.code]
    assert waiting_codes(store, a) == []


def test_transfer_to_the_front_still_comes_after_priority(store, office):
    a, lab, room2 = office["a"], office["lab"], office["room2"]
    l1 = join(store, lab)
    lp = join(store, lab, priority=True)
    x = join(store, a)
    do(store, tickets.call, x.id, room2.id)
    do(store, tickets.transfer, x.id, lab.id, to_front=True)
    assert waiting_codes(store, lab) == [lp.code, x.code, l1.code]


def test_transfer_to_the_front_of_an_empty_queue(store, office):
    a, lab, room2 = office["a"], office["lab"], office["room2"]
    x = join(store, a)
    do(store, tickets.call, x.id, room2.id)
    do(store, tickets.transfer, x.id, lab.id, to_front=True)
    assert waiting_codes(store, lab) == [x.code]
    later = join(store, lab)
    assert waiting_codes(store, lab) == [x.code, later.code]


# -- call next --------------------------------------------------------------------------------

def test_call_next_takes_the_desks_queues_in_its_order(store, new_queue, new_desk):
    a, lab = new_queue(), new_queue()
    l1 = join(store, lab)  # the oldest ticket of all, in the desk's second queue
    a1, a2 = join(store, a), join(store, a)
    desk = new_desk([a, lab])
    assert [call_next(store, desk).id for _ in range(3)] == [a1.id, a2.id, l1.id]
    with pytest.raises(QueueEmpty):
        call_next(store, desk)
    lab_first = new_desk([lab, a])
    l2, a3 = join(store, lab), join(store, a)
    assert call_next(store, lab_first).id == l2.id
    assert call_next(store, lab_first).id == a3.id


def test_call_next_in_oldest_mode_takes_the_oldest_head(store, new_queue, new_desk):
    a, lab = new_queue(), new_queue()
    desk = new_desk([a, lab], pick_mode="oldest")
    l1, a1, l2, a2 = join(store, lab), join(store, a), join(store, lab), join(store, a)
    served = [call_next(store, desk).id for _ in range(4)]
    assert served == [l1.id, a1.id, l2.id, a2.id]


def test_oldest_mode_follows_issue_order_when_the_clock_steps_back(
        store, new_queue, new_desk, monkeypatch):
    a, lab = new_queue(), new_queue()
    desk = new_desk([a, lab], pick_mode="oldest")
    a1 = join(store, a)
    stepped_back = to_iso(utcnow() - timedelta(hours=1))  # an NTP correction, a DST mistake
    monkeypatch.setattr(tickets, "utcnow_iso", lambda: stepped_back)
    l1 = join(store, lab)
    assert l1.created_at < a1.created_at
    a2 = join(store, a)
    served = [call_next(store, desk).id for _ in range(3)]
    assert served == [a1.id, l1.id, a2.id]


def test_oldest_mode_still_serves_priority_first(store, new_queue, new_desk):
    a, lab = new_queue(), new_queue()
    desk = new_desk([a, lab], pick_mode="oldest")
    a1 = join(store, a)
    lp = join(store, lab, priority=True)
    assert call_next(store, desk).id == lp.id
    assert call_next(store, desk).id == a1.id


def test_call_next_only_serves_the_desks_queues(store, new_queue, new_desk):
    a, lab = new_queue(), new_queue()
    join(store, lab)
    desk = new_desk([a])
    with pytest.raises(QueueEmpty):
        call_next(store, desk)
    with pytest.raises(NotFound):
        do(store, tickets.call_next, "no-such-desk")


def test_call_next_records_desk_user_and_now_serving(world, store, office):
    a, room2 = office["a"], office["room2"]
    t = join(store, a)
    called = do(store, tickets.call_next, room2.id, user_id=world.staff_id)
    assert (called.id, called.state, called.desk_id, called.called_by) == \
        (t.id, CALLED, room2.id, world.staff_id)
    with store.read() as tx:
        history = tickets.interactions(tx, t.id)
    assert len(history) == 1 and history[0].desk_id == room2.id
    assert history[0].user_id == world.staff_id and history[0].started_at == called.called_at


# -- closed queues ----------------------------------------------------------------------------

def test_a_closed_queue_refuses_joins_but_serves_its_waiting_tickets(store, client, office):
    a, room1 = office["a"], office["room1"]
    t1, t2 = join(store, a), join(store, a)
    do(store, queues.update_queue, a.id, is_open=False)
    with pytest.raises(QueueClosed):
        join(store, a)
    r = client.post(f"/api/v1/queues/{a.id}/tickets", json={})
    assert r.status_code == 409 and r.get_json()["code"] == "queue_closed"
    assert r.mimetype == "application/problem+json"
    assert [call_next(store, room1).id, call_next(store, room1).id] == [t1.id, t2.id]
    with store.read() as tx:
        assert tx.one("SELECT last_number FROM queues WHERE id = ?", (a.id,))[0] == 2
    do(store, queues.update_queue, a.id, is_open=True)
    assert join(store, a).number == 3, "refused joins used up no number"


def test_staff_may_issue_into_a_closed_queue_when_allowed(store, office):
    a = office["a"]
    do(store, queues.update_queue, a.id, is_open=False)
    assert join(store, a, allow_closed=True).number == 1


# -- position, estimated wait, now serving ----------------------------------------------------

def test_position_and_wait_before_any_data_use_the_default(store, client, office):
    a, lab = office["a"], office["lab"]  # a: served by two desks; lab: by one
    ta = [join(store, a) for _ in range(4)]
    tl = [join(store, lab) for _ in range(3)]
    with store.read() as tx:
        for i, t in enumerate(ta):
            s = status.ticket_status(tx, tickets.get(tx, t.id), DEFAULT_S)
            assert s["position"] == i + 1
            assert s["estimated_wait_s"] == math.ceil(DEFAULT_S * i / 2)
        for i, t in enumerate(tl):
            s = status.ticket_status(tx, tickets.get(tx, t.id), DEFAULT_S)
            assert s["position"] == i + 1 and s["estimated_wait_s"] == DEFAULT_S * i
    r = client.get(f"/api/v1/tickets/by-hash/{ta[3].hash}")
    assert r.status_code == 200
    assert r.get_json()["position"] == 4 and r.get_json()["estimated_wait_s"] == 450
    r = client.post(f"/api/v1/queues/{a.id}/tickets", json={})
    assert r.status_code == 201 and r.get_json()["position"] == 5
    assert r.get_json()["estimated_wait_s"] == 600


def test_wait_learns_the_service_time(store, client, office):
    a, room1 = office["a"], office["room1"]
    served = [join(store, a) for _ in range(3)]
    last = join(store, a)
    samples = [120.0, 60.0, 3 * 3600.0]  # the last one is absurd and must be ignored
    for t, seconds in zip(served, samples, strict=True):
        do(store, tickets.call, t.id, room1.id)
        set_call_started(store, t.id, seconds)
        do(store, tickets.complete, t.id)
    # median of the two believable services (90 s), 2 of 5 warm-up samples: 40 % data
    expected = 0.4 * 90.0 + 0.6 * DEFAULT_S
    with store.read() as tx:
        queue = queues.get_queue(tx, a.id)
        assert queue.avg_service_s == pytest.approx(expected, abs=0.5)
        pos = status.position(tx, tickets.get(tx, last.id))
    assert pos == 1
    later = [join(store, a) for _ in range(3)]
    with store.read() as tx:
        s = status.ticket_status(tx, tickets.get(tx, later[2].id), DEFAULT_S)
    assert s["position"] == 4
    assert s["estimated_wait_s"] == pytest.approx(expected * 3 / 2, abs=1)
    r = client.get("/api/v1/queues")
    summary = next(q for q in r.get_json()["items"] if q["id"] == a.id)
    assert summary["waiting"] == 4
    assert summary["estimated_wait_s"] == pytest.approx(expected * 4 / 2, abs=1)


def test_skips_and_returns_do_not_count_as_service_time(store, office):
    a, room1 = office["a"], office["room1"]
    t1, t2 = join(store, a), join(store, a)
    for t, end in ((t1, tickets.skip), (t2, tickets.return_to_queue)):
        do(store, tickets.call, t.id, room1.id)
        set_call_started(store, t.id, 90)
        do(store, end, t.id)
    with store.read() as tx:
        assert queues.get_queue(tx, a.id).avg_service_s is None


def test_more_desks_serving_a_queue_shorten_the_wait(store, office, new_desk):
    lab = office["lab"]
    t = [join(store, lab) for _ in range(5)]

    def wait() -> int:
        with store.read() as tx:
            return status.ticket_status(tx, tickets.get(tx, t[4].id), DEFAULT_S)[
                "estimated_wait_s"]

    assert wait() == 4 * DEFAULT_S
    new_desk([lab])
    assert wait() == 2 * DEFAULT_S
    new_desk([lab])
    assert wait() == math.ceil(4 * DEFAULT_S / 3)


def test_position_is_none_unless_waiting(store, office):
    t = join(store, office["a"])
    do(store, tickets.call, t.id, office["room1"].id)
    with store.read() as tx:
        s = status.ticket_status(tx, tickets.get(tx, t.id), DEFAULT_S)
    assert s["position"] is None and s["estimated_wait_s"] is None
    assert s["desk_name"] == office["room1"].name


def test_now_serving_is_the_code_most_recently_called(store, client, office):
    a, room1, room2 = office["a"], office["room1"], office["room2"]
    with store.read() as tx:
        assert status.now_serving(tx, queues.get_queue(tx, a.id)) is None
    t1, t2, t3 = join(store, a), join(store, a), join(store, a)
    call_next(store, room1)
    call_next(store, room2)
    with store.read() as tx:
        ns = status.now_serving(tx, queues.get_queue(tx, a.id))
    assert (ns["code"], ns["desk_name"]) == (t2.code, room2.name)
    do(store, tickets.complete, t2.id)
    r = client.get(f"/api/v1/tickets/by-hash/{t3.hash}")
    assert r.get_json()["now_serving"]["code"] == t2.code
    call_next(store, room1)
    r = client.get(f"/api/v1/tickets/by-hash/{t3.hash}")
    assert r.get_json()["now_serving"]["code"] == t3.code
    assert r.get_json()["now_serving"]["desk_name"] == room1.name
    assert t1.code != t3.code


# -- validation of labels, extra fields and text ----------------------------------------------

def test_labels_and_extra_are_normalised(store, office):
    t = join(store, office["a"], name="  Aino  ", phone="040 123",
             labels=["VIP", {"value": " wheelchair ", "color": "#ABC"}],
             extra=[{"title": " Reason ", "value": "blood test"}])
    assert t.name == "Aino" and t.phone == "040 123"
    assert t.labels == [{"value": "VIP", "color": "#6e7781", "public": False},
                        {"value": "wheelchair", "color": "#aabbcc", "public": False}]
    assert t.extra == [{"title": "Reason", "value": "blood test"}]


@pytest.mark.parametrize(("field", "value", "where"), [
    ("labels", "VIP", "labels"),
    ("labels", [{"value": ""}], "labels[0].value"),
    ("labels", [{"value": "x" * 33}], "labels[0].value"),
    ("labels", [{"value": "VIP", "color": "red"}], "labels[0].color"),
    ("labels", [42], "labels[0]"),
    ("labels", ["x"] * 11, "labels"),
    ("extra", {"title": "a"}, "extra"),
    ("extra", [{"value": "no title"}], "extra[0].title"),
    ("extra", [{"title": "t", "value": 5}], "extra[0].value"),
    ("extra", [{"title": "t", "value": "v" * 501}], "extra[0].value"),
    ("extra", [{"title": "t" * 61}], "extra[0].title"),
    ("extra", [{"title": "t"}] * 21, "extra"),
    ("name", "x" * 121, "name"),
    ("name", "bell\x07", "name"),
    ("phone", "1" * 41, "phone"),
])
def test_bad_fields_are_refused_and_use_no_number(store, client, world, office, field, value,
                                                  where):
    a = office["a"]
    with pytest.raises(ValidationError) as err:
        join(store, a, **{field: value})
    assert err.value.errors[0]["field"] == where
    r = client.post(f"/api/v1/queues/{a.id}/tickets", json={field: value},
                    headers=world.staff)
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    body = r.get_json()
    assert body["code"] == "validation_error" and body["errors"][0]["field"] in (where, field)
    t = join(store, a)
    assert t.number == 1, "a refused join uses up no number"
    with pytest.raises(ValidationError) as err:
        do(store, tickets.update, t.id, version=t.version, **{field: value})
    assert fresh(store, t.id) == t


def test_unknown_source_and_edit_fields_are_refused(store, office):
    with pytest.raises(ValidationError):
        join(store, office["a"], source="fax")
    t = join(store, office["a"])
    with pytest.raises(ValidationError):
        do(store, tickets.update, t.id, version=t.version, code="Z999")
    with pytest.raises(ValidationError):
        do(store, tickets.update, t.id, version=t.version, priority="urgent")
    assert fresh(store, t.id) == t


# -- hashes -----------------------------------------------------------------------------------

URLSAFE = set(string.ascii_letters + string.digits + "-_")


def test_hashes_are_22_url_safe_characters_and_unique(store, new_queue):
    q = new_queue()
    with store.write() as tx:
        issued = [tickets.join(tx, q.id) for _ in range(400)]
    hashes = [t.hash for t in issued]
    assert HASH_LENGTH == 22
    assert all(len(h) == 22 and set(h) <= URLSAFE for h in hashes)
    assert len(set(hashes)) == len(hashes)
    # All 64 symbols in use (so 22 characters carry 132 bits), none favoured grossly.
    counts = {c: sum(h.count(c) for h in hashes) for c in URLSAFE}
    assert min(counts.values()) > 0
    assert max(counts.values()) < 3 * (22 * 400 / 64)
    with store.read() as tx:
        assert tickets.find_by_hash(tx, hashes[7]).id == issued[7].id
        assert tickets.find_by_hash(tx, "A" * 22) is None


def _crockford_value(ulid: str) -> int:
    return int("".join(format(CROCKFORD.index(c), "05b") for c in ulid), 2)


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def test_ulids_are_26_crockford_digits_of_their_millisecond_and_sort_as_made():
    before = time.time_ns() // 1_000_000
    made = [new_ulid() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert all(len(u) == 26 and set(u) <= set(CROCKFORD) for u in made)
    assert made == sorted(made) and len(set(made)) == len(made)
    values = [_crockford_value(u) for u in made]
    assert all(v < 1 << 128 for v in values)  # the two top bits of 130 are zero
    assert before <= values[0] >> 80 <= values[-1] >> 80 <= after
    # Within one millisecond the random part counts up by one.
    same_ms = [(a, b) for a, b in zip(values, values[1:]) if a >> 80 == b >> 80]
    assert same_ms and all(b == a + 1 for a, b in same_ms)
    # Every digit position takes the whole alphabet where the bits are random.
    assert {u[-1] for u in made} == set(CROCKFORD)


def test_unknown_hash_is_404_problem(client):
    r = client.get("/api/v1/tickets/by-hash/" + "A" * 22)
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"
    r = client.post("/api/v1/tickets/by-hash/" + "A" * 22 + "/cancel")
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"


# -- order keys stay distinct among the tickets holding a place ---------------------------------

def test_moved_to_the_end_then_a_new_join_comes_after_it(store, office):
    a = office["a"]
    t1, t2 = join(store, a), join(store, a)
    do(store, tickets.reorder, t1.id, after=t2.id)
    t3 = join(store, a)
    assert waiting_codes(store, a) == [t2.code, t1.code, t3.code]


def test_moved_to_the_front_while_another_is_called(store, office):
    """The called ticket still holds its place; a move to the front goes before it."""
    a, room1 = office["a"], office["room1"]
    t1, t2, t3 = join(store, a), join(store, a), join(store, a)
    do(store, tickets.call, t1.id, room1.id)
    do(store, tickets.reorder, t3.id, after=None)
    do(store, tickets.return_to_queue, t1.id)
    assert waiting_codes(store, a) == [t3.code, t1.code, t2.code]


def test_moved_after_a_ticket_goes_before_a_called_one_behind_it(store, office):
    a, room1 = office["a"], office["room1"]
    t1, t2, t3 = join(store, a), join(store, a), join(store, a)
    do(store, tickets.call, t2.id, room1.id)
    do(store, tickets.reorder, t3.id, after=t1.id)
    do(store, tickets.return_to_queue, t2.id)
    assert waiting_codes(store, a) == [t1.code, t3.code, t2.code]


def test_transferred_to_the_front_while_the_head_is_called(store, office):
    a, lab, room2 = office["a"], office["lab"], office["room2"]
    l1, l2 = join(store, lab), join(store, lab)
    do(store, tickets.call, l1.id, room2.id)
    x = join(store, a)
    do(store, tickets.call, x.id, office["room1"].id)
    do(store, tickets.transfer, x.id, lab.id, to_front=True)
    do(store, tickets.return_to_queue, l1.id)
    assert waiting_codes(store, lab) == [x.code, l1.code, l2.code]


def test_now_serving_follows_recalls_and_forgets_calls_that_did_not_happen(tmp_path):
    from jonot_local.db import open_store
    from jonot_local.domain import queues as q_domain
    from jonot_local.domain import status
    from jonot_local.domain import tickets as t_domain

    store = open_store(tmp_path / "ns")
    try:
        with store.write() as tx:
            q = q_domain.create_queue(tx, name="General", prefix="A")
            d1 = q_domain.create_desk(tx, name="Room 1", queue_ids=[q.id])
            d2 = q_domain.create_desk(tx, name="Room 2", queue_ids=[q.id])
            a1, a2, a3 = (t_domain.join(tx, q.id) for _ in range(3))

            def serving() -> str | None:
                ns = status.now_serving(tx, q_domain.get_queue(tx, q.id))
                return ns["code"] if ns else None

            t_domain.call_next(tx, d1.id)            # A001 at Room 1
            t_domain.complete(tx, a1.id)
            t_domain.call_next(tx, d1.id)            # A002 at Room 1
            t_domain.call_next(tx, d2.id)            # A003 at Room 2
            assert serving() == "A003"
            t_domain.recall(tx, a2.id)
            assert serving() == "A002"               # announced again: served now
            t_domain.return_to_queue(tx, a2.id)
            assert serving() == "A003"               # latest call still standing
            t_domain.cancel(tx, a3.id, by="staff")
            assert serving() == "A001"               # the last one actually served
            t_domain.call_next(tx, d1.id)            # A002 again
            t_domain.skip(tx, a2.id)
            assert serving() == "A002"               # a no-show was still called
    finally:
        store.close()
