"""Hardening of the ticket domain: codes never repeat while live, staff-only labels,
a service-time estimate that bad samples cannot collapse, and text that cannot
fake a screen or break a receipt."""

from __future__ import annotations

import itertools
import random
import sqlite3
import string
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jonot_local.app import create_app
from jonot_local.db import connect
from jonot_local.domain import devices, queues, status, tickets, users
from jonot_local.domain.errors import Conflict, DomainError, ValidationError
from jonot_local.domain.status import ServiceEstimator
from jonot_local.domain.text import clean_line, clean_notes
from jonot_local.migrations import migrate
from jonot_local.timeutil import to_iso, utcnow

from .support import World
from .test_streams import parse_block

_PREFIXES = ("".join(p) for p in itertools.product("XYZ", string.ascii_uppercase,
                                                    string.ascii_uppercase))


@pytest.fixture
def bare_store(tmp_path: Path) -> Iterator[Any]:
    """A fresh office database with no accounts (no password hashing to wait for)."""
    app = create_app({"data_dir": tmp_path / "data", "hash_lookup_floor_ms": 0})
    yield app.extensions["jonot"].store
    app.extensions["jonot"].store.close()


@pytest.fixture
def bare_office(bare_store: Any) -> dict[str, Any]:
    """Queues A (General) and L (Laboratory); Room 1 serves A, Room 2 serves A then L."""
    with bare_store.write() as tx:
        a = queues.create_queue(tx, name="General", prefix="A")
        lab = queues.create_queue(tx, name="Laboratory", prefix="L")
        room1 = queues.create_desk(tx, name="Room 1", queue_ids=[a.id])
        room2 = queues.create_desk(tx, name="Room 2", queue_ids=[a.id, lab.id])
    return {"a": a, "lab": lab, "room1": room1, "room2": room2}


# The API tests of this module share one app (conftest's world, with staff and admin).
pytestmark = pytest.mark.shared_world(hash_lookup_per_min=100_000)


@pytest.fixture
def queue(world: Any) -> Any:
    """A fresh queue of the module's app, with a prefix no other test uses, and a desk."""
    prefix = next(_PREFIXES)
    with world.store.write() as tx:
        q = queues.create_queue(tx, name=f"Queue {prefix}", prefix=prefix)
        queues.create_desk(tx, name=f"Desk {prefix}", queue_ids=[q.id])
    return q


def do(store: Any, fn: Any, *args: Any, **kw: Any) -> Any:
    with store.write() as tx:
        return fn(tx, *args, **kw)


def live_codes(store: Any) -> list[str]:
    with store.read() as tx:
        return [r["code"] for r in tx.all(
            "SELECT code FROM tickets WHERE state IN ('WAITING', 'CALLED') ORDER BY code")]


# == 7. a visible code never repeats while live =================================================

def test_the_issue_sequence_is_refused_with_a_reason(client, world, staff_headers):
    r = client.post("/api/v1/queues", json={"name": "General", "prefix": "M"},
                    headers=world.admin)
    general = r.json
    first = client.post(f"/api/v1/queues/{general['id']}/tickets", json={}).json
    assert first["code"] == "M001"
    r = client.patch(f"/api/v1/queues/{general['id']}", json={"prefix": "N"},
                     headers=world.admin)
    assert r.status_code == 200 and r.json["prefix"] == "N"

    r = client.post("/api/v1/queues", json={"name": "Pharmacy", "prefix": "m"},
                    headers=world.admin)
    assert r.status_code == 409 and r.json["code"] == "conflict"
    assert r.json["field"] == "prefix" and r.json["live_tickets"] == 1
    assert r.json["message"] == ("Prefix M is still on 1 waiting or called ticket of General; "
                                 "pick another prefix or wait until they are served.")
    # nor by changing another queue's prefix
    other = client.post("/api/v1/queues", json={"name": "Lab", "prefix": "L"},
                        headers=world.admin).json
    r = client.patch(f"/api/v1/queues/{other['id']}", json={"prefix": "M"},
                     headers=world.admin)
    assert r.status_code == 409 and "still on 1 waiting or called ticket" in r.json["message"]

    # once M001 is served, M is free again: the code repeats only among ended tickets
    desk = client.post("/api/v1/desks", json={"name": "Room 1", "queue_ids": [general["id"]]},
                       headers=world.admin).json
    called = client.post(f"/api/v1/desks/{desk['id']}/call-next", headers=staff_headers).json
    assert called["code"] == "M001"
    client.post(f"/api/v1/tickets/{called['id']}/complete", headers=staff_headers)
    r = client.post("/api/v1/queues", json={"name": "Pharmacy", "prefix": "M"},
                    headers=world.admin)
    assert r.status_code == 201
    again = client.post(f"/api/v1/queues/{r.json['id']}/tickets", json={}).json
    assert again["code"] == "M001"


def test_a_current_prefix_is_refused_naming_its_queue(bare_store, bare_office):
    with pytest.raises(Conflict, match="already used by the queue General"):
        do(bare_store, queues.create_queue, name="Other", prefix="A")
    with pytest.raises(Conflict, match="already used by the queue Laboratory"):
        do(bare_store, queues.update_queue, bare_office["a"].id, prefix="L")


def test_a_queue_takes_back_its_own_prefix_and_counts_on(bare_store, bare_office):
    a = bare_office["a"]
    t1 = do(bare_store, tickets.join, a.id)
    do(bare_store, queues.update_queue, a.id, prefix="N")
    t2 = do(bare_store, tickets.join, a.id)
    do(bare_store, queues.update_queue, a.id, prefix="A")  # its own A001 cannot clash
    t3 = do(bare_store, tickets.join, a.id)
    assert [t1.code, t2.code, t3.code] == ["A001", "N002", "A003"]
    # but N is still on N002, which A issued: no other queue may take N
    with pytest.raises(Conflict, match="Prefix N is still on 1 waiting or called ticket"):
        do(bare_store, queues.create_queue, name="New", prefix="N")


def test_a_transferred_ticket_still_guards_its_prefix(bare_store, bare_office):
    a, lab, room2 = bare_office["a"], bare_office["lab"], bare_office["room2"]
    t = do(bare_store, tickets.join, a.id)
    do(bare_store, tickets.call, t.id, room2.id)
    moved = do(bare_store, tickets.transfer, t.id, lab.id)
    assert (moved.code, moved.queue_id) == ("A001", lab.id)
    do(bare_store, queues.update_queue, a.id, prefix="G")
    # A001 now waits in Laboratory, but Laboratory's counter would issue A001 again
    with pytest.raises(Conflict, match="Prefix A is still on 1 waiting or called ticket of "
                                       "General"):
        do(bare_store, queues.update_queue, lab.id, prefix="A")
    with pytest.raises(Conflict, match="Prefix A is still on"):
        do(bare_store, queues.create_queue, name="Walk-in", prefix="A")
    # called from Laboratory and returned: still live, still guarding
    do(bare_store, tickets.call, t.id, room2.id)
    do(bare_store, tickets.return_to_queue, t.id)
    with pytest.raises(Conflict):
        do(bare_store, queues.update_queue, lab.id, prefix="A")
    do(bare_store, queues.update_queue, a.id, prefix="A")
    assert do(bare_store, tickets.join, a.id).code == "A002"
    assert live_codes(bare_store) == ["A001", "A002"]


def test_the_database_refuses_two_live_tickets_with_one_code(bare_store, bare_office):
    t = do(bare_store, tickets.join, bare_office["a"].id)
    lab = bare_office["lab"].id
    copy = ("INSERT INTO tickets (id, queue_id, origin_queue_id, number, code, hash, state, "
            "source, order_key, created_at, updated_at) "
            "SELECT ?, ?, ?, 1, code, ?, ?, source, 99, created_at, updated_at "
            "FROM tickets WHERE id = ?")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"), bare_store.write() as tx:
        tx.execute(copy, ("X1", lab, lab, "h" * 22, "WAITING", t.id))
    # an ended ticket may share a code with a live one
    with bare_store.write() as tx:
        tx.execute(copy, ("X2", lab, lab, "k" * 22, "COMPLETED", t.id))
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"), bare_store.write() as tx:
        tx.execute("UPDATE tickets SET state = 'CALLED' WHERE id = 'X2'")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"), bare_store.write() as tx:
        tx.execute("UPDATE queues SET prefix = 'A' WHERE id = ?", (lab,))


def test_random_office_days_never_show_one_code_twice(bare_store):
    """Random prefix changes, joins, calls, transfers, returns and ends: the domain refuses
    every prefix that could repeat a live code, before the database has to."""
    rng = random.Random(5)
    letters = ["M", "N", "K"]
    with bare_store.write() as tx:
        qs = [queues.create_queue(tx, name=f"Q{i}", prefix=p) for i, p in enumerate(letters)]
        desk = queues.create_desk(tx, name="Desk", queue_ids=[q.id for q in qs])
    refused = 0
    for _ in range(250):
        op = rng.choice(["join", "join", "prefix", "prefix", "call", "end", "transfer"])
        try:
            with bare_store.write() as tx:
                if op == "join":
                    tickets.join(tx, rng.choice(qs).id)
                elif op == "prefix":
                    queues.update_queue(tx, rng.choice(qs).id,
                                        prefix=rng.choice(letters + ["P"]))
                else:
                    called = tx.one("SELECT id FROM tickets WHERE state = 'CALLED'")
                    if op == "call" and called is None:
                        tickets.call_next(tx, desk.id)
                    elif called is not None and op == "end":
                        rng.choice([tickets.complete, tickets.skip,
                                    tickets.return_to_queue])(tx, called["id"])
                    elif called is not None and op == "transfer":
                        here = tickets.get(tx, called["id"]).queue_id
                        tickets.transfer(tx, called["id"],
                                         rng.choice([q.id for q in qs if q.id != here]))
        except Conflict:
            refused += 1
        except DomainError as err:
            assert err.code in ("queue_empty",), err
    codes = live_codes(bare_store)
    assert len(codes) == len(set(codes)) and len(codes) > 20
    assert refused > 0


def test_the_migration_tells_apart_codes_that_already_repeat(tmp_path: Path):
    conn = connect(tmp_path / "old.sqlite3")
    migrate(conn)
    # back to the schema before 0004, with the duplicate the old code allowed
    conn.execute("DROP INDEX ux_tickets_live_code")
    conn.execute("DROP INDEX ux_queues_prefix")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0004_live_codes'")
    now = to_iso(utcnow())
    for qid, prefix in (("q1", "N"), ("q2", "M")):
        conn.execute("INSERT INTO queues (id, name, prefix, created_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?)", (qid, qid, prefix, now, now))
    rows = [("t1", "q1", "M001", "WAITING", "2026-01-01T08:00:00Z"),
            ("t2", "q2", "M001", "WAITING", "2026-01-01T09:00:00Z"),
            ("t3", "q2", "M002", "COMPLETED", "2026-01-01T09:01:00Z"),
            ("t4", "q1", "M002", "CALLED", "2026-01-01T08:01:00Z")]
    for i, (tid, qid, code, state, created) in enumerate(rows):
        conn.execute("INSERT INTO tickets (id, queue_id, origin_queue_id, number, code, hash, "
                     "state, source, order_key, created_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, 'kiosk', ?, ?, ?)",
                     (tid, qid, qid, int(code[1:]), code, f"{i}" * 22, state, i, created,
                      created))
    assert migrate(conn)[-1] == "0004_live_codes"
    got = dict(conn.execute("SELECT id, code FROM tickets").fetchall())
    assert got == {"t1": "M001", "t2": "M001-2", "t3": "M002", "t4": "M002"}
    assert conn.execute("SELECT version FROM tickets WHERE id = 't2'").fetchone()[0] == 2
    conn.close()


# == 12. labels are staff-only unless public ====================================================

LABELS = [{"value": "Aggressive", "color": "#ff0000"},
          {"value": "Wheelchair", "public": True}]


def test_the_holder_sees_only_public_labels(client, staff_headers, queue):
    r = client.post(f"/api/v1/queues/{queue.id}/tickets", json={"labels": LABELS},
                    headers=staff_headers)
    assert r.status_code == 201
    staff_view = [{"value": "Aggressive", "color": "#ff0000", "public": False},
                  {"value": "Wheelchair", "color": "#6e7781", "public": True}]
    assert r.json["labels"] == staff_view
    holder = client.get(f"/api/v1/tickets/by-hash/{r.json['hash']}").json
    assert holder["labels"] == [staff_view[1]]
    assert b"Aggressive" not in client.get(f"/api/v1/tickets/by-hash/{r.json['hash']}").data
    assert client.get(f"/api/v1/tickets/{r.json['id']}", headers=staff_headers
                      ).json["labels"] == staff_view
    listed = client.get("/api/v1/tickets", headers=staff_headers).json["items"]
    assert listed[0]["labels"] == staff_view
    # an anonymous joiner gets the holder's view back
    anon = client.post(f"/api/v1/queues/{queue.id}/tickets", json={"labels": LABELS})
    assert anon.status_code == 201 and anon.json["labels"] == [staff_view[1]]
    # the holder's cancel answer too
    gone = client.post(f"/api/v1/tickets/by-hash/{r.json['hash']}/cancel").json
    assert gone["labels"] == [staff_view[1]]


def test_labels_stored_before_the_flag_are_staff_only(client, world, staff_headers, queue):
    t = do(world.store, tickets.join, queue.id)
    with world.store.write() as tx:
        tx.execute("UPDATE tickets SET labels = ? WHERE id = ?",
                   ('[{"value": "Aggressive", "color": "#ff0000"}]', t.id))
    assert client.get(f"/api/v1/tickets/by-hash/{t.hash}").json["labels"] == []
    assert client.get(f"/api/v1/tickets/{t.id}", headers=staff_headers).json["labels"] == [
        {"value": "Aggressive", "color": "#ff0000", "public": False}]


@pytest.mark.parametrize("public", ["yes", 1, [], {}])
def test_public_must_be_a_boolean(client, staff_headers, queue, public):
    r = client.post(f"/api/v1/queues/{queue.id}/tickets",
                    json={"labels": [{"value": "VIP", "public": public}]}, headers=staff_headers)
    assert r.status_code == 422
    assert r.json["errors"] == [{"field": "labels[0].public", "message": "must be true or false"}]


def test_a_public_label_can_be_set_by_edit(client, world, staff_headers, queue):
    t = do(world.store, tickets.join, queue.id, labels=["Aggressive"])
    r = client.patch(f"/api/v1/tickets/{t.id}", headers=staff_headers,
                     json={"version": t.version, "labels": ["Aggressive",
                                                            {"value": "VIP", "public": True}]})
    assert r.status_code == 200 and [lb["public"] for lb in r.json["labels"]] == [False, True]
    assert [lb["value"] for lb in client.get(f"/api/v1/tickets/by-hash/{t.hash}").json[
        "labels"]] == ["VIP"]


def test_the_holders_stream_shows_only_public_labels(client, staff_headers, queue):
    r = client.post(f"/api/v1/queues/{queue.id}/tickets", json={"labels": LABELS},
                    headers=staff_headers)
    path = f"/api/v1/tickets/by-hash/{r.json['hash']}/events"
    live = client.get(path, buffered=False)
    try:
        first = parse_block(next(iter(live.response)).strip())
    finally:
        live.close()
    assert first["event"] == "ticket"
    assert [lb["value"] for lb in first["data"]["labels"]] == ["Wheelchair"]
    client.post(f"/api/v1/tickets/{r.json['id']}/cancel", headers=staff_headers)
    ended = client.get(path)  # an ended ticket's stream: its last view, then "end"
    assert ended.status_code == 200 and b"Wheelchair" in ended.data
    assert b"Aggressive" not in ended.data


# == 13. the service-time estimate ==============================================================

EST = ServiceEstimator(default_s=300.0, min_s=20.0, max_s=7200.0, window=20, warmup=5)


def test_no_believable_sample_keeps_the_default():
    assert EST.estimate([]) is None
    assert EST.estimate([0.004, 2.4, 1.0, 19.9, 3 * 3600.0]) is None


def test_few_samples_lean_on_the_default():
    assert EST.estimate([240.0]) == pytest.approx(0.2 * 240 + 0.8 * 300)  # not 240 outright
    assert EST.estimate([240.0, 180.0]) == pytest.approx(0.4 * 210 + 0.6 * 300)
    assert EST.estimate([240.0] * 5) == pytest.approx(240.0)


def test_a_steady_four_minute_rhythm_is_four_minutes():
    rng = random.Random(13)
    samples = [240 + rng.uniform(-30, 30) for _ in range(60)]
    assert EST.estimate(samples) == pytest.approx(240, abs=15)


def test_one_outlier_and_a_burst_of_slips_do_not_move_it():
    steady = [240.0] * 12
    assert EST.estimate([3000.0, *steady]) == pytest.approx(240.0)
    assert EST.estimate([0.003, 0.004, 1.2, 2.0, 0.5, *steady]) == pytest.approx(240.0)
    # only the newest ``window`` counted services matter
    assert EST.estimate([60.0] * 20 + [600.0] * 20) == pytest.approx(60.0)


def serve(bare_store: Any, queue: Any, desk: Any, seconds: float) -> None:
    """Join, call and complete one ticket whose service took ``seconds``."""
    t = do(bare_store, tickets.join, queue.id)
    do(bare_store, tickets.call, t.id, desk.id)
    moment = to_iso(utcnow() - timedelta(seconds=seconds))
    with bare_store.write() as tx:
        tx.execute("UPDATE interactions SET started_at = ? WHERE ticket_id = ? "
                   "AND ended_at IS NULL", (moment, t.id))
    do(bare_store, tickets.complete, t.id, service=EST)


def waits(bare_store: Any, queue: Any, default_s: float = 300.0) -> int:
    with bare_store.read() as tx:
        q = queues.get_queue(tx, queue.id)
        return status.estimated_wait_s(tx, q, status.waiting_count(tx, q.id), default_s)


def test_a_call_completed_at_once_does_not_collapse_the_wait(bare_store, bare_office):
    a, room1 = bare_office["a"], bare_office["room1"]
    for _ in range(6):
        do(bare_store, tickets.join, a.id)
    # six waiting, two desks (Room 1 and Room 2) serving the queue, 300 s each
    assert waits(bare_store, a) == 6 * 300 // 2
    t = do(bare_store, tickets.join, a.id)
    do(bare_store, tickets.call, t.id, room1.id)
    do(bare_store, tickets.complete, t.id, service=EST)  # a few ms after the call
    assert waits(bare_store, a) == 6 * 300 // 2
    serve(bare_store, a, room1, 2.4)
    assert waits(bare_store, a) == 6 * 300 // 2


def test_the_api_learns_through_the_settings(tmp_path: Path):
    own = World(tmp_path / "data", hash_lookup_per_min=100_000, default_service_s=300,
                service_min_s=60, service_warmup=1)
    try:
        store = own.store
        with store.write() as tx:
            q = queues.create_queue(tx, name="General", prefix="A")
            desk = queues.create_desk(tx, name="Room 1", queue_ids=[q.id])
        client = own.app.test_client()
        for seconds in (45.0, 150.0):  # 45 s is below this office's 60 s floor
            t = do(store, tickets.join, q.id)
            do(store, tickets.call, t.id, desk.id)
            with store.write() as tx:
                tx.execute("UPDATE interactions SET started_at = ? WHERE ticket_id = ?",
                           (to_iso(utcnow() - timedelta(seconds=seconds)), t.id))
            r = client.post(f"/api/v1/tickets/{t.id}/complete", headers=own.staff)
            assert r.status_code == 200
        summary = client.get("/api/v1/queues").json["items"][0]
        assert summary["service_time_s"] == pytest.approx(150.0, abs=1)
    finally:
        store.close()


def test_a_realistic_morning(bare_store, bare_office):
    a, room1 = bare_office["a"], bare_office["room1"]
    for seconds in (0.01, 2.4):          # slips first thing in the morning
        serve(bare_store, a, room1, seconds)
    serve(bare_store, a, room1, 250)          # the first real service: blended, 290 s
    with bare_store.read() as tx:
        assert queues.get_queue(tx, a.id).avg_service_s == pytest.approx(0.2 * 250 + 0.8 * 300,
                                                                         abs=1)
    for seconds in (230, 245, 5400, 240, 235, 0.5, 250):  # one of 90 min, one slip
        serve(bare_store, a, room1, seconds)
    with bare_store.read() as tx:  # the median of the 7 believable ones
        assert queues.get_queue(tx, a.id).avg_service_s == pytest.approx(245, abs=1)


def test_the_estimate_reads_a_bounded_slice_through_the_index(bare_store, bare_office):
    with bare_store.read() as tx:
        plan = " / ".join(r["detail"] for r in tx.all(
            "EXPLAIN QUERY PLAN SELECT started_at, ended_at FROM (SELECT started_at, ended_at, "
            "outcome FROM interactions WHERE queue_id = ? ORDER BY id DESC LIMIT ?) "
            "WHERE outcome = 'completed' AND ended_at IS NOT NULL", (bare_office["a"].id, 80)))
    assert "USING INDEX ix_interactions_queue" in plan and "TEMP B-TREE" not in plan


# == 14. text that fakes a screen or breaks a receipt ===========================================

@pytest.mark.parametrize(("raw", "clean"), [
    ("  Aino   Virtanen ", "Aino Virtanen"),
    ("Aino\nVirtanen", "Aino Virtanen"),
    ("Aino\r\nVirtanen\u2028x\u2029y\u0085z\tw", "Aino Virtanen x y z w"),
    ("A\u200bi\u200cn\u200do\u2060\ufeff\u00ad", "Aino"),       # invisible characters go
    ("\u200eAino\u200f", "Aino"),                                 # direction marks go
    ("Jose\u0301", "José"),                                       # NFC
    ("Ma\u00a0ija", "Ma ija"),
    ("=SUM(A1:A9)", "=SUM(A1:A9)"),                               # a CSV-export concern
    ("\u200b", None),
])
def test_clean_line(raw, clean):
    assert clean_line("name", raw, 120) == clean


@pytest.mark.parametrize(("raw", "message"), [
    ("evil\u202etxt.exe", "text-direction controls"),
    ("\u2067Aino\u2069", "text-direction controls"),
    ("Aino\x7f", "control characters"),
    ("Aino\x1b[2J", "control characters"),
    ("Aino\x00", "control characters"),
    ("Aino\x9b", "control characters"),
    ("Z\u0301\u0302\u0303\u0304\u0305\u0306", "accents"),
    ("Aino\ud800", "valid text"),
    (42, "must be text"),
])
def test_clean_line_refuses(raw, message):
    with pytest.raises(ValidationError, match=message) as err:
        clean_line("name", raw, 120)
    assert err.value.errors[0]["field"] == "name"


def test_clean_line_measures_the_cleaned_text():
    assert clean_line("name", "x" * 5 + "\u200b" * 50, 10) == "xxxxx"
    with pytest.raises(ValidationError, match="at most 10"):
        clean_line("name", "x" * 11, 10)


def test_notes_keep_their_lines_and_nothing_else():
    assert clean_notes("notes", "\nfirst  \r\nsecond\u2028third\tx\n\n", 2000) == (
        "first\nsecond\nthird x")
    with pytest.raises(ValidationError, match="control characters"):
        clean_notes("notes", "bell\x07", 2000)
    with pytest.raises(ValidationError, match="text-direction"):
        clean_notes("notes", "a\u202eb", 2000)
    assert clean_notes("notes", None, 10) == ""


def test_every_short_text_of_a_ticket_is_cleaned(client, staff_headers, queue):
    r = client.post(f"/api/v1/queues/{queue.id}/tickets", headers=staff_headers, json={
        "name": "Ai\u200bno\nVirtanen", "phone": "040\u2028123",
        "labels": [{"value": "V\u200bIP\u0085"}],
        "extra": [{"title": "Rea\u00adson\n", "value": "blood\ntest"}],
        "notes": "line one\nline two"})
    assert r.status_code == 201, r.json
    assert r.json["name"] == "Aino Virtanen" and r.json["phone"] == "040 123"
    assert r.json["labels"][0]["value"] == "VIP"
    assert r.json["extra"] == [{"title": "Reason", "value": "blood test"}]
    assert r.json["notes"] == "line one\nline two"
    for field, body in (("name", {"name": "\u202eevil"}),
                        ("phone", {"phone": "040\x7f"}),
                        ("labels[0].value", {"labels": ["a\u202eb"]}),
                        ("extra[0].value", {"extra": [{"title": "t", "value": "\x1b"}]})):
        r = client.post(f"/api/v1/queues/{queue.id}/tickets", json=body,
                        headers=staff_headers)
        assert r.status_code == 422 and r.json["errors"][0]["field"] == field, r.json
    t = client.post(f"/api/v1/queues/{queue.id}/tickets", json={}).json
    r = client.patch(f"/api/v1/tickets/{t['id']}", headers=staff_headers,
                     json={"version": t["version"], "name": "x\u2066y"})
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "name"


def test_names_of_queues_desks_displays_devices_and_staff_are_cleaned(bare_store, bare_office):
    with bare_store.write() as tx:
        q = queues.create_queue(tx, name="Blood\u200b tests\n", prefix="B")
        assert q.name == "Blood tests"
        assert queues.update_queue(tx, q.id, name="X\u0085ray").name == "X ray"
        # an invisible character no longer makes a second "Room 1"
        with pytest.raises(Conflict, match="Room 1"):
            queues.create_desk(tx, name="Room\u200b 1", queue_ids=[q.id])
        with pytest.raises(ValidationError, match="text-direction"):
            queues.create_display(tx, name="Lobby\u202e")
        assert queues.create_display(tx, name=" Lobby\u2028TV ")["name"] == "Lobby TV"
        record, _ = devices.register(tx, "kiosk", "Entrance\u200b kiosk")
        assert record["name"] == "Entrance kiosk"
        user = users.create_user(tx, "nurse", "nurse-password", display_name="Nurse\nAnna")
        assert user["display_name"] == "Nurse Anna"
        with pytest.raises(ValidationError):
            queues.create_queue(tx, name="\u200b\u200b", prefix="E")
