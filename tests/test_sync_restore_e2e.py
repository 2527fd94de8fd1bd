"""Restores, clones and refused tokens with real processes: ``jonot-local serve``, the
``backup``/``restore`` CLI and ``jonot-local cloud serve`` (SQLite and PostgreSQL).

- a restored older backup starts a new epoch; the cloud's view matches the office
  afterwards (tickets issued after the backup are retired, in words, never left
  waiting) and no number the cloud showed is handed out again, even when the office
  joins before it reaches the cloud;
- a second install pushing under the same token is frozen before any of its data is
  applied, and both offices say so;
- a disk clone (same install, same epoch) is frozen instead of rotating for ever;
- a wrong or revoked token is refused with a stable code, health says so and the
  office does not hammer the cloud.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jonot_local.sync.cloud.store import open_cloud_store

from .cloud_support import CloudProcess, free_port
from .support import STAFF, LiveServer, seed_accounts, setup_office, token
from .test_cloud import pg_url  # noqa: F401 - the PostgreSQL fixture
from .test_sync_e2e import (
    CLOUD_ENV,
    RoundRobin,
    add_office,
    cloud_view,
    hash_of,
    office_env,
    wait_for,
)

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jonot_local", *args], capture_output=True,
                          text=True, timeout=60, check=False)


class Office:
    """One office process with its accounts and one queue and desk."""

    def __init__(self, data: Path, env: dict[str, str], setup: bool = True) -> None:
        self.data, self.env = data, env
        if setup:
            seed_accounts(data)
        self.server = LiveServer(data, env=env).start()
        self.staff = token(self.server.url, STAFF)
        if setup:
            office = setup_office(self.server.url, token(self.server.url), queues=1, desks=1)
            self.queue_id, self.desk_id = office["queues"][0]["id"], office["desks"][0]["id"]
        else:
            db = sqlite3.connect(data / "jonot.sqlite3")
            self.queue_id = db.execute("SELECT id FROM queues").fetchone()[0]
            self.desk_id = db.execute("SELECT id FROM desks").fetchone()[0]
            db.close()

    @property
    def url(self) -> str:
        return self.server.url

    def join(self) -> dict[str, Any]:
        r = requests.post(f"{self.url}/api/v1/queues/{self.queue_id}/tickets", json={},
                          headers=self.staff, timeout=10)
        r.raise_for_status()
        return r.json()

    def call_next(self) -> dict[str, Any]:
        r = requests.post(f"{self.url}/api/v1/desks/{self.desk_id}/call-next",
                          headers=self.staff, timeout=10)
        r.raise_for_status()
        return r.json()

    def health(self) -> dict[str, Any]:
        return requests.get(self.url + "/api/v1/health", timeout=5).json()["sync"]

    def stop(self) -> None:
        self.server.stop()


class Setting:
    def __init__(self, tmp: Path, database_url: str) -> None:
        self.tmp, self.database_url = tmp, database_url
        self.cloud = CloudProcess(tmp / "cloud", database_url, env=CLOUD_ENV,
                                  port=free_port()).start()
        self.creds = add_office(tmp / "cloud", database_url)
        self.store = open_cloud_store(tmp / "cloud", database_url)
        self.offices: list[Office] = []

    def office(self, name: str, setup: bool = True, url: str | None = None) -> Office:
        office = Office(self.tmp / name, office_env(url or self.cloud.url, self.creds["token"]),
                        setup=setup)
        self.offices.append(office)
        return office

    def cloud_row(self) -> dict[str, Any]:
        with self.store.read() as tx:
            return tx.one("SELECT status, alert, epoch_id FROM office WHERE office_id = ?",
                          (self.creds["office_id"],))

    def cloud_tickets(self) -> dict[str, dict[str, Any]]:
        with self.store.read() as tx:
            return {r["ticket_id"]: r for r in tx.all(
                "SELECT ticket_id, number, state, note FROM ticket WHERE office_id = ?",
                (self.creds["office_id"],))}

    def epochs(self) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return tx.all("SELECT epoch_id, generation, status FROM office_epoch "
                          "WHERE office_id = ? ORDER BY generation", (self.creds["office_id"],))

    def restart_cloud(self) -> None:
        self.cloud = CloudProcess(self.tmp / "cloud", self.database_url, env=CLOUD_ENV,
                                  port=self.cloud.port).start()

    def stop(self) -> None:
        for office in self.offices:
            office.stop()
        self.store.close()
        self.cloud.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def setting(request, tmp_path) -> Iterator[Setting]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    s = Setting(tmp_path, url)
    try:
        yield s
    finally:
        s.stop()


def on_cloud(setting: Setting, ticket: dict[str, Any], state: str) -> Any:
    return wait_for(f"{ticket['code']} {state} on the cloud", lambda: (
        (v := cloud_view(setting.cloud, hash_of(ticket))) and v["state"] == state and v))


def admin_system(base: str) -> str:
    """The admin's System page of a live office, signed in as the admin."""
    from .support import ADMIN
    from .test_pages_admin import csrf_of

    web = requests.Session()
    form = web.get(base + "/signin", timeout=5).text
    r = web.post(base + "/signin", data={"username": ADMIN[0], "password": ADMIN[1],
                                         "csrf_token": csrf_of(form)},
                 allow_redirects=False, timeout=5)
    assert r.status_code == 302, r.text
    page = web.get(base + "/admin/system", timeout=5)
    assert page.status_code == 200
    return page.text


def local_epoch(data: Path) -> str:
    db = sqlite3.connect(data / "jonot.sqlite3")
    try:
        return db.execute("SELECT epoch_id FROM sync_identity").fetchone()[0]
    finally:
        db.close()


# -- a restored older backup -------------------------------------------------------------------

def _history_after_a_backup(setting: Setting, office: Office, backup: Path
                            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two tickets before the backup, then two more and a call after it, all on the cloud."""
    before = [office.join(), office.join()]
    for t in before:
        on_cloud(setting, t, "WAITING")
    done = cli("backup", "--data-dir", str(office.data), str(backup))
    assert done.returncode == 0, done.stderr
    after = [office.join(), office.join()]
    assert office.call_next()["id"] == before[0]["id"]
    for t in after:
        on_cloud(setting, t, "WAITING")
    on_cloud(setting, before[0], "CALLED")
    return before, after


def _check_converged(setting: Setting, office: Office, before: list[dict[str, Any]],
                     after: list[dict[str, Any]], old_epoch: str) -> None:
    # The office's truth on the cloud: the restored tickets as the backup has them, the
    # ones issued after the backup retired with words — none left waiting for ever.
    on_cloud(setting, before[0], "WAITING")
    for t in after:
        view = on_cloud(setting, t, "RETIRED")
        assert view["position"] is None and "backup" in view["message"]
        page = requests.get(f"{setting.cloud.url}/t/{hash_of(t)}", timeout=5).text
        assert "backup" in page and t["code"] in page
    assert local_epoch(office.data) != old_epoch
    epochs = setting.epochs()
    assert [e["epoch_id"] for e in epochs][-1] == local_epoch(office.data)
    assert setting.cloud_row()["status"] == "active"
    assert office.health()["state"] == "online"
    # Every number the cloud holds for this office is unique.
    numbers = [r["number"] for r in setting.cloud_tickets().values() if r["number"]]
    assert len(numbers) == len(set(numbers)), sorted(numbers)


def test_restore_in_place_new_epoch_retires_what_the_backup_lacks(setting):
    office = setting.office("office")
    backup = setting.tmp / "backup.sqlite3"
    before, after = _history_after_a_backup(setting, office, backup)
    old_epoch = local_epoch(office.data)
    office.stop()
    done = cli("restore", "--data-dir", str(office.data), str(backup))
    assert done.returncode == 0, done.stderr
    office.server = LiveServer(office.data, env=office.env).start()
    office.staff = token(office.url, STAFF)
    _check_converged(setting, office, before, after, old_epoch)
    fresh = office.join()
    assert fresh["number"] > max(t["number"] for t in after)
    on_cloud(setting, fresh, "WAITING")


def test_restore_on_a_new_machine_while_offline_reuses_no_number(setting):
    """The old disk is gone (the backup goes into an empty data dir) and the cloud is out of
    reach: a join before the first push must still not reuse a number the cloud showed."""
    office = setting.office("old")
    backup = setting.tmp / "backup.sqlite3"
    before, after = _history_after_a_backup(setting, office, backup)
    old_epoch = local_epoch(office.data)
    office.stop()
    setting.offices.remove(office)
    setting.cloud.stop()
    new_dir = setting.tmp / "new"
    done = cli("restore", "--data-dir", str(new_dir), str(backup))
    assert done.returncode == 0, done.stderr
    restored = setting.office("new", setup=False)
    offline = restored.join()
    shown = {t["number"] for t in before + after}
    assert offline["number"] not in shown and offline["number"] > max(shown)
    setting.restart_cloud()
    _check_converged(setting, restored, before, after, old_epoch)
    view = on_cloud(setting, offline, "WAITING")
    assert view["code"] == offline["code"]


# -- clones ----------------------------------------------------------------------------------

def test_second_install_with_the_same_token_is_frozen_before_anything_is_applied(setting):
    first = setting.office("first")
    mine = first.join()
    on_cloud(setting, mine, "WAITING")
    before = setting.cloud_tickets()
    second = setting.office("second")  # its own install, the same token
    theirs = second.join()
    for office in (second, first):
        sync = wait_for("the freeze shown by the office", lambda o=office: (
            (s := o.health())["state"] == "frozen" and s), timeout=10)
        assert "re-enrol" in sync["last_error"]
    row = setting.cloud_row()
    assert row["status"] == "frozen" and "re-enrol" in row["alert"]
    # Nothing of the second install reached the cloud: not its tickets, not its queue.
    assert cloud_view(setting.cloud, hash_of(theirs)) is None
    assert setting.cloud_tickets().keys() == before.keys()
    with setting.store.read() as tx:
        queues = {r["entity_id"] for r in tx.all(
            "SELECT entity_id FROM entity WHERE kind = 'queue' AND office_id = ?",
            (setting.creds["office_id"],))}
    assert queues == {first.queue_id}
    for office in (first, second):
        assert "another computer uses its token" in admin_system(office.url)


def test_disk_clone_same_install_and_epoch_is_frozen_not_rotated_for_ever(setting):
    original = setting.office("original")
    on_cloud(setting, original.join(), "WAITING")
    original.stop()
    shutil.copytree(setting.tmp / "original", setting.tmp / "copy",
                    ignore=shutil.ignore_patterns("server.lock"))
    original.server = LiveServer(original.data, env=original.env).start()
    original.staff = token(original.url, STAFF)
    copy = setting.office("copy", setup=False)
    for _ in range(3):  # both copies go on issuing tickets: their histories differ
        original.join()
        copy.join()
        time.sleep(0.3)
    for office in (original, copy):
        wait_for("the clone frozen", lambda o=office: o.health()["state"] == "frozen",
                 timeout=15)
    row = setting.cloud_row()
    assert row["status"] == "frozen" and "copied" in row["alert"]
    assert len(setting.epochs()) <= 3  # no endless rotation
    time.sleep(2)
    assert len(setting.epochs()) <= 3


# -- refused tokens ------------------------------------------------------------------------------

def test_wrong_and_revoked_tokens_are_refused_without_a_busy_loop(setting):
    r = requests.post(setting.cloud.url + "/api/v1/sync/push", timeout=5,
                      headers={"Authorization": "Bearer jo_wrong"},
                      json={"install_id": "i", "epoch_id": "e", "head_seq": 0})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    proxy = RoundRobin([setting.cloud.port]).start()
    try:
        office = setting.office("office", url=proxy.url)
        on_cloud(setting, office.join(), "WAITING")
        args = ["cloud", "office", "revoke", setting.creds["office_id"], "--data-dir",
                str(setting.tmp / "cloud")]
        if setting.database_url:
            args += ["--database-url", setting.database_url]
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        r = requests.post(setting.cloud.url + "/api/v1/sync/push", timeout=5,
                          headers={"Authorization": f"Bearer {setting.creds['token']}"},
                          json={"install_id": "i", "epoch_id": "e", "head_seq": 0})
        assert r.status_code == 403 and r.json()["code"] == "revoked"
        office.join()
        sync = wait_for("health to show the refusal", lambda: (
            (s := office.health())["state"] == "refused" and s), timeout=10)
        assert "revoked" in sync["last_error"]
        pushes = sum(proxy.pushes)
        time.sleep(4)  # a busy loop would push dozens of times meanwhile
        assert sum(proxy.pushes) - pushes <= 1, proxy.pushes
        assert office.health()["state"] == "refused"
        assert "(wrong or revoked)" in admin_system(office.url)
    finally:
        proxy.stop()
