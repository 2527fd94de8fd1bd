"""Online backups, restore, and the lock that says a server is using a data dir.

A backup is taken with SQLite's backup API from a live database: it copies
one consistent snapshot while the server keeps writing (WAL readers do not
block writers). The copy is written beside its final name, checked
(``PRAGMA integrity_check`` and the migration records), turned into a single
self-contained file (rollback journal, no ``-wal``) and only then renamed
into place, so a backup file that exists is a good one.

Restore only happens while no server runs on the data dir: ``serve`` holds an
exclusive lock on ``<data-dir>/server.lock`` for its whole life (``flock``,
which the kernel drops when the process dies, also by ``kill -9``), and
``restore`` takes the same lock or refuses.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlite_utils import Database

from .db import BUSY_TIMEOUT_MS, DB_FILENAME, connect, make_private_dir
from .migrations import MIGRATIONS, migrate
from .services import PeriodicThread
from .timeutil import parse_iso, utcnow_iso

log = logging.getLogger("jonot_local.backup")

BACKUP_DIRNAME = "backups"
LOCK_FILENAME = "server.lock"
AUTO_PREFIX = "jonot-auto-"
MANUAL_PREFIX = "jonot-"
SIDE_FILES = ("-wal", "-shm")
_AUTO_RE = re.compile(r"^jonot-auto-(\d{8}-\d{6})(?:-(\d+))?\.sqlite3$")


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why, in one line."""


class ServerRunning(BackupError):
    """The data dir is locked by a running server."""


# -- the data-dir lock -------------------------------------------------------------

class DataDirLock:
    """An exclusive, non-blocking lock on ``<data-dir>/server.lock``.

    POSIX: ``fcntl.flock``. Windows: ``msvcrt.locking`` on the first byte
    (not tested on Windows). The lock file keeps the holder's pid, for messages.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILENAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``ServerRunning`` naming the holder's pid."""
        make_private_dir(self.path.parent)
        f = open(self.path, "a+")  # noqa: SIM115 - held open while locked
        try:
            _lock_file(f)
        except OSError:
            f.seek(0)
            pid = f.read().strip()
            f.close()
            who = f" (pid {pid})" if pid.isdigit() else ""
            raise ServerRunning(
                f"a Jonot Local server{who} is running on {self.path.parent}; "
                f"stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            self._file.close()
            self._file = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_file(f: IO[str]) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


# -- checking a database file ------------------------------------------------------

def check_database(conn: sqlite3.Connection) -> list[str]:
    """Names of the Jonot Local migrations recorded in a sound database.

    Raises ``BackupError`` when the file is not an SQLite database, fails
    ``PRAGMA integrity_check``, is not a Jonot Local database, or was made by
    a newer version (migrations this version does not know).
    """
    try:
        result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
            (MIGRATIONS.migrations_table,)).fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"not an SQLite database ({exc})") from None
    if result != ["ok"]:
        raise BackupError(f"the database is damaged: {'; '.join(result[:3])}")
    if not has_table:
        raise BackupError("not a Jonot Local database (no migration records)")
    names = [r[0] for r in conn.execute(
        f"SELECT name FROM {MIGRATIONS.migrations_table} WHERE migration_set = ? "
        "ORDER BY rowid", (MIGRATIONS.name,))]
    if not names:
        raise BackupError("not a Jonot Local database (no migration records)")
    known = {m.name for m in MIGRATIONS.pending(Database(memory=True))}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BackupError("the database was made by a newer version of Jonot Local "
                          f"(unknown migrations: {', '.join(unknown)})")
    return names


def database_path(data_dir: Path) -> Path:
    """Where the database of a data dir lives."""
    return Path(data_dir) / DB_FILENAME


# -- backup ------------------------------------------------------------------------

def backup_database(db_path: Path, dest: Path) -> Path:
    """Copy the live database at ``db_path`` to ``dest`` (which must not exist).

    Safe while a server writes. The file is made readable by its owner only
    (mode 0600). Returns ``dest``. Raises ``BackupError``.
    """
    db_path, dest = Path(db_path), Path(dest)
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path}")
    if dest.exists():
        raise BackupError(f"{dest} already exists; choose another file name")
    try:
        _write_backup(db_path, dest)
    except OSError as exc:
        raise BackupError(f"cannot write the backup {dest}: {os_reason(exc)}") from None
    return dest


def os_reason(exc: OSError) -> str:
    """An ``OSError`` as one short phrase: what failed, on which path."""
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason


def _write_backup(db_path: Path, dest: Path) -> None:
    existing = next(p for p in (dest.parent, *dest.parent.parents) if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(existing))
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    _remove_with_side_files(partial)
    try:
        # Patients' names and password hashes: readable by the owner only.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        src = sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            dst = sqlite3.connect(str(partial), isolation_level=None)
            try:
                src.backup(dst)  # one step: a consistent snapshot
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                check_database(dst)
            finally:
                dst.close()
        finally:
            src.close()
        _fsync(partial)
        os.replace(partial, dest)
        _fsync_dir(dest.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"backup failed: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            _remove_with_side_files(partial)


def backups_dir(data_dir: Path) -> Path:
    """``<data-dir>/backups``: automatic, manual (by default) and pre-restore copies."""
    return Path(data_dir) / BACKUP_DIRNAME


def new_backup_path(folder: Path, prefix: str = MANUAL_PREFIX,
                    now: datetime | None = None) -> Path:
    """``<folder>/<prefix>YYYYmmdd-HHMMSS.sqlite3`` (UTC), with ``-N`` added if taken."""
    now = now or datetime.now(UTC)
    folder = Path(folder)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{prefix}{stamp}.sqlite3"
    n = 1
    while path.exists():
        path = folder / f"{prefix}{stamp}-{n}.sqlite3"
        n += 1
    return path


def automatic_backups(data_dir: Path) -> list[Path]:
    """The automatic backups in the data dir, oldest first."""
    folder = backups_dir(data_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        m = _AUTO_RE.match(path.name)
        if m and path.is_file():
            found.append(((m.group(1), int(m.group(2) or 0)), path))
    return [p for _, p in sorted(found)]


def prune_automatic_backups(data_dir: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest automatic backups (at least one is kept).

    Only files named like automatic backups are touched. Returns the deleted paths.
    """
    backups = automatic_backups(data_dir)
    doomed = backups[:-max(1, keep)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


class BackupService(PeriodicThread):
    """Takes an online backup every ``interval`` seconds and keeps the ``keep`` newest."""

    def __init__(self, data_dir: Path, interval: float, keep: int) -> None:
        super().__init__("jonot-backup", interval, self.run_once)
        self.data_dir = Path(data_dir)
        self.keep = keep
        self.made = 0

    def run_once(self, now: datetime | None = None) -> Path:
        """One automatic backup now, then prune. Returns the new file."""
        path = backup_database(database_path(self.data_dir),
                               new_backup_path(backups_dir(self.data_dir), AUTO_PREFIX, now))
        self.made += 1
        prune_automatic_backups(self.data_dir, self.keep)
        log.info("automatic backup %s", path)
        return path


# -- restore -----------------------------------------------------------------------

@dataclass
class RestoreResult:
    database: Path
    previous: Path | None  # where the replaced database was moved, if there was one
    migrations_applied: list[str]
    restored_at: str
    #: queue id → (from, to) for counters moved ahead by a guess, because the replaced
    #: database could not tell which numbers it had issued after the backup.
    numbers_advanced: dict[str, tuple[int, int]] | None = None


def restore_database(data_dir: Path, source: Path, other_location: bool = False) -> RestoreResult:
    """Replace the data dir's database with the backup ``source``.

    Refuses (``ServerRunning``) while a server holds the data dir, and
    (``BackupError``) when ``source`` is not a sound Jonot Local database, or
    is a backup of another location (office) than the data dir's while the data
    dir holds accounts, queues or tickets of its own, unless ``other_location``
    (a refusal changes nothing). The
    current database and its ``-wal``/``-shm`` are moved aside to
    ``backups/pre-restore-YYYYmmdd-HHMMSS.sqlite3``; then the backup is copied
    in, migrated, and marked with a ``settings`` row ``restored_at`` (so that
    sync can tell that this database's history was rewound).
    """
    data_dir, source = Path(data_dir), Path(source)
    if not source.is_file():
        raise BackupError(f"no such file: {source}")
    make_private_dir(data_dir)
    with DataDirLock(data_dir):
        target = database_path(data_dir)
        staged = data_dir / f".restore-{os.getpid()}.sqlite3"
        _remove_with_side_files(staged)
        try:
            try:
                _copy_with_wal(source, staged)
                _check_file(staged)
            except OSError as exc:
                raise BackupError(f"cannot restore {source}: {exc.strerror or exc}") from None
            except BackupError as exc:
                raise BackupError(f"cannot restore {source}: {exc}") from None
            if target.exists() and not other_location:
                _refuse_another_location(source, staged, target)
            carried = _read_counters(target) if target.exists() else {}
            previous = _move_aside(target) if target.exists() else None
            try:
                os.replace(staged, target)
            except OSError:
                if previous is not None:
                    _move_back(previous, target)
                raise
            for suffix in SIDE_FILES:
                Path(str(target) + suffix).unlink(missing_ok=True)
            _fsync_dir(data_dir)
        finally:
            _remove_with_side_files(staged)
        conn = connect(target)
        try:
            applied = migrate(conn)
            restored_at = utcnow_iso()
            conn.execute("BEGIN IMMEDIATE")
            _carry_counters_forward(conn, carried)
            advanced = _advance_unknown_counters(conn, carried)
            conn.execute("INSERT INTO settings (key, value) VALUES ('restored_at', ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         (restored_at,))
            conn.execute("COMMIT")
        finally:
            conn.close()
    return RestoreResult(target, previous, applied, restored_at, advanced)


def _read_location(db_path: Path) -> tuple[str, str] | None:
    """(id, name) of the location recorded in a database file, or None when unreadable."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT id, name FROM location LIMIT 1").fetchone()
        return (str(row[0]), str(row[1])) if row else None
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _holds_own_data(db_path: Path) -> bool:
    """Whether a database has accounts, queues or tickets (not just a fresh install's location).

    Unreadable counts as holding data: better refuse than replace blindly.
    """
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return True
    try:
        return any(conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]
                   for table in ("users", "queues", "tickets"))
    except sqlite3.Error:
        return True
    finally:
        conn.close()


def _refuse_another_location(source: Path, staged: Path, target: Path) -> None:
    """Raise ``BackupError`` when the backup is of another office than the data dir's own."""
    theirs, ours = _read_location(staged), _read_location(target)
    if theirs is None or ours is None or theirs[0] == ours[0] or not _holds_own_data(target):
        return
    raise BackupError(
        f"{source} is a backup of another location, '{theirs[1]}' ({theirs[0]}), while this "
        f"data dir is '{ours[1]}' ({ours[0]}); nothing was changed (use --other-location "
        "to replace this location's data with it)")


def _read_counters(db_path: Path) -> dict[str, int]:
    """The highest number issued per queue in the database being replaced.

    Best effort: an unreadable database carries nothing forward.
    """
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return {}
    try:
        rows = conn.execute(
            "SELECT q.id, MAX(q.last_number, COALESCE(MAX(t.number), 0)) FROM queues q "
            "LEFT JOIN tickets t ON t.origin_queue_id = q.id GROUP BY q.id").fetchall()
        return {queue_id: int(n) for queue_id, n in rows}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


def _carry_counters_forward(conn: sqlite3.Connection, carried: dict[str, int]) -> None:
    """Move each restored queue's counter past every number the replaced database issued.

    Tickets issued after the backup are gone with the restore, but their numbers
    were printed or shown: they are never handed out again.
    """
    for queue_id, last in carried.items():
        conn.execute("UPDATE queues SET last_number = MAX(last_number, ?) WHERE id = ?",
                     (last, queue_id))


#: The least a counter moves ahead per day of a backup's age when the numbers issued
#: after the backup are unknown (see ``_advance_unknown_counters``).
UNKNOWN_NUMBERS_PER_DAY = 100


def _advance_unknown_counters(conn: sqlite3.Connection, carried: dict[str, int],
                              now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """Move ahead the counters of queues whose numbers after the backup are unknown.

    When the replaced database is missing or unreadable (the old disk died, the
    backup goes onto a new machine) nothing tells which numbers were handed out
    after the backup, and the office may issue tickets before it reaches the
    cloud. Each such counter moves ahead by the most tickets the queue issued in
    one day of the backup's history (at least ``UNKNOWN_NUMBERS_PER_DAY``) for
    every day, begun, since the backup's last ticket: a jump in the numbers,
    never a number shown twice. The cloud's highest numbers move it further on
    the first push.
    """
    now = now or datetime.now(UTC)
    rows = conn.execute(
        "SELECT q.id, q.last_number, (SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM tickets t "
        "WHERE t.origin_queue_id = q.id GROUP BY substr(t.created_at, 1, 10))) "
        "FROM queues q").fetchall()
    newest = conn.execute("SELECT MAX(created_at) FROM tickets").fetchone()[0]
    days = 1
    if newest:
        with contextlib.suppress(ValueError):
            days = max(1, int((now - parse_iso(newest)).total_seconds() // 86_400) + 1)
    advanced: dict[str, tuple[int, int]] = {}
    for queue_id, last, busiest in rows:
        if queue_id in carried:
            continue
        step = max(UNKNOWN_NUMBERS_PER_DAY, int(busiest or 0)) * days
        advanced[queue_id] = (int(last), int(last) + step)
        conn.execute("UPDATE queues SET last_number = ? WHERE id = ?",
                     (int(last) + step, queue_id))
    return advanced


def _check_file(path: Path) -> None:
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open it ({exc})") from None
    try:
        check_database(conn)
        conn.execute("PRAGMA journal_mode = DELETE")  # fold in a copied -wal, if any
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read it ({exc})") from None
    finally:
        conn.close()


def _copy_with_wal(source: Path, dest: Path) -> None:
    """Copy a database file, with its ``-wal`` if one lies beside it (so SQLite recovers it)."""
    shutil.copyfile(source, dest)
    wal = Path(str(source) + "-wal")
    if wal.is_file():
        shutil.copyfile(wal, Path(str(dest) + "-wal"))


def _move_aside(target: Path) -> Path:
    """Move the database and its side files to ``backups/pre-restore-…``; returns the new path."""
    with contextlib.suppress(sqlite3.Error):  # fold the WAL in if the file is readable
        conn = sqlite3.connect(str(target), timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    aside = new_backup_path(backups_dir(target.parent), "pre-restore-")
    aside.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.replace(target, aside)
    for suffix in SIDE_FILES:
        side = Path(str(target) + suffix)
        if side.exists():
            os.replace(side, Path(str(aside) + suffix))
    return aside


def _move_back(aside: Path, target: Path) -> None:
    os.replace(aside, target)
    for suffix in SIDE_FILES:
        side = Path(str(aside) + suffix)
        if side.exists():
            os.replace(side, Path(str(target) + suffix))


def _remove_with_side_files(path: Path) -> None:
    for suffix in ("", "-journal", *SIDE_FILES):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened on Windows
        return
    with contextlib.suppress(OSError):
        _fsync(path)

