"""The office side of cloud sync: outbox, epochs, the worker against a real HTTP fake cloud,
relayed actions applied exactly once, and what health and ``sync status`` show."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from jonot_local.sync import outbox
from jonot_local.sync.apply import apply_action
from jonot_local.sync.protocol import TICKET_FIELDS, entry_hash
from jonot_local.sync.worker import Backoff, CloudClient, CloudError, SyncWorker

from jonot_local.backup import backup_database, database_path, restore_database
from jonot_local.cli import main
from jonot_local.domain import queues, tickets
from jonot_local.domain.location import rename_location

from .support import build_app
from .sync_fake_cloud import TOKEN, FakeCloud

SYNC = {"sync_heartbeat_s": 0.3, "sync_debounce_s": 0.0, "sync_timeout_s": 5.0}


@pytest.fixture
def cloud():
    made = FakeCloud().start()
    yield made
    made.stop()


def office_app(data_dir: Path, cloud_url: str = "http://127.0.0.1:9", **more: Any) -> Any:
    return build_app(data_dir, cloud_url=cloud_url, cloud_token=TOKEN, **{**SYNC, **more})


def entries(store: Any) -> list[dict[str, Any]]:
    with store.read() as tx:
        rows = tx.all("SELECT * FROM outbox ORDER BY seq")
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


def office_tickets(store: Any) -> dict[str, dict[str, Any]]:
    """What the cloud should hold of every office ticket."""
    with store.read() as tx:
        ids = [r["id"] for r in tx.all("SELECT id FROM tickets")]
        return {i: outbox.ticket_snapshot(tx, i)[1] for i in ids}


def setup(store: Any) -> tuple[Any, Any]:
    with store.write() as tx:
        q = queues.create_queue(tx, name="General", prefix="A")
        d = queues.create_desk(tx, name="Desk 1", queue_ids=[q.id])
    return q, d


def run_worker(store: Any, settings: Any, cloud: FakeCloud) -> SyncWorker:
    worker = SyncWorker(store, settings, CloudClient(cloud.url, TOKEN, 5.0))
    worker.start()
    return worker


# -- the outbox ---------------------------------------------------------------------------

def test_every_change_writes_one_entry_in_its_transaction(tmp_path):
    app = office_app(tmp_path)
    store = app.extensions["jonot"].store
    q, d = setup(store)
    with store.write() as tx:
        q2 = queues.create_queue(tx, name="Lab", prefix="B")
        queues.update_queue(tx, q.id, is_open=True, name="General practice")
        queues.update_desk(tx, d.id, name="Room 1")
        queues.create_display(tx, name="Hall")
        rename_location(tx, "Clinic")
    before = len(entries(store))
    steps = [
        lambda tx, t: tickets.call(tx, t.id, d.id),
        lambda tx, t: tickets.recall(tx, t.id),
        lambda tx, t: tickets.return_to_queue(tx, t.id),
        lambda tx, t: tickets.update(tx, t.id, version=tickets.get(tx, t.id).version,
                                     name="Secret Name", phone="555", notes="private"),
        lambda tx, t: tickets.reorder(tx, t.id, after=None),
        lambda tx, t: tickets.call(tx, t.id, d.id),
        lambda tx, t: tickets.transfer(tx, t.id, q2.id),
        lambda tx, t: tickets.cancel(tx, t.id, by="staff"),
    ]
    with store.write() as tx:
        t = tickets.join(tx, q.id, source="kiosk", name="Secret Name")
    for step in steps:
        with store.write() as tx:
            step(tx, t)
    for end in (tickets.complete, tickets.skip):
        with store.write() as tx:
            t2 = tickets.join(tx, q.id)
            tickets.call(tx, t2.id, d.id)  # one transaction, two changes: one entry
        with store.write() as tx:
            end(tx, t2.id)
    got = entries(store)
    assert [e["seq"] for e in got] == list(range(1, len(got) + 1))
    ticket_entries = got[before:]
    assert len(ticket_entries) == 1 + len(steps) + 2 * 2
    assert [e["payload"]["state"] for e in ticket_entries[:1 + len(steps)]] == [
        "WAITING", "CALLED", "CALLED", "WAITING", "WAITING", "WAITING", "CALLED", "WAITING",
        "CANCELED"]
    for e in got:
        assert e["entry_hash"] == entry_hash(e["entity"], e["entity_id"], e["version"],
                                             e["payload"])
    for e in ticket_entries:
        p = e["payload"]
        assert set(p) == {*TICKET_FIELDS, "hash_digest", "public_labels", "desk_name",
                          "queue_name"}
        # "555" as a JSON string: a timestamp's milliseconds may well read .555
        assert "Secret" not in json.dumps(p) and '"555"' not in json.dumps(p)
        assert "private" not in json.dumps(p)
    kinds = {e["entity"] for e in got}
    assert kinds == {"location", "queue", "desk", "display", "ticket", "epoch"}
    assert got[-1]["payload"]["state"] == "SKIPPED"
    assert ticket_entries[1]["payload"]["desk_name"] == "Room 1"


def test_a_rolled_back_change_leaves_no_entry(tmp_path):
    app = office_app(tmp_path)
    store = app.extensions["jonot"].store
    q, _ = setup(store)
    count = len(entries(store))
    with pytest.raises(RuntimeError), store.write() as tx:
        tickets.join(tx, q.id)
        raise RuntimeError("power cut")
    assert len(entries(store)) == count
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM tickets")[0] == 0


def test_sync_off_writes_no_outbox_and_turning_it_on_starts_an_epoch(tmp_path):
    app = build_app(tmp_path)
    store = app.extensions["jonot"].store
    q, _ = setup(store)
    with store.write() as tx:
        tickets.join(tx, q.id)
    assert entries(store) == []
    store.close()
    app = office_app(tmp_path)
    store = app.extensions["jonot"].store
    got = entries(store)
    # a full snapshot framed by the epoch's begin and end entries
    assert [e["entity"] for e in got] == ["epoch", "location", "queue", "desk", "ticket",
                                          "epoch"]
    assert got[0]["payload"] == {"epoch_id": got[0]["entity_id"], "phase": "begin",
                                 "previous_epoch_id": None, "reason": "first"}
    assert got[-1]["payload"] == {"epoch_id": got[0]["entity_id"], "phase": "end",
                                  "tickets": 1}
    with store.read() as tx:
        first = outbox.identity(tx)["epoch_id"]
    store.close()
    app = office_app(tmp_path)  # continuity kept: the same epoch
    store = app.extensions["jonot"].store
    with store.read() as tx:
        assert outbox.identity(tx)["epoch_id"] == first
    store.close()
    build_app(tmp_path).extensions["jonot"].store.close()  # a run without sync
    store = office_app(tmp_path).extensions["jonot"].store
    with store.read() as tx:
        assert outbox.identity(tx)["epoch_id"] != first
    store.close()


def test_a_restore_starts_a_new_epoch(tmp_path):
    data = tmp_path / "data"
    store = office_app(data).extensions["jonot"].store
    q, _ = setup(store)
    with store.read() as tx:
        first = outbox.identity(tx)["epoch_id"]
    copy = backup_database(database_path(data), tmp_path / "copy.sqlite3")
    with store.write() as tx:
        tickets.join(tx, q.id)
    store.close()
    restore_database(data, copy)
    store = office_app(data).extensions["jonot"].store
    with store.read() as tx:
        again = outbox.identity(tx)["epoch_id"]
    assert again and again != first
    got = entries(store)
    assert [e["seq"] for e in got] == [1, 2, 3, 4, 5]  # a full snapshot, from 1
    assert got[0]["payload"]["reason"] == "restore"
    assert got[0]["payload"]["previous_epoch_id"] == first
    store.close()


def test_join_cost_with_the_outbox_stays_small(tmp_path):
    """The outbox adds one snapshot read, one sequence read and one insert to a join,
    whatever the outbox already holds (its time is measured in bench/, not here)."""
    store = office_app(tmp_path).extensions["jonot"].store
    q, _ = setup(store)
    hook, counts = store.before_commit[0], []

    def counted(tx: Any) -> None:
        ran: list[str] = []
        tx.conn.set_trace_callback(ran.append)
        try:
            hook(tx)
        finally:
            tx.conn.set_trace_callback(None)
        counts.append(len([sql for sql in ran if not sql.lstrip().upper().startswith(
            ("SAVEPOINT", "RELEASE"))]))

    store.before_commit[0] = counted
    for _ in range(100):
        with store.write() as tx:
            tickets.join(tx, q.id)
    assert len(counts) == 100
    assert max(counts) <= 3, counts
    assert counts[0] == counts[-1]  # no statement more with 100 entries in the outbox
    assert len(entries(store)) == 5 + 100


def test_numbers_the_cloud_saw_are_never_reused(tmp_path, cloud):
    """An answer's max_numbers move the counters past them (e.g. after a restore of an
    older backup on a new disk, where nothing local remembers them)."""
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    q, _ = setup(rt.store)
    cloud.numbers[q.id] = 17
    SyncWorker(rt.store, rt.settings, CloudClient(cloud.url, TOKEN, 5.0)).push_once()
    with rt.store.write() as tx:
        assert tickets.join(tx, q.id).number == 18


# -- the worker against a real HTTP cloud ---------------------------------------------------

def test_the_worker_pushes_everything_and_health_says_online(tmp_path, cloud):
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    q, d = setup(rt.store)
    worker = run_worker(rt.store, rt.settings, cloud)
    try:
        for _ in range(30):
            with rt.store.write() as tx:
                t = tickets.join(tx, q.id)
        with rt.store.write() as tx:
            tickets.call_next(tx, d.id)
        assert cloud.wait_for(lambda: len(cloud.tickets()) == 30 and any(
            p["state"] == "CALLED" for p in cloud.tickets().values()))
        assert cloud.tickets() == office_tickets(rt.store)
        cloud.clock_offset_s = 3600
        time.sleep(0.8)
        health = app.test_client().get("/api/v1/health").get_json()["sync"]
        assert health["state"] == "online" and health["backlog"] == 0
        assert health["last_error"] is None and health["epoch_id"]
        assert 3590 < health["clock_skew_s"] < 3610
    finally:
        worker.stop()
    result = CliRunner().invoke(main, ["sync", "status", "--data-dir", str(tmp_path)],
                                env={"JONOT_CLOUD_URL": cloud.url, "JONOT_CLOUD_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert "online" in result.output and "Backlog:    0" in result.output
    assert t.id in cloud.tickets()


def test_lost_answers_and_duplicates_change_nothing(tmp_path, cloud):
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    q, d = setup(rt.store)
    cloud.faults.extend(["drop", 503, "drop", 500, "drop"])
    worker = SyncWorker(rt.store, rt.settings, CloudClient(cloud.url, TOKEN, 5.0),
                        rng=lambda: 0.0)
    outbox.install(rt.store)
    for _ in range(10):
        with rt.store.write() as tx:
            tickets.join(tx, q.id)
        for _ in range(2):  # each batch pushed, its answer lost, pushed again
            with contextlib.suppress(CloudError):
                worker.push_once()
    while True:
        try:
            if worker.push_once()["acked_seq"] == len(entries(rt.store)):
                break
        except CloudError:
            pass
    assert cloud.tickets() == office_tickets(rt.store)
    with rt.store.read() as tx:
        assert tx.one("SELECT acked_seq FROM sync_state")[0] == len(entries(rt.store))


def test_rotate_starts_a_new_epoch_and_moves_counters_past_the_cloud(tmp_path, cloud):
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    q, _ = setup(rt.store)
    worker = SyncWorker(rt.store, rt.settings, CloudClient(cloud.url, TOKEN, 5.0))
    with rt.store.read() as tx:
        first = outbox.identity(tx)["epoch_id"]
    cloud.next_answer = {"action": "rotate", "max_numbers": {q.id: 41},
                         "message": "restored database"}
    worker.push_once()
    with rt.store.read() as tx:
        assert outbox.identity(tx)["epoch_id"] != first
    with rt.store.write() as tx:
        assert tickets.join(tx, q.id).number == 42
    assert worker.push_once()["acked_seq"] == len(entries(rt.store))
    assert cloud.tickets() == office_tickets(rt.store)


def test_frozen_stops_pushing_and_says_why(tmp_path, cloud):
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    setup(rt.store)
    cloud.frozen = True
    worker = run_worker(rt.store, rt.settings, cloud)
    try:
        assert cloud.wait_for(lambda: cloud.pushes >= 1)
        time.sleep(1.0)
        assert cloud.pushes == 1
        sync = app.test_client().get("/api/v1/health").get_json()["sync"]
        assert sync["state"] == "frozen" and "share" in sync["last_error"]
    finally:
        worker.stop()
    cloud.frozen = False  # an admin re-enrolled the other installation; then a restart
    worker = run_worker(rt.store, rt.settings, cloud)
    try:
        assert cloud.wait_for(lambda: len(cloud.tickets()) == 0 and cloud.pushes >= 2)
        time.sleep(0.3)
        assert app.test_client().get("/api/v1/health").get_json()["sync"]["state"] == "online"
    finally:
        worker.stop()


def test_a_refusal_is_recorded_and_backed_off_not_spun(tmp_path, cloud):
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    setup(rt.store)
    cloud.faults.extend([400] * 50)
    worker = run_worker(rt.store, rt.settings, cloud)
    try:
        time.sleep(1.5)
    finally:
        worker.stop()
    assert 1 <= cloud.pushes <= 4  # 1 s → 2 s → … with jitter, never a loop
    sync = app.test_client().get("/api/v1/health").get_json()["sync"]
    assert sync["state"] == "offline" and "refused" in sync["last_error"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_shown_and_tried_again_only_after_minutes(tmp_path, cloud, status):
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    setup(rt.store)
    cloud.faults.extend([status] * 50)
    worker = run_worker(rt.store, rt.settings, cloud)
    try:
        assert cloud.wait_for(lambda: cloud.pushes >= 1)
        time.sleep(1.5)
        assert cloud.pushes == 1  # the next try is BACKOFF_MAX_S away
    finally:
        worker.stop()
    sync = app.test_client().get("/api/v1/health").get_json()["sync"]
    assert sync["state"] == "refused" and "refused" in sync["last_error"]
    assert sync["error_code"] == ("unauthorized" if status == 401 else "forbidden")
    page = text_of_system(app)
    assert "(wrong or revoked)" in page


def text_of_system(app: Any) -> str:
    from jonot_local.domain import users

    from .support import ADMIN
    from .test_pages_admin import sign_in

    with app.extensions["jonot"].store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
    client = sign_in(app.test_client(), ADMIN)
    return client.get("/admin/system").get_data(as_text=True)


def test_retry_after_is_honoured_and_backoff_has_full_jitter():
    backoff = Backoff(rng=lambda: 1.0)
    assert [backoff.next() for _ in range(12)][-3:] == [300.0, 300.0, 300.0]
    assert Backoff(rng=lambda: 0.5).next(retry_after=7) == 7
    waits = [Backoff().next() for _ in range(200)]
    assert min(waits) < 0.5 and max(waits) <= 1.0


def test_retry_after_from_the_cloud_delays_the_next_push(tmp_path, cloud):
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    setup(rt.store)
    cloud.faults.extend([503])
    worker = SyncWorker(rt.store, rt.settings, CloudClient(cloud.url, TOKEN, 5.0),
                        rng=lambda: 0.0)
    worker.start()
    try:
        assert cloud.wait_for(lambda: cloud.pushes >= 2, timeout=5)
    finally:
        worker.stop()
    assert cloud.push_times[1] - cloud.push_times[0] >= 0.95


def test_unreachable_cloud_is_offline_in_words(tmp_path):
    app = office_app(tmp_path, "http://127.0.0.1:9")
    rt = app.extensions["jonot"]
    worker = SyncWorker(rt.store, rt.settings)
    with pytest.raises(CloudError, match="cannot reach the cloud"):
        worker.push_once()
    sync = app.test_client().get("/api/v1/health").get_json()["sync"]
    assert sync["state"] == "offline" and "cannot reach" in sync["last_error"]


def test_office_clock_does_not_matter(tmp_path, cloud, monkeypatch):
    """Timestamps are data: an office clock a year ahead, then days behind, pushes the
    same final state (the cloud orders by seq)."""
    from datetime import timedelta

    import jonot_local.timeutil as timeutil

    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    q, d = setup(rt.store)
    real = timeutil.utcnow
    for shift in (timedelta(days=365), timedelta(days=-3), timedelta(0)):
        monkeypatch.setattr(timeutil, "utcnow", lambda s=shift: real() + s)
        with rt.store.write() as tx:
            t = tickets.join(tx, q.id)
    with rt.store.write() as tx:
        tickets.call(tx, t.id, d.id)
    worker = SyncWorker(rt.store, rt.settings, CloudClient(cloud.url, TOKEN, 5.0))
    worker.push_once()
    assert cloud.tickets() == office_tickets(rt.store)
    assert cloud.tickets()[t.id]["state"] == "CALLED"


# -- relayed actions --------------------------------------------------------------------------

def _join_action(q: Any, n: int) -> tuple[str, dict[str, Any]]:
    from jonot_local.ids import new_ticket_hash, new_ulid

    return f"cmd-{n}", {"queue_id": q.id, "ticket_id": new_ulid(),
                        "ticket_hash": new_ticket_hash()}


def test_remote_joins_apply_exactly_once_across_redeliveries_and_restarts(tmp_path, cloud):
    app = office_app(tmp_path, cloud.url)
    store = app.extensions["jonot"].store
    q, _ = setup(store)
    store.close()
    cloud.redeliver_all = True  # every poll brings every action again
    for n in range(1, 6):
        cloud.add_action("join", _join_action(q, n)[1], f"cmd-{n}")
        for _ in range(n):  # delivered n times, the office restarted between each
            app = office_app(tmp_path, cloud.url)
            rt = app.extensions["jonot"]
            worker = SyncWorker(rt.store, rt.settings, CloudClient(cloud.url, TOKEN, 5.0))
            worker.pull_once(wait=0)
            rt.store.close()
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    with rt.store.read() as tx:
        rows = tx.all("SELECT id, number, source FROM tickets ORDER BY number")
        assert [r["number"] for r in rows] == [1, 2, 3, 4, 5]
        assert {r["source"] for r in rows} == {"remote"}
        assert tx.one("SELECT last_applied_cmd_seq FROM sync_state")[0] == 5
    ids = {a["payload"]["ticket_id"] for a in cloud.actions}
    assert ids == {r["id"] for r in rows}
    SyncWorker(rt.store, rt.settings, CloudClient(cloud.url, TOKEN, 5.0)).push_once()
    results = cloud.commands()
    assert sorted(results) == [f"cmd-{n}" for n in range(1, 6)]
    assert {r["result"] for r in results.values()} == {"applied"}
    assert cloud.tickets() == office_tickets(rt.store)
    rt.store.close()


def test_the_same_action_twice_and_a_gap(tmp_path):
    from jonot_local.sync.apply import CommandGap

    store = office_app(tmp_path).extensions["jonot"].store
    q, _ = setup(store)
    _, payload = _join_action(q, 1)
    action = {"cmd_seq": 1, "command_id": "c1", "kind": "join", "payload": payload}
    first = apply_action(store, action)
    again = apply_action(store, action)
    assert first.result == "applied" and not first.duplicate
    assert again.duplicate and again.ticket_id == first.ticket_id
    with pytest.raises(CommandGap):
        apply_action(store, {**action, "cmd_seq": 3, "command_id": "c3"})
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM tickets")[0] == 1
        assert tx.one("SELECT COUNT(*) FROM outbox WHERE entity = 'command'")[0] == 1


def test_refusals_are_results(tmp_path):
    store = office_app(tmp_path).extensions["jonot"].store
    q, _ = setup(store)
    with store.write() as tx:
        queues.update_queue(tx, q.id, is_open=False)
    _, payload = _join_action(q, 1)
    closed = apply_action(store, {"cmd_seq": 1, "command_id": "c1", "kind": "join",
                                  "payload": payload})
    assert (closed.result, closed.reason) == ("rejected", "queue_closed")
    bad = apply_action(store, {"cmd_seq": 2, "command_id": "c2", "kind": "join",
                               "payload": {**payload, "ticket_hash": "short"}})
    assert (bad.result, bad.reason) == ("rejected", "invalid")
    gone = apply_action(store, {"cmd_seq": 3, "command_id": "c3", "kind": "cancel",
                                "payload": {"ticket_id": "01NOSUCHTICKET0000000000"}})
    assert (gone.result, gone.reason) == ("rejected", "not_found")
    with store.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM tickets")[0] == 0
        assert tx.one("SELECT last_applied_cmd_seq FROM sync_state")[0] == 3


def test_remote_cancel_loses_to_a_local_call(tmp_path, cloud):
    app = office_app(tmp_path, cloud.url)
    rt = app.extensions["jonot"]
    q, d = setup(rt.store)
    with rt.store.write() as tx:
        waiting = tickets.join(tx, q.id)
        called = tickets.join(tx, q.id)
    with rt.store.write() as tx:
        tickets.call(tx, called.id, d.id)  # the desk wins the race
    cloud.add_action("cancel", {"ticket_id": called.id}, "cancel-called")
    cloud.add_action("cancel", {"ticket_id": waiting.id}, "cancel-waiting")
    cloud.add_action("cancel", {"ticket_id": waiting.id}, "cancel-waiting-again")
    worker = run_worker(rt.store, rt.settings, cloud)
    try:
        assert cloud.wait_for(lambda: len(cloud.commands()) == 3)
        assert cloud.wait_for(lambda: cloud.tickets().get(waiting.id, {}).get("state")
                              == "CANCELED")
    finally:
        worker.stop()
    results = cloud.commands()
    assert (results["cancel-called"]["result"], results["cancel-called"]["reason"]) == (
        "rejected", "already_called")
    assert results["cancel-waiting"]["result"] == "applied"
    assert results["cancel-waiting-again"]["reason"] == "already_canceled"
    with rt.store.read() as tx:
        assert tickets.get(tx, called.id).state == "CALLED"
        assert tickets.get(tx, waiting.id).canceled_by == "customer"
    assert cloud.tickets() == office_tickets(rt.store)


def test_prune_keeps_what_is_not_acknowledged(tmp_path):
    store = office_app(tmp_path).extensions["jonot"].store
    q, _ = setup(store)
    for _ in range(4):
        with store.write() as tx:
            tickets.join(tx, q.id)
    with store.write() as tx:
        tx.execute("UPDATE sync_state SET acked_seq = 7")
        assert outbox.prune(tx, 3600, "2999-01-01T00:00:00Z") == 7
        assert outbox.prune(tx, 3600, "2999-01-01T00:00:00Z") == 0
    assert [e["seq"] for e in entries(store)] == [8, 9]


def test_health_sync_is_off_without_a_cloud(tmp_path):
    app = build_app(tmp_path)
    sync = app.test_client().get("/api/v1/health").get_json()["sync"]
    assert sync["state"] == "off"


def test_the_fake_cloud_refuses_a_wrong_token(cloud):
    r = requests.post(cloud.url + "/api/v1/sync/push", json={}, timeout=5)
    assert r.status_code == 401
    with pytest.raises(CloudError, match="token"):
        CloudClient(cloud.url, "wrong").request("POST", "/api/v1/sync/push", {})
