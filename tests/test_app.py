"""The factory wires per-app state; one view of a display's state; dead code stays out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jonot_local import db
from jonot_local.api.ratelimit import HashLookupLimits
from jonot_local.domain import queues, tickets

from .support import build_app

pytestmark = pytest.mark.shared_world()


def test_hash_limits_are_built_by_create_app_from_the_settings(tmp_path):
    first = build_app(tmp_path / "one", hash_lookup_per_min=7, hash_miss_per_min=3)
    second = build_app(tmp_path / "two")
    try:
        limits = first.extensions["jonot"].hash_limits
        assert isinstance(limits, HashLookupLimits)
        assert (limits.every.capacity, limits.misses.capacity) == (7, 3)
        assert second.extensions["jonot"].hash_limits is not limits  # per app, not global
        client = first.test_client()
        for _ in range(3):
            assert client.get("/api/v1/tickets/by-hash/unknownhash00000000000").status_code \
                == 404
        assert client.get("/api/v1/tickets/by-hash/unknownhash00000000000").status_code == 429
        assert second.test_client().get(
            "/api/v1/tickets/by-hash/unknownhash00000000000").status_code == 404
    finally:
        first.extensions["jonot"].store.close()
        second.extensions["jonot"].store.close()


def test_dead_code_is_gone(app):
    assert not hasattr(db.Tx, "after_commit") and not hasattr(db.Store, "sqlite_utils_db")
    assert "JSON_SORT_KEYS" not in app.config  # no effect since Flask 2.3


def _stream_state(client: Any, query: str) -> dict[str, Any]:
    raw = client.get(f"/api/v1/events?poll=1&{query}").get_data()
    block = raw.split(b"\n\n")[0].decode()
    assert "event: state" in block
    data = "\n".join(line[6:] for line in block.splitlines() if line.startswith("data: "))
    return json.loads(data)


@pytest.mark.parametrize("scoped", [True, False], ids=["own-queues", "every-queue"])
def test_a_display_state_is_the_same_on_the_endpoint_and_the_stream(world, client, office,
                                                                    admin_headers, scoped):
    a, lab = office["a"], office["lab"]
    body = {"name": f"Hall {a.prefix}", **({"queue_ids": [a.id]} if scoped else {})}
    display = client.post("/api/v1/displays", json=body, headers=admin_headers).json
    with world.store.write() as tx:
        tickets.join(tx, a.id, source="kiosk")
        tickets.join(tx, lab.id, source="kiosk")
        tickets.call_next(tx, office["room1"].id, user_id=world.staff_id)
    state = client.get(f"/api/v1/displays/{display['id']}/state").json
    assert state == _stream_state(client, f"display={display['id']}")
    shown = [q["id"] for q in state["queues"]]
    if scoped:
        assert shown == [a.id] and state["recent_calls"][0]["queue_id"] == a.id
    else:
        with world.store.read() as tx:
            assert shown == [q.id for q in queues.list_queues(tx)]
