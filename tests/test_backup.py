"""Online backup, restore, retention of automatic backups and the data-dir lock."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jonot_local.backup import (
    AUTO_PREFIX,
    BackupError,
    BackupService,
    DataDirLock,
    ServerRunning,
    automatic_backups,
    backup_database,
    backups_dir,
    check_database,
    database_path,
    new_backup_path,
    prune_automatic_backups,
    restore_database,
)
from jonot_local.db import open_store
from jonot_local.domain import queues, tickets

from .support import ticket_rows


def _office(data_dir: Path, joins: int) -> Any:
    store = open_store(data_dir, pool_size=2)
    with store.write() as tx:
        q = queues.create_queue(tx, name="General", prefix="A")
    for _ in range(joins):
        with store.write() as tx:
            tickets.join(tx, q.id, source="kiosk")
    return store, q


@pytest.fixture
def office_dir(tmp_path: Path) -> Any:
    data_dir = tmp_path / "data"
    store, q = _office(data_dir, 5)
    yield data_dir, store, q
    store.close()


def test_backup_copies_a_live_database_into_one_checked_file(office_dir, tmp_path):
    data_dir, store, _ = office_dir
    dest = backup_database(database_path(data_dir), tmp_path / "copy.sqlite3")
    assert ticket_rows(dest) == ticket_rows(database_path(data_dir))
    assert [t[1] for t in ticket_rows(dest)] == [1, 2, 3, 4, 5]
    conn = sqlite3.connect(str(dest))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert check_database(conn)[0] == "0001_initial"
    conn.close()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["copy.sqlite3", "data"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600


def test_backup_refuses_to_overwrite_and_needs_a_database(office_dir, tmp_path):
    data_dir, _, _ = office_dir
    dest = tmp_path / "copy.sqlite3"
    dest.write_text("keep me")
    with pytest.raises(BackupError, match="already exists"):
        backup_database(database_path(data_dir), dest)
    assert dest.read_text() == "keep me"
    with pytest.raises(BackupError, match="no database"):
        backup_database(tmp_path / "empty" / "jonot.sqlite3", tmp_path / "x.sqlite3")


def test_new_backup_path_is_unique_within_a_second(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = new_backup_path(tmp_path, now=now)
    assert first.name == "jonot-20260102-030405.sqlite3"
    first.write_text("")
    second = new_backup_path(tmp_path, now=now)
    assert second.name == "jonot-20260102-030405-1.sqlite3"


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("hello, not a database\n" * 100), "not an SQLite database"),
    (lambda p: p.write_bytes(b""), "not a Jonot Local database"),
    (lambda p: sqlite3.connect(str(p)).execute("CREATE TABLE x (a)"),
     "not a Jonot Local database"),
])
def test_check_database_refuses_foreign_files(tmp_path, make, message):
    path = tmp_path / "file.sqlite3"
    make(path)
    conn = sqlite3.connect(str(path))
    with pytest.raises(BackupError, match=message):
        check_database(conn)
    conn.close()


def test_check_database_refuses_a_newer_schema(office_dir):
    data_dir, store, _ = office_dir
    with store.write() as tx:
        tx.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                   "VALUES ('jonot_local', '9999_from_the_future', 'now')")
    conn = sqlite3.connect(str(database_path(data_dir)))
    with pytest.raises(BackupError, match="newer version.*9999_from_the_future"):
        check_database(conn)
    conn.close()


def test_restore_replaces_the_database_and_keeps_the_old_one(office_dir, tmp_path):
    data_dir, store, q = office_dir
    saved = ticket_rows(database_path(data_dir))
    copy = backup_database(database_path(data_dir), tmp_path / "copy.sqlite3")
    for _ in range(3):  # history after the backup, lost by the restore
        with store.write() as tx:
            tickets.join(tx, q.id, source="kiosk")
    store.close()
    before = ticket_rows(database_path(data_dir))
    assert len(before) == 8

    result = restore_database(data_dir, copy)

    assert ticket_rows(database_path(data_dir)) == saved
    assert result.previous is not None and result.previous.parent == backups_dir(data_dir)
    assert result.previous.name.startswith("pre-restore-")
    assert ticket_rows(result.previous) == before  # nothing lost: the old one is kept whole
    conn = sqlite3.connect(str(database_path(data_dir)))
    row = conn.execute("SELECT value FROM settings WHERE key = 'restored_at'").fetchone()
    conn.close()
    assert row is not None and row[0] == result.restored_at
    assert not list(data_dir.glob(".restore-*"))
    reopened = open_store(data_dir)  # the server can start on it
    with reopened.write() as tx:
        # A006-A008 were issued after the backup: gone with the restore, but their
        # numbers were shown or printed, so they are never handed out again.
        assert tickets.join(tx, q.id, source="kiosk").number == 9
    reopened.close()


def test_restore_carries_a_wal_file_that_lies_beside_the_backup(office_dir, tmp_path):
    data_dir, store, _ = office_dir
    expected = ticket_rows(database_path(data_dir))
    # Copy the live file and its -wal as someone might by hand (WAL not yet checkpointed).
    src = tmp_path / "hand" / "jonot.sqlite3"
    src.parent.mkdir()
    for suffix in ("", "-wal"):
        Path(str(src) + suffix).write_bytes(
            Path(str(database_path(data_dir)) + suffix).read_bytes())
    assert Path(str(src) + "-wal").stat().st_size > 0
    store.close()
    restore_database(tmp_path / "other", src)
    assert ticket_rows(database_path(tmp_path / "other")) == expected


def test_restore_refuses_a_foreign_file_and_changes_nothing(office_dir, tmp_path):
    data_dir, store, _ = office_dir
    store.close()
    junk = tmp_path / "junk.sqlite3"
    junk.write_text("not a database at all\n" * 200)
    before = database_path(data_dir).read_bytes()
    with pytest.raises(BackupError, match="cannot restore .*junk.sqlite3: not an SQLite"):
        restore_database(data_dir, junk)
    assert database_path(data_dir).read_bytes() == before
    assert not backups_dir(data_dir).exists()
    assert not list(data_dir.glob(".restore-*"))
    with pytest.raises(BackupError, match="no such file"):
        restore_database(data_dir, tmp_path / "missing.sqlite3")


def test_restore_refuses_while_the_lock_is_held(office_dir, tmp_path):
    data_dir, store, _ = office_dir
    copy = backup_database(database_path(data_dir), tmp_path / "copy.sqlite3")
    with DataDirLock(data_dir), pytest.raises(ServerRunning, match="is running"):
        restore_database(data_dir, copy)
    assert not backups_dir(data_dir).exists()  # nothing was moved aside
    store.close()
    restore_database(data_dir, copy)  # released: now it works


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    first = DataDirLock(tmp_path)
    first.acquire()
    with pytest.raises(ServerRunning, match=f"pid {os.getpid()}"):
        DataDirLock(tmp_path).acquire()
    first.release()
    with DataDirLock(tmp_path):
        pass


def _touch(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("x")
    return path


def test_prune_keeps_the_newest_automatic_backups_only(tmp_path):
    folder = backups_dir(tmp_path)
    names = ["jonot-auto-20260101-000000.sqlite3", "jonot-auto-20260101-000000-1.sqlite3",
             "jonot-auto-20260101-000000-2.sqlite3", "jonot-auto-20260102-000000.sqlite3"]
    for name in names:
        _touch(folder, name)
    others = [_touch(folder, n) for n in ("jonot-20250101-000000.sqlite3",
                                          "pre-restore-20250101-000000.sqlite3",
                                          "jonot-auto-notes.txt")]
    deleted = prune_automatic_backups(tmp_path, 2)
    assert [p.name for p in deleted] == names[:2]
    assert [p.name for p in automatic_backups(tmp_path)] == names[2:]
    assert all(p.exists() for p in others)
    prune_automatic_backups(tmp_path, 0)  # at least one is always kept
    assert [p.name for p in automatic_backups(tmp_path)] == names[3:]


def test_backup_service_run_once_rotates(office_dir):
    data_dir, _, _ = office_dir
    manual = _touch(backups_dir(data_dir), "jonot-20200101-000000.sqlite3")
    service = BackupService(data_dir, interval=3600, keep=2)
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    made = [service.run_once(start + timedelta(minutes=i)) for i in range(4)]
    assert automatic_backups(data_dir) == made[2:]
    assert all(p.name.startswith(AUTO_PREFIX) for p in made)
    assert manual.exists()
    assert ticket_rows(made[-1]) == ticket_rows(database_path(data_dir))


def test_backup_service_thread_backs_up_on_its_interval(office_dir):
    data_dir, _, _ = office_dir
    service = BackupService(data_dir, interval=0.02, keep=2)
    service.start()
    try:
        deadline = time.monotonic() + 30
        while service.made < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        service.stop()
    assert service.made >= 4
    assert len(automatic_backups(data_dir)) == 2


def _location(data_dir: Path) -> tuple[str, str]:
    return _location_of_file(database_path(data_dir))


def test_restore_refuses_another_locations_backup_unless_told(office_dir, tmp_path):
    data_dir, store, _ = office_dir
    store.close()
    other_store, _ = _office(tmp_path / "other", 2)
    other_store.close()
    copy = backup_database(database_path(tmp_path / "other"), tmp_path / "other.sqlite3")
    ours, theirs = _location(data_dir), _location(tmp_path / "other")
    before = database_path(data_dir).read_bytes()

    with pytest.raises(BackupError) as refused:
        restore_database(data_dir, copy)
    message = str(refused.value)
    assert "\n" not in message and ours[0] in message and theirs[0] in message
    assert "--other-location" in message and "nothing was changed" in message
    assert database_path(data_dir).read_bytes() == before
    assert not backups_dir(data_dir).exists() and not list(data_dir.glob(".restore-*"))

    result = restore_database(data_dir, copy, other_location=True)
    assert _location(data_dir) == theirs
    assert result.previous is not None and _location_of_file(result.previous) == ours


def _location_of_file(path: Path) -> tuple[str, str]:
    conn = sqlite3.connect(str(path))
    try:
        return tuple(conn.execute("SELECT id, name FROM location").fetchone())
    finally:
        conn.close()


def test_restore_onto_a_fresh_install_takes_the_backups_location(office_dir, tmp_path):
    # A replacement PC: its server started once (a location, nothing else), then restore.
    data_dir, store, _ = office_dir
    store.close()
    copy = backup_database(database_path(data_dir), tmp_path / "copy.sqlite3")
    fresh = tmp_path / "new-pc"
    open_store(fresh).close()
    assert _location(fresh) != _location(data_dir)
    restore_database(fresh, copy)
    assert _location(fresh) == _location(data_dir)


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_backup_to_an_unwritable_place_is_a_backup_error(office_dir, tmp_path, where):
    data_dir, _, _ = office_dir
    (tmp_path / "a-file").write_text("x\n")
    dest = (tmp_path / "a-file" / "copy.sqlite3") if where == "under-a-file" \
        else Path("/proc/jonot-copy.sqlite3")
    reason = "not a folder .*a-file" if where == "under-a-file" else ".*/proc/"
    with pytest.raises(BackupError, match=f"cannot write the backup .*: {reason}"):
        backup_database(database_path(data_dir), dest)


def test_restore_where_nothing_remembers_later_numbers_moves_the_counters_ahead(
        office_dir, tmp_path):
    # The old disk is gone: the numbers issued after the backup are unknown here, so the
    # counter jumps ahead (a day's busiest count, at least 100, per day since the backup).
    data_dir, store, q = office_dir
    copy = backup_database(database_path(data_dir), tmp_path / "copy.sqlite3")
    store.close()
    result = restore_database(tmp_path / "new-pc", copy)
    assert result.numbers_advanced == {q.id: (5, 105)}
    reopened = open_store(tmp_path / "new-pc")
    with reopened.write() as tx:
        assert tickets.join(tx, q.id, source="kiosk").number == 106
    reopened.close()
    # ... and a backup days old moves them further.
    conn = sqlite3.connect(copy)
    old = (datetime.now(UTC) - timedelta(days=2, hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn.execute("UPDATE tickets SET created_at = ?", (old,))
    conn.commit()
    conn.close()
    result = restore_database(tmp_path / "third-pc", copy)
    assert result.numbers_advanced == {q.id: (5, 5 + 3 * 100)}


def test_restore_over_its_own_database_carries_exact_numbers_without_a_jump(
        office_dir, tmp_path):
    data_dir, store, q = office_dir
    copy = backup_database(database_path(data_dir), tmp_path / "copy.sqlite3")
    store.close()
    assert restore_database(data_dir, copy).numbers_advanced == {}
