"""The office server as a real process syncing with a fake cloud over loopback HTTP,
killed with SIGKILL mid-push: the cloud ends with exactly the office's tickets, and
every relayed action applied once."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from jonot_local.sync import outbox

from jonot_local.db import open_store
from jonot_local.ids import new_ticket_hash, new_ulid

from .support import STAFF, LiveServer, seed_accounts, setup_office, token
from .sync_fake_cloud import TOKEN, FakeCloud


def office_state(data_dir: Path) -> tuple[dict[str, Any], int, str | None, int]:
    """(tickets as the cloud should hold them, outbox head, epoch, applied commands)."""
    store = open_store(data_dir, read_only=True)
    try:
        with store.read() as tx:
            ids = [r["id"] for r in tx.all("SELECT id FROM tickets")]
            held = {i: outbox.ticket_snapshot(tx, i)[1] for i in ids}
            head = tx.one("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
            epoch = outbox.identity(tx)["epoch_id"]
            applied = tx.one("SELECT COUNT(*) FROM applied_commands")[0]
        return held, head["seq"] if head else 0, epoch, applied
    finally:
        store.close()


@pytest.mark.slow
def test_kill_9_mid_push_loses_and_doubles_nothing(tmp_path):
    rng = random.Random(8)
    cloud = FakeCloud().start()
    cloud.answer_delay_s = 0.05  # answers arrive after the commit: kills land in between
    data = tmp_path / "office"
    seed_accounts(data)
    env = {"JONOT_CLOUD_URL": cloud.url, "JONOT_CLOUD_TOKEN": TOKEN,
           "JONOT_SYNC_HEARTBEAT_S": "0.5", "JONOT_SYNC_DEBOUNCE_S": "0",
           "JONOT_BACKUP_INTERVAL_S": "0", "JONOT_HASH_LOOKUP_FLOOR_MS": "0"}
    server = LiveServer(data, env=env).start()
    try:
        office = setup_office(server.url, token(server.url), queues=2, desks=1)
        queue_ids = [q["id"] for q in office["queues"]]
        desk_id = office["desks"][0]["id"]
        remote = 0
        for round_ in range(4):
            staff = token(server.url, STAFF)
            for i in range(15):
                requests.post(f"{server.url}/api/v1/queues/{rng.choice(queue_ids)}/tickets",
                              json={}, headers=staff, timeout=10).raise_for_status()
                if i % 4 == 3:
                    requests.post(f"{server.url}/api/v1/desks/{desk_id}/call-next",
                                  headers=staff, timeout=10)
            for _ in range(2):
                remote += 1
                cloud.add_action("join", {"queue_id": queue_ids[0], "ticket_id": new_ulid(),
                                          "ticket_hash": new_ticket_hash()}, f"join-{remote}")
            time.sleep(rng.uniform(0.0, 0.3))
            server.kill9()
            server = LiveServer(data, env=env).start()
        # Quiet now: the restarted office must catch up fully.
        def caught_up() -> bool:
            held, head, epoch, applied = office_state(data)
            return applied == remote and cloud.acked(epoch) == head and cloud.tickets() == held

        deadline = time.monotonic() + 30  # generous: the CI machine may be busy
        while not caught_up() and time.monotonic() < deadline:
            time.sleep(0.2)
        server.stop()
        held, head, epoch, applied = office_state(data)
        assert cloud.tickets() == held, (len(cloud.tickets()), len(held), head, applied)
        assert len(held) == 4 * 15 + remote
        assert applied == remote
        remote_tickets = [t for t in held.values() if t["source"] == "remote"]
        assert len(remote_tickets) == remote
        assert {a["payload"]["ticket_id"] for a in cloud.actions} == {
            t["id"] for t in remote_tickets}
        assert sorted(cloud.commands()) == sorted(a["command_id"] for a in cloud.actions)
        numbers = [(t["origin_queue_id"], t["number"]) for t in held.values()]
        assert len(set(numbers)) == len(numbers)
    finally:
        server.stop()
        cloud.stop()


@pytest.mark.slow
def test_serve_without_cloud_settings_starts_no_worker(tmp_path):
    server = LiveServer(tmp_path / "office", env={"JONOT_BACKUP_INTERVAL_S": "0"}).start()
    try:
        sync = requests.get(server.url + "/api/v1/health", timeout=5).json()["sync"]
        assert sync["state"] == "off"
    finally:
        server.stop()
