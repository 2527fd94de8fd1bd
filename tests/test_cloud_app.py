"""The cloud app in-process: error mapping and wake-ups (no server, no PostgreSQL)."""

from __future__ import annotations

import threading
import time

from jonot_local.sync.cloud import create_cloud_app, receiver
from jonot_local.sync.cloud.offices import add_office
from jonot_local.sync.cloud.store import Changes, TransientError


def test_a_transient_database_error_is_a_503_problem_and_nothing_applied(tmp_path,
                                                                         monkeypatch):
    app = create_cloud_app({"data_dir": tmp_path})
    rt = app.extensions["jonot_cloud"]
    _, token = add_office(rt.store, "Busy")

    def busy(*args, **kwargs):
        raise TransientError("database is locked")

    monkeypatch.setattr(receiver, "apply_push", busy)
    resp = app.test_client().post(
        "/api/v1/sync/push", headers={"Authorization": f"Bearer {token}"},
        json={"install_id": "i", "epoch_id": "e", "head_seq": 0, "entries": []})
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    assert resp.get_json()["code"] == "unavailable"
    rt.close()


def test_waiters_wake_on_their_own_office_only():
    changes = Changes()
    woke: list[float] = []
    seen = changes.seen("a")

    def waiter() -> None:
        t0 = time.monotonic()
        changes.wait(seen, 2.0, "a")
        woke.append(time.monotonic() - t0)

    t = threading.Thread(target=waiter)
    t.start()
    changes.bump({"b"})  # another office: not a reason to wake
    time.sleep(0.3)
    assert woke == []
    changes.bump({"a"})
    t.join(3)
    assert woke and woke[0] < 1.0
    seen = changes.seen("a")
    changes.bump(None)  # after a lost connection, everyone looks again
    assert changes.seen("a") != seen
