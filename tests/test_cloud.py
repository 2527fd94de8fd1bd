"""The cloud instance as a real process, driven over the sync protocol by a test office.

Every test runs against both stores: SQLite (the embedded default) and a
PostgreSQL cluster started on loopback for the session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from jonot_local.sync.cloud.offices import add_office
from jonot_local.sync.cloud.store import open_cloud_store

from jonot_local.ids import new_ticket_hash, new_ulid
from jonot_local.timeutil import to_iso

from .cloud_support import CloudProcess, FakeOffice, PostgresCluster, ensure_postgres_installed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    if ensure_postgres_installed() is None:
        pytest.skip("PostgreSQL is not installed and could not be installed "
                    "(apt-get install postgresql): the PostgreSQL runs are skipped")
    cluster = PostgresCluster()
    try:
        url = cluster.start()
    except RuntimeError as exc:
        cluster.stop()
        pytest.skip(f"PostgreSQL could not be started on loopback: {exc}")
    yield url
    cluster.stop()


class Backend:
    def __init__(self, name: str, data_dir: Path, url: str) -> None:
        self.name, self.data_dir, self.url = name, data_dir, url
        self.store = open_cloud_store(data_dir, url)

    def office(self, cloud: CloudProcess, name: str = "Clinic") -> FakeOffice:
        office_id, token = add_office(self.store, name)
        return FakeOffice(cloud.url, token, office_id)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request, tmp_path_factory) -> Iterator[Backend]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    b = Backend(request.param, tmp_path_factory.mktemp(f"cloud-{request.param}"), url)
    yield b
    b.store.close()


@pytest.fixture(scope="module")
def cloud(backend) -> Iterator[CloudProcess]:
    proc = CloudProcess(backend.data_dir, backend.url).start()
    yield proc
    proc.stop()


def by_hash(cloud: CloudProcess, ticket_hash: str) -> requests.Response:
    return requests.get(f"{cloud.url}/api/v1/tickets/by-hash/{ticket_hash}", timeout=10)


def office_with_queue(backend, cloud, prefix: str = "A") -> tuple[FakeOffice, str]:
    office = backend.office(cloud)
    queue_id, entry = office.queue(prefix=prefix)
    assert office.push([entry])["acked_seq"] == 1
    return office, queue_id


# -- pushes ---------------------------------------------------------------------------------

def test_contiguous_push_is_applied_and_answered_by_hash(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    hashes = [new_ticket_hash() for _ in range(3)]
    entries = [office.ticket(queue_id, n + 1, ticket_hash=h)[1] for n, h in enumerate(hashes)]
    answer = office.push(entries)
    assert answer["action"] == "ok" and answer["acked_seq"] == 4 and answer["applied"] == 3
    assert answer["max_numbers"] == {queue_id: 3}
    assert "cloud_time" in answer
    view = by_hash(cloud, hashes[2]).json()
    assert (view["code"], view["state"], view["position"]) == ("A003", "WAITING", 3)
    assert view["queue_name"] == "General" and view["stale"] is False
    assert view["estimated_wait_s"] == 240
    with backend.store.read() as tx:
        skew = tx.one("SELECT clock_skew_s FROM office WHERE office_id = ?",
                      (office.office_id,))["clock_skew_s"]
    assert skew is not None and skew < 0  # office_time is in the past: measured, not used


def test_duplicates_and_replays_change_nothing(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    h = new_ticket_hash()
    tid, first = office.ticket(queue_id, 1, ticket_hash=h)
    _, called = office.ticket(queue_id, 1, state="CALLED", version=2, ticket_id=tid,
                              ticket_hash=h, called_at="2026-12-01T08:05:00.000000Z")
    assert office.push([first, called])["acked_seq"] == 3
    for _ in range(3):  # the same batch again, and a part of it
        again = office.push([first, called])
        assert (again["acked_seq"], again["applied"], again["duplicates"]) == (3, 0, 2)
        assert office.push([first])["acked_seq"] == 3
    view = by_hash(cloud, h).json()
    assert view["state"] == "CALLED" and view["version"] == 2
    # an older snapshot under a new seq never moves the ticket back
    stale = office.entry("ticket", tid, 1, first["payload"])
    assert office.push([stale])["acked_seq"] == 4
    assert by_hash(cloud, h).json()["state"] == "CALLED"


def test_a_gap_stops_the_batch_at_acked_seq(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    _, e2 = office.ticket(queue_id, 1)
    _, e3 = office.ticket(queue_id, 2)
    _, e4 = office.ticket(queue_id, 3)
    answer = office.push([e3, e4])  # seq 2 missing
    assert (answer["action"], answer["acked_seq"], answer["applied"]) == ("ok", 1, 0)
    answer = office.push([e2, e4])  # 3 missing after 2
    assert answer["acked_seq"] == 2
    assert office.push([e3, e4])["acked_seq"] == 4


def test_fork_answers_rotate_and_a_new_epoch_supersedes(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    h = new_ticket_hash()
    tid, e2 = office.ticket(queue_id, 7, ticket_hash=h)
    assert office.push([e2])["acked_seq"] == 2
    # a restored backup: seq 2 again, other content
    office.seq = 1
    _, other = office.ticket(queue_id, 5)
    answer = office.push([other])
    assert answer["action"] == "rotate" and answer["max_numbers"][queue_id] == 7
    assert office.push([])["action"] == "rotate"  # that epoch stays refused
    # a head behind the acked seq alone is no fork (a late copy of an earlier push): the
    # answer's acked seq past the head tells a restored office to start a new epoch
    second = office.__class__(office.base, office.token, office.office_id)
    second.install_id = office.install_id
    q2, e1 = second.queue(queue_id=queue_id, version=1)
    assert second.push([e1])["acked_seq"] == 1
    answer = second.push([], head_seq=0)
    assert (answer["action"], answer["acked_seq"]) == ("ok", 1)
    assert second.push([e1])["action"] == "ok"  # the epoch stays live
    # a new epoch with a full snapshot: accepted, and it supersedes older versions
    third = office.__class__(office.base, office.token, office.office_id)
    third.install_id = office.install_id
    _, q = third.queue(queue_id=queue_id, version=1)
    _, t = third.ticket(queue_id, 7, state="CANCELED", version=1, ticket_id=tid, ticket_hash=h)
    assert third.push([q, t])["acked_seq"] == 2
    assert by_hash(cloud, h).json()["state"] == "CANCELED"
    assert second.push([])["action"] == "rotate"  # an older epoch pushing again


def test_two_installs_alternating_under_one_token_freeze(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    clone = FakeOffice(office.base, office.token, office.office_id)  # another install id
    q2, e = clone.queue()
    answer = clone.push([e])  # frozen at once: nothing of the second install is taken
    assert (answer["action"], answer["acked_seq"]) == ("frozen", 0)
    assert "re-enrol" in answer["message"]
    assert office.push([])["action"] == "frozen"  # the first install is told too
    assert clone.push([])["action"] == "frozen"
    assert clone.actions() == []  # and gets no command
    with backend.store.read() as tx:
        assert tx.one("SELECT 1 AS x FROM entity WHERE entity_id = ?", (q2,)) is None
    with backend.store.read() as tx:
        row = tx.one("SELECT status, alert FROM office WHERE office_id = ?",
                     (office.office_id,))
    assert row["status"] == "frozen" and "re-enrol" in row["alert"]
    # re-enrolling gives one of them a new token: it syncs on, into the same office's data
    from jonot_local.sync.cloud.offices import reenrol_office

    token = reenrol_office(backend.store, office.office_id)
    assert office.push_raw([]).status_code == 401  # the old token is gone
    chosen = FakeOffice(office.base, token, office.office_id)
    chosen.install_id, chosen.epoch_id, chosen.seq = clone.install_id, clone.epoch_id, clone.seq
    _, t = chosen.ticket(queue_id, 1)
    answer = chosen.push([e, t])  # its first entry was never taken: it comes again
    assert (answer["action"], answer["acked_seq"], answer["applied"]) == ("ok", 2, 2)


def test_a_second_install_polling_first_is_frozen_and_gets_no_command(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    r = requests.post(f"{cloud.url}/api/v1/queues/{queue_id}/tickets", json={}, timeout=10)
    assert r.status_code == 202
    clone = FakeOffice(office.base, office.token, office.office_id)
    got = clone.session.get(cloud.url + "/api/v1/sync/actions", timeout=10,
                            params={"after": 0, "wait": 0, "install_id": clone.install_id})
    assert got.status_code == 200
    body = got.json()
    assert body["actions"] == [] and body["frozen"] is True and "re-enrol" in body["message"]
    with backend.store.read() as tx:
        cmd = tx.one("SELECT state, cmd_seq FROM command WHERE office_id = ?",
                     (office.office_id,))
    assert (cmd["state"], cmd["cmd_seq"]) == ("pending", None)  # never handed out
    assert office.push([])["action"] == "frozen"


def _epoch_entry(office: FakeOffice, phase: str, previous: str | None = None,
                 reason: str = "rotate", tickets: int = 0) -> dict:
    payload = ({"epoch_id": office.epoch_id, "phase": "begin", "previous_epoch_id": previous,
                "reason": reason} if phase == "begin"
               else {"epoch_id": office.epoch_id, "phase": "end", "tickets": tickets})
    return office.entry("epoch", office.epoch_id, 1 if phase == "begin" else 2, payload)


def _new_epoch(office: FakeOffice, reason: str = "rotate") -> dict:
    previous, office.epoch_id, office.seq = office.epoch_id, new_ulid(), 0
    return _epoch_entry(office, "begin", previous, reason)


def test_a_new_epoch_retires_the_tickets_its_snapshot_lacks(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    kept, lost, done = new_ticket_hash(), new_ticket_hash(), new_ticket_hash()
    kept_id, e1 = office.ticket(queue_id, 1, ticket_hash=kept)
    _, e2 = office.ticket(queue_id, 2, ticket_hash=lost)
    _, e3 = office.ticket(queue_id, 3, state="COMPLETED", ticket_hash=done)
    assert office.push([e1, e2, e3])["acked_seq"] == 4
    begin = _new_epoch(office, reason="restore")  # restored from a backup with ticket 1 only
    _, q = office.queue(queue_id=queue_id)
    _, t = office.ticket(queue_id, 1, ticket_id=kept_id, ticket_hash=kept)
    assert office.push([begin, q, t])["acked_seq"] == 3
    assert by_hash(cloud, lost).json()["state"] == "WAITING"  # the snapshot is not complete yet
    assert office.push([_epoch_entry(office, "end", tickets=1)])["acked_seq"] == 4
    view = by_hash(cloud, lost).json()
    assert view["state"] == "RETIRED" and view["position"] is None
    assert "backup" in view["message"]
    assert by_hash(cloud, kept).json()["state"] == "WAITING"
    assert by_hash(cloud, done).json()["state"] == "COMPLETED"  # what happened stays
    page = requests.get(f"{cloud.url}/t/{lost}", timeout=10).text
    assert "no longer has this number" in page and "A002" in page
    answer = office.push([])
    assert answer["max_numbers"][queue_id] == 3  # its number is never given again


def test_a_second_copy_of_one_history_is_frozen_before_it_applies(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    copy = FakeOffice(office.base, office.token, office.office_id)
    copy.install_id, copy.epoch_id, copy.seq = office.install_id, office.epoch_id, office.seq
    _, mine = office.ticket(queue_id, 1)
    assert office.push([mine])["acked_seq"] == 2
    _, theirs = copy.ticket(queue_id, 1)
    assert copy.push([theirs])["action"] == "rotate"  # a fork: one of them starts over
    begin = _new_epoch(copy)
    _, q = copy.queue(queue_id=queue_id)
    assert copy.push([begin, q, _epoch_entry(copy, "end")])["action"] == "ok"
    _, later = office.ticket(queue_id, 2)
    assert office.push([later])["action"] == "rotate"  # the old history goes on ...
    begin = _new_epoch(office)
    _, later = office.ticket(queue_id, 2, ticket_id=later["entity_id"])
    answer = office.push([begin, later])  # ... and starts over: a second copy
    assert answer["action"] == "frozen" and "copied" in answer["message"]
    assert copy.push([])["action"] == "frozen"
    with backend.store.read() as tx:
        row = tx.one("SELECT status, alert FROM office WHERE office_id = ?",
                     (office.office_id,))
        assert tx.one("SELECT 1 AS x FROM ticket WHERE ticket_id = ?",
                      (later["entity_id"],)) is None
    assert row["status"] == "frozen" and "re-enrol" in row["alert"]
    # The admin keeps the old one: it starts a new epoch and is taken again.
    from jonot_local.sync.cloud.offices import reenrol_office

    chosen = FakeOffice(office.base, reenrol_office(backend.store, office.office_id),
                        office.office_id)
    chosen.install_id, chosen.epoch_id = office.install_id, office.epoch_id
    answer = chosen.push([begin, later])  # the epoch it had begun is taken now
    assert (answer["action"], answer["acked_seq"]) == ("ok", 2)


def test_two_new_epochs_from_one_are_a_copy_but_restores_are_not(backend, cloud):
    office, _ = office_with_queue(backend, cloud)
    first = office.epoch_id
    copy = FakeOffice(office.base, office.token, office.office_id)
    copy.install_id, copy.epoch_id = office.install_id, first
    assert office.push([_new_epoch(office, reason="sync_off")])["action"] == "ok"
    restored = FakeOffice(office.base, office.token, office.office_id)
    restored.install_id, restored.epoch_id = office.install_id, first
    assert restored.push([_new_epoch(restored, reason="restore")])["action"] == "ok"
    answer = copy.push([_new_epoch(copy)])
    assert answer["action"] == "frozen" and answer["acked_seq"] == 0


def test_wrong_or_revoked_token_is_refused(backend, cloud):
    from jonot_local.sync.cloud.offices import revoke_office

    office, _ = office_with_queue(backend, cloud)
    wrong = FakeOffice(cloud.url, "jo_not-a-token", office.office_id)
    resp = wrong.push_raw([])
    assert resp.status_code == 401 and resp.json()["code"] == "unauthorized"
    assert requests.post(cloud.url + "/api/v1/sync/push", json={}, timeout=5).status_code == 401
    revoke_office(backend.store, office.office_id)
    resp = office.push_raw([])
    assert resp.status_code == 403 and resp.json()["code"] == "revoked"
    r = office.session.get(cloud.url + "/api/v1/sync/actions", timeout=5)
    assert r.status_code == 403 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == "revoked"


def test_offices_are_kept_apart(backend, cloud):
    a, qa = office_with_queue(backend, cloud)
    b, qb = office_with_queue(backend, cloud)
    h = new_ticket_hash()
    ta, ea = a.ticket(qa, 1, ticket_hash=h)
    assert a.push([ea])["applied"] == 1
    # B writing A's ticket or A's queue under its own token: dead-lettered, not applied
    _, steal = b.ticket(qa, 99, state="CANCELED", version=9, ticket_id=ta)
    _, steal_q = b.queue(name="Hijacked", queue_id=qa, version=9)
    answer = b.push([steal, steal_q])
    assert answer["dead_lettered"] == 2 and answer["acked_seq"] == 3
    view = by_hash(cloud, h).json()
    assert (view["state"], view["number"], view["queue_name"]) == ("WAITING", 1, "General")
    assert b.push([])["max_numbers"] == {}
    # a remote join in A's queue is relayed to A only
    joined = requests.post(f"{cloud.url}/api/v1/queues/{qa}/tickets", json={}, timeout=5)
    assert joined.status_code == 202
    assert b.actions() == [] and len(a.actions()) == 1


def test_poison_entry_is_dead_lettered_and_the_rest_applied(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    _, good1 = office.ticket(queue_id, 1)
    bad = office.entry("ticket", new_ulid(), 1, {"queue_id": queue_id, "state": "EXPLODED"})
    tampered = office.entry("queue", new_ulid(), 1, {"name": "x"})
    tampered["entry_hash"] = "0" * 64
    _, good2 = office.ticket(queue_id, 2)
    answer = office.push([good1, bad, tampered, good2])
    assert (answer["acked_seq"], answer["applied"], answer["dead_lettered"]) == (5, 2, 2)
    assert office.push([bad])["duplicates"] == 1  # a dead letter is not a fork either
    with backend.store.read() as tx:
        dead = tx.all("SELECT seq, reason FROM dead_letter WHERE office_id = ? ORDER BY seq",
                      (office.office_id,))
    assert [d["seq"] for d in dead] == [3, 4]
    assert "state" in dead[0]["reason"] and "entry_hash" in dead[1]["reason"]


def test_malformed_push_is_a_422_problem(backend, cloud):
    office, _ = office_with_queue(backend, cloud)
    resp = office.session.post(cloud.url + "/api/v1/sync/push", json={"entries": "x"},
                               timeout=5)
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"


# -- remote join, cancel, actions ----------------------------------------------------------

def test_remote_join_is_pending_until_the_office_numbers_it(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    resp = requests.post(f"{cloud.url}/api/v1/queues/{queue_id}/tickets", json={}, timeout=5)
    assert resp.status_code == 202, resp.text
    joined = resp.json()
    assert joined["state"] == "PENDING" and joined["number"] is None
    assert joined["url"].endswith("/t/" + joined["hash"])
    [action] = office.actions(after=0)
    assert action["kind"] == "join" and action["cmd_seq"] == 1
    assert action["payload"] == {"ticket_id": joined["id"], "ticket_hash": joined["hash"],
                                 "queue_id": queue_id}
    assert office.actions(after=0) == [action]  # redelivered with the same number
    assert by_hash(cloud, joined["hash"]).json()["state"] == "PENDING"
    _, entry = office.ticket(queue_id, 12, ticket_id=joined["id"], source="remote")
    office.push([entry, office.result(action, "applied", ticket_id=joined["id"])])
    view = by_hash(cloud, joined["hash"]).json()
    assert (view["state"], view["code"], view["position"]) == ("WAITING", "A012", 1)
    page = requests.get(f"{cloud.url}/t/{joined['hash']}", timeout=5)
    assert page.status_code == 200 and "A012" in page.text
    assert office.actions(after=1) == []


def test_remote_join_refused_by_the_office_says_why(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    joined = requests.post(f"{cloud.url}/api/v1/queues/{queue_id}/tickets", timeout=5).json()
    [action] = office.actions()
    office.push([office.result(action, "rejected", "queue_closed")])
    view = by_hash(cloud, joined["hash"]).json()
    assert view["state"] == "REJECTED" and view["message"] == "This queue is closed just now."
    assert "closed" in requests.get(f"{cloud.url}/t/{joined['hash']}", timeout=5).text
    # a queue the cloud knows closed is refused at once
    _, closed = office.queue(queue_id=queue_id, open_=False, version=2)
    office.push([closed])
    resp = requests.post(f"{cloud.url}/api/v1/queues/{queue_id}/tickets", timeout=5)
    assert resp.status_code == 409 and resp.json()["code"] == "queue_closed"
    resp = requests.post(f"{cloud.url}/api/v1/queues/{new_ulid()}/tickets", timeout=5)
    assert resp.status_code == 404


def test_remote_cancel_is_pending_until_confirmed(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    h = new_ticket_hash()
    tid, entry = office.ticket(queue_id, 1, ticket_hash=h)
    office.push([entry])
    url = f"{cloud.url}/api/v1/tickets/by-hash/{h}/cancel"
    resp = requests.post(url, timeout=5)
    assert resp.status_code == 202
    assert resp.json()["state"] == "WAITING" and resp.json()["cancel_pending"] is True
    assert requests.post(url, timeout=5).status_code == 202  # a double tap: one command
    [action] = office.actions()
    assert action["kind"] == "cancel" and action["payload"] == {"ticket_id": tid}
    assert by_hash(cloud, h).json()["cancel_pending"] is True
    _, canceled = office.ticket(queue_id, 1, state="CANCELED", version=2, ticket_id=tid,
                                canceled_by="customer")
    office.push([canceled, office.result(action, "applied", ticket_id=tid)])
    view = by_hash(cloud, h).json()
    assert view["state"] == "CANCELED" and view["cancel_pending"] is False
    resp = requests.post(url, timeout=5)
    assert resp.status_code == 409 and resp.json()["code"] == "invalid_transition"


def test_remote_cancel_losing_to_a_call_is_shown_truthfully(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    h = new_ticket_hash()
    tid, entry = office.ticket(queue_id, 1, ticket_hash=h)
    office.push([entry])
    requests.post(f"{cloud.url}/api/v1/tickets/by-hash/{h}/cancel", timeout=5)
    [action] = office.actions()
    _, called = office.ticket(queue_id, 1, state="CALLED", version=2, ticket_id=tid,
                              called_at="2026-12-01T08:05:00.000000Z")
    office.push([called, office.result(action, "rejected", "already_called", ticket_id=tid)])
    view = by_hash(cloud, h).json()
    assert view["state"] == "CALLED" and view["cancel_pending"] is False
    assert "already been called" in view["message"]


def test_actions_long_poll_wakes_on_a_new_command(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    got: list = []
    started = time.monotonic()
    poller = threading.Thread(target=lambda: got.append((office.actions(after=0, wait=10),
                                                         time.monotonic())))
    poller.start()
    time.sleep(0.7)
    requests.post(f"{cloud.url}/api/v1/queues/{queue_id}/tickets", timeout=5)
    poller.join(15)
    [(actions, ended)] = got
    assert len(actions) == 1 and 0.6 < ended - started < 3
    t0 = time.monotonic()
    assert office.actions(after=1, wait=1) == [] and time.monotonic() - t0 >= 0.9
    resp = office.session.get(cloud.url + "/api/v1/sync/actions", params={"wait": 99},
                              timeout=5)
    assert resp.status_code == 422


def test_by_hash_of_an_unknown_ticket_is_404(backend, cloud):
    for h in (new_ticket_hash(), "not-a-hash"):
        resp = by_hash(cloud, h)
        assert resp.status_code == 404 and resp.json()["code"] == "not_found"
    assert requests.get(f"{cloud.url}/t/{new_ticket_hash()}", timeout=5).status_code == 404


def test_ticket_page_says_how_old_it_is_when_the_office_is_quiet(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    h = new_ticket_hash()
    office.push([office.ticket(queue_id, 4, ticket_hash=h)[1]])
    page = requests.get(f"{cloud.url}/t/{h}", timeout=5).text
    assert "A004" in page and '<p class="fresh" id="fresh" role="status" >Updated just now' in page
    quiet = to_iso(datetime.now(UTC) - timedelta(minutes=12))
    with backend.store.write() as tx:
        tx.execute("UPDATE office SET last_push_at = ? WHERE office_id = ?",
                   (quiet, office.office_id))
    page = requests.get(f"{cloud.url}/t/{h}", timeout=5).text
    assert ('<p class="fresh stale" id="fresh" role="status" >The clinic has not been heard '
            "from for 12 minutes; what you see may be out of date.") in page
    assert by_hash(cloud, h).json()["stale"] is True


def read_events(resp: requests.Response, out: list, stop_after: int) -> None:
    """Collect ``(event, data)`` until ``stop_after`` of them, an ``end``, or the test
    closes ``resp`` (a stream that had fewer to send: what came is in ``out``)."""
    event = None
    try:
        for line in resp.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
                if event == "end" or len(out) >= stop_after:
                    return
    except (AttributeError, OSError, requests.RequestException):
        return  # closed under the reader by the test


def test_events_stream_one_event_per_change_and_ends_on_terminal(backend, cloud):
    office, queue_id = office_with_queue(backend, cloud)
    h = new_ticket_hash()
    tid, entry = office.ticket(queue_id, 1, ticket_hash=h)
    office.push([entry])
    events: list = []
    resp = requests.get(f"{cloud.url}/api/v1/tickets/by-hash/{h}/events", stream=True,
                        timeout=20)
    reader = threading.Thread(target=read_events, args=(resp, events, 10))
    reader.start()
    time.sleep(0.5)
    office.push([office.ticket(queue_id, 1, state="CALLED", version=2, ticket_id=tid,
                               called_at="2026-12-01T08:05:00.000000Z")[1]])
    time.sleep(0.5)
    office.push([])  # a heartbeat changes nothing the holder sees
    time.sleep(0.5)
    office.push([office.ticket(queue_id, 1, state="COMPLETED", version=3, ticket_id=tid)[1]])
    reader.join(15)
    resp.close()
    assert [(e, d.get("state")) for e, d in events] == [
        ("ticket", "WAITING"), ("ticket", "CALLED"), ("ticket", "COMPLETED"),
        ("end", "COMPLETED")]


def test_unfetched_commands_expire_and_fetched_ones_never(backend, tmp_path):
    proc = CloudProcess(tmp_path / "ttl", backend.url,
                        env={"JONOT_CLOUD_COMMAND_TTL_S": "1"}).start()
    try:
        store = backend.store if backend.url else open_cloud_store(tmp_path / "ttl", "")
        office_id, token = add_office(store, "TTL")
        office = FakeOffice(proc.url, token, office_id)
        queue_id, q = office.queue()
        office.push([q])
        first = requests.post(f"{proc.url}/api/v1/queues/{queue_id}/tickets", timeout=5).json()
        [fetched] = office.actions()
        second = requests.post(f"{proc.url}/api/v1/queues/{queue_id}/tickets", timeout=5).json()
        time.sleep(2.5)
        gone = by_hash(proc, second["hash"]).json()
        assert gone["state"] == "REJECTED" and "offline" in gone["message"]
        assert by_hash(proc, first["hash"]).json()["state"] == "PENDING"
        assert office.actions() == [fetched]  # the expired one is never numbered
        third = requests.post(f"{proc.url}/api/v1/queues/{queue_id}/tickets", timeout=5).json()
        assert [a["cmd_seq"] for a in office.actions(after=1)] == [2]
        assert third["state"] == "PENDING"
        if store is not backend.store:
            store.close()
    finally:
        proc.stop()


def test_lookups_of_many_phones_behind_one_address_are_not_throttled_together(backend,
                                                                              tmp_path):
    env = {"JONOT_TRUSTED_PROXIES": "1", "JONOT_HASH_LOOKUP_PER_MIN": "5",
           "JONOT_HASH_MISS_PER_MIN": "3"}
    proc = CloudProcess(tmp_path / "rl", backend.url, env=env).start()
    proc.env = env
    try:
        store = backend.store if backend.url else open_cloud_store(tmp_path / "rl", "")
        office_id, token = add_office(store, "RL")
        office = FakeOffice(proc.url, token, office_id)
        queue_id, q = office.queue()
        hashes = [new_ticket_hash() for _ in range(8)]
        office.push([q, *[office.ticket(queue_id, i + 1, ticket_hash=h)[1]
                          for i, h in enumerate(hashes)]])
        carrier = {"X-Forwarded-For": "198.51.100.7"}
        for h in hashes:  # 8 phones, 3 look-ups each, one carrier address
            for _ in range(3):
                r = requests.get(f"{proc.url}/api/v1/tickets/by-hash/{h}", headers=carrier,
                                 timeout=5)
                assert r.status_code == 200
        codes = [requests.get(f"{proc.url}/api/v1/tickets/by-hash/{hashes[0]}",
                              headers=carrier, timeout=5).status_code for _ in range(4)]
        assert 429 in codes  # one phone polling too fast is held back ...
        assert requests.get(f"{proc.url}/api/v1/tickets/by-hash/{hashes[1]}", headers=carrier,
                            timeout=5).status_code == 200  # ... its neighbours are not
        guesses = [requests.get(f"{proc.url}/api/v1/tickets/by-hash/{new_ticket_hash()}",
                                headers={"X-Forwarded-For": "203.0.113.9"},
                                timeout=5).status_code for _ in range(5)]
        assert guesses[:3] == [404] * 3 and guesses[-1] == 429
        assert requests.get(f"{proc.url}/api/v1/tickets/by-hash/{hashes[2]}", headers=carrier,
                            timeout=5).status_code == 200
        if store is not backend.store:
            store.close()
    finally:
        proc.stop()


def test_cli_office_add_list_revoke(backend, tmp_path):
    base = [sys.executable, "-m", "jonot_local", "cloud", "office"]
    opts = ["--data-dir", str(backend.data_dir)]
    if backend.url:
        opts += ["--database-url", backend.url]
    out = subprocess.run([*base, "add", "Clinic CLI", "--json", *opts], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    made = json.loads(out)
    assert set(made) == {"office_id", "token"} and made["token"].startswith("jo_")
    listed = json.loads(subprocess.run([*base, "list", "--json", *opts], capture_output=True,
                                       text=True, check=True, timeout=30).stdout)
    assert any(o["office_id"] == made["office_id"] and o["status"] == "active" for o in listed)
    assert all("token_hash" not in o for o in listed)
    done = subprocess.run([*base, "revoke", made["office_id"], *opts], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0
    bad = subprocess.run([*base, "revoke", "nope", *opts], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2 and bad.stderr.startswith("jonot-local: error: no office")


# -- several cloud processes on one PostgreSQL ------------------------------------------------

def test_two_cloud_processes_never_double_apply_and_share_live_updates(pg_url, tmp_path):
    store = open_cloud_store(tmp_path, pg_url)
    procs = [CloudProcess(tmp_path / f"p{i}", pg_url).start() for i in range(2)]
    try:
        office_id, token = add_office(store, "Shared")
        offices = [FakeOffice(p.url, token, office_id) for p in procs]
        offices[1].install_id = offices[0].install_id
        offices[1].epoch_id = offices[0].epoch_id
        writer = offices[0]
        queue_id, q = writer.queue()
        entries = [q]
        hashes = []
        for n in range(1, 301):
            h = new_ticket_hash()
            hashes.append(h)
            entries.append(writer.ticket(queue_id, n, ticket_hash=h)[1])
        batches = [entries[i:i + 25] for i in range(0, len(entries), 25)]
        applied = []
        lock = threading.Lock()

        def pusher(office: FakeOffice) -> None:
            for _ in range(3):
                for batch in batches:
                    answer = office.push(batch, head_seq=len(entries))
                    with lock:
                        applied.append(answer["applied"])

        threads = [threading.Thread(target=pusher, args=(offices[i % 2],)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sum(applied) == len(entries)  # each entry applied once, whoever pushed it
        with store.read() as tx:
            row = tx.one("SELECT acked_seq FROM office_epoch WHERE office_id = ?", (office_id,))
            count = tx.one("SELECT COUNT(*) AS n FROM ticket WHERE office_id = ?", (office_id,))
        assert row["acked_seq"] == len(entries) and count["n"] == 300
        # a phone streaming from process 0 sees a change pushed through process 1
        tid = entries[1]["entity_id"]
        events: list = []
        resp = requests.get(f"{procs[0].url}/api/v1/tickets/by-hash/{hashes[0]}/events",
                            stream=True, timeout=20)
        reader = threading.Thread(target=read_events, args=(resp, events, 2))
        reader.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        offices[1].seq = len(entries)
        offices[1].push([offices[1].ticket(queue_id, 1, state="CALLED", version=2,
                                           ticket_id=tid)[1]])
        reader.join(10)
        resp.close()
        assert [d["state"] for _, d in events] == ["WAITING", "CALLED"]
        assert time.monotonic() - t0 < 2
    finally:
        for p in procs:
            p.stop()
        store.close()
