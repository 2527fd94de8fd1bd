"""The SQLite store: one file, WAL, a bounded connection pool, serialised writes.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``. In WAL mode
``NORMAL`` may lose the last committed transactions on power loss, i.e. a
ticket that was already printed; ``FULL`` syncs the WAL on every commit. On
the reference 2-core machine (``python -m bench durability``) that drops raw
commits from about 45,000/s to about 6,700/s, but the real join path only from
about 2,200 to 1,700 joins/s: Python, not the disk, is the bottleneck, and a
clinic's kiosks need a few joins a minute.

Connections: a fixed pool (``db_pool_size``) shared by all server threads, so
the number of open file descriptors does not grow with waitress's thread count.
Writes: one write block at a time per process (a lock, so threads queue
quickly instead of sleeping in SQLite's busy handler) on one write connection,
and ``BEGIN IMMEDIATE`` so that other processes on the same file are
serialised too. Blocks that queue up behind each other share one transaction
and one WAL sync (group commit, see ``Store.write``): under load the sync is
paid once per group instead of once per ticket, and each block still returns
only once its changes are durable.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

log = logging.getLogger("jonot_local.db")

DB_FILENAME = "jonot.sqlite3"
BUSY_TIMEOUT_MS = 10_000


def connect(path: Path | str, read_only: bool = False) -> sqlite3.Connection:
    """Open one connection with the project's pragmas, in autocommit mode.

    Transactions are begun explicitly (``BEGIN IMMEDIATE`` for writes).
    ``read_only``: the file is opened for reading and never written, not even
    its journal mode; on a read-only folder (where SQLite cannot make the
    ``-shm`` file) a database without a ``-wal`` is read as immutable.
    """
    if read_only:
        conn = _connect_read_only(Path(path))
    else:
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not read_only:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(str(path.resolve()))

    def open_uri(query: str) -> sqlite3.Connection:
        return sqlite3.connect(uri + query, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=False, uri=True)

    conn = open_uri("?mode=ro")
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # opening is lazy; reading is not
        return conn
    except sqlite3.OperationalError:
        conn.close()
        wal = Path(str(path) + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise
    # No -wal to read: every committed change is in the main file, and nobody can
    # be writing it (a writer would have made the -shm that SQLite could not).
    return open_uri("?immutable=1")


T = TypeVar("T")


class Tx:
    """A transaction in progress: the connection plus the change events it emitted."""

    def __init__(self, conn: sqlite3.Connection, store: Store | None = None) -> None:
        self.conn = conn
        self.store = store  # the store it runs on, for its per-installation options
        self.events: list[dict[str, Any]] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Any = ()) -> Any:
        """The first row (a ``sqlite3.Row``), or ``None`` when there is none.

        Typed ``Any`` so that aggregate queries, which always give a row, read as
        ``tx.one(...)["n"]``; check for ``None`` where a row may be missing.
        """
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def emit(self, event: dict[str, Any]) -> None:
        """Queue a change event; listeners receive it only if the transaction commits."""
        self.events.append(event)


class Store:
    """The database of one installation. Thread-safe; share one per process."""

    def __init__(self, path: Path | str, pool_size: int = 8, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.pool_size = max(1, pool_size)
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._created = 0
        self._create_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None  # the one write connection
        self._group: _Group | None = None  # the write transaction open for a group
        # One mark per thread waiting for the write lock: a deque's appends and pops are
        # thread-safe without a lock of their own (a counter needed one, taken twice
        # by every write).
        self._waiting: collections.deque[None] = collections.deque()
        self.max_group = 64  # write blocks committed together at most
        self._queued: collections.deque[_Queued] = collections.deque()  # ``run`` blocks
        self._closed = False
        # How new passwords are hashed (a werkzeug method; None: the strong default).
        self.password_hash_method: str | None = None
        # Called after every commit that emitted events, in the committing thread.
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        # Called inside every write transaction that emitted events, just before its
        # commit (the sync outbox): what they write commits, or fails, with the change.
        self.before_commit: list[Callable[[Tx], None]] = []
        # Grows after every write of this process that touched accounts or tokens is
        # over (committed or not); see ``auth_generation``.
        self._auth_generation = 0
        self._auth_dirty = False
        self._auth_tracked = False

    # -- connections ---------------------------------------------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a pooled connection; waits when all are in use."""
        conn = self._checkout()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            self._pool.put(conn)

    def _checkout(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("store is closed")
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._create_lock:
            if self._created < self.pool_size:
                self._created += 1
                try:
                    return connect(self.path, read_only=self.read_only)
                except BaseException:
                    self._created -= 1
                    raise
        return self._pool.get(timeout=30)

    def close(self) -> None:
        """Close every pooled connection (those in use are closed when returned)."""
        self._closed = True
        with self._write_lock:
            if self._writer is not None:
                if self._group is not None:
                    self._commit_group(self._writer, self._group)
                self._writer.close()
                self._writer = None
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break

    # -- transactions ----------------------------------------------------------

    @contextlib.contextmanager
    def read(self, snapshot: bool = True) -> Iterator[Tx]:
        """A consistent read snapshot (a deferred transaction).

        ``snapshot=False``: no transaction, each statement sees the latest commit
        (for a single statement, which is consistent on its own, it saves the
        ``BEGIN``/``ROLLBACK`` round trips).
        """
        with self.connection() as conn:
            if not snapshot:
                yield Tx(conn, self)
                return
            conn.execute("BEGIN")
            try:
                yield Tx(conn, self)
            finally:
                conn.rollback()

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: the block's changes commit together, or not at all.

        Yields a ``Tx`` on the store's one write connection; writes are serialised
        (one block at a time per process, and ``BEGIN IMMEDIATE`` across processes).
        When the block raises, its changes are rolled back and the error goes on.
        When it returns, its changes are durable (committed with
        ``synchronous=FULL``) before ``write`` returns, or ``write`` raises.

        Group commit: while other threads are waiting to write, a finished block
        does not commit on its own; its changes stay in the open transaction
        (each block after the group's first runs in a savepoint) and the last writer of the group
        commits them all with one sync of the WAL, up to ``max_group`` blocks.
        Every block of the group returns only once that commit is done, and
        all fail if it fails. A block that raises undoes only its own savepoint.

        A block that emitted events runs the ``before_commit`` hooks in its
        savepoint; after the commit, the group's events go to every listener in
        commit order (listeners must be quick: they run while writes wait).
        """
        self._waiting.append(None)
        self._write_lock.acquire()
        self._waiting.pop()
        try:
            conn = self._write_connection()
            # The first block of a group needs no savepoint: undoing it is rolling back
            # the whole transaction, which holds nothing else (two statements fewer for
            # every write that does not queue behind another).
            group = self._group
            first = group is None
            if group is None:
                conn.execute("BEGIN IMMEDIATE")
                group = self._group = _Group()
            else:
                conn.execute("SAVEPOINT block")
        except BaseException:
            if self._group is not None and self._writer is not None:
                self._commit_group(self._writer, self._group)  # earlier blocks still count
            self._write_lock.release()
            raise
        try:
            tx = Tx(conn, self)
            try:
                yield tx
                self._block_done(conn, group, tx, savepoint=not first)
            except BaseException:
                self._undo_block(conn, group, first)
                raise
        finally:
            over = self._end_turn(conn, group)
            self._serve_queued()
        if over is not None:
            self._await(group, over)
        if group.error is not None:
            raise sqlite3.OperationalError(
                f"the change was not saved: {group.error}") from group.error

    def run(self, block: Callable[[Tx], T]) -> T:
        """``block(tx)`` as one write block, as ``with write() as tx: return block(tx)``,
        but possibly run by another thread.

        The first writer to find the write lock free runs every block queued by
        then, each in a savepoint of one transaction (a group, as ``write``'s),
        commits them together and wakes their threads; the others sleep once, until
        their block's commit is over (with ``write`` a waiting writer sleeps twice:
        for the lock, then for the commit). So ``block`` must depend only on ``tx``
        and on what it was given, never on the thread that calls ``run`` (its Flask
        request, thread locals). Returns what ``block`` returned, once its changes
        are durable; raises what it raised (its changes undone, the group's others
        kept), or ``sqlite3.OperationalError`` when the group's commit failed.
        """
        queued = _Queued(block)
        self._queued.append(queued)
        while not queued.over:
            if self._write_lock.acquire(blocking=False):
                try:
                    self._run_queued()
                finally:
                    self._write_lock.release()
            elif queued.done.acquire(timeout=0.05):  # its group is over
                break
        self._serve_queued()  # blocks queued after the last look, if no one took the lock
        if queued.error is not None:
            raise queued.error
        return queued.result

    def _serve_queued(self) -> None:
        """Run the queued ``run`` blocks if the write lock is free (after releasing it)."""
        while self._queued and self._write_lock.acquire(blocking=False):
            try:
                self._run_queued()
            finally:
                self._write_lock.release()

    def _run_queued(self) -> None:
        """Under the write lock: run the queued blocks in the open group (or a new one), each
        in a savepoint, and commit the group."""
        try:
            conn = self._write_connection()
            group = self._group
            if group is None:
                conn.execute("BEGIN IMMEDIATE")
                group = self._group = _Group()
        except BaseException as err:
            while self._queued:  # nothing can run: every block queued fails alike
                self._queued.popleft().fail(err)
            if self._group is not None and self._writer is not None:
                self._commit_group(self._writer, self._group)
            return
        while self._queued and len(group.blocks) < self.max_group and self._group is group:
            queued = self._queued.popleft()
            group.queued.append(queued)
            tx = Tx(conn, self)
            try:
                conn.execute("SAVEPOINT block")
                queued.result = queued.block(tx)
                self._block_done(conn, group, tx, savepoint=True)
            except BaseException as err:  # the block's own failure: only it is undone
                queued.error = err
                self._undo_block(conn, group, first=False)
        if self._group is group:
            self._commit_group(conn, group)

    def _block_done(self, conn: sqlite3.Connection, group: _Group, tx: Tx,
                    savepoint: bool) -> None:
        """A block's body has returned: its ``before_commit`` hooks run (if it emitted
        events), its savepoint is released, and it joins the group's blocks."""
        if tx.events:
            for hook in self.before_commit:
                hook(tx)
        if savepoint:
            conn.execute("RELEASE block")
        group.blocks.append(tx)

    def _write_connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("store is closed")
        if self._writer is None:
            self._writer = connect(self.path, read_only=self.read_only)
            self._track_auth(self._writer)
        return self._writer

    # -- accounts and tokens changed ----------------------------------------------

    @property
    def auth_generation(self) -> int | None:
        """A number that grows once a write of this process that touched ``users`` or
        ``api_tokens`` is over; ``None`` while such writes are not tracked (before this
        process's first write, or when the tables did not exist at that time).

        Read it before looking an account up: a look-up made while it still has
        that value saw every change this process made to accounts. Changes made by
        other processes (the CLI) are not counted.
        """
        return self._auth_generation if self._auth_tracked else None

    def _track_auth(self, conn: sqlite3.Connection) -> None:
        """Temporary triggers on this connection mark a write that touches accounts."""

        def changed() -> None:
            self._auth_dirty = True

        conn.create_function("jonot_auth_changed", 0, changed)
        try:
            for table in ("users", "api_tokens"):
                for op in ("INSERT", "UPDATE", "DELETE"):
                    conn.execute(
                        f"CREATE TEMP TRIGGER IF NOT EXISTS jonot_auth_{table}_{op.lower()} "
                        f"AFTER {op} ON main.{table} BEGIN SELECT jonot_auth_changed(); END")
        except sqlite3.OperationalError:  # no such table yet (a database being made)
            self._auth_tracked = False
            return
        self._auth_tracked = True

    def _auth_settled(self) -> None:
        """After a commit or roll-back (under the write lock): count a change to accounts."""
        if self._auth_dirty:
            self._auth_dirty = False
            self._auth_generation += 1

    def _undo_block(self, conn: sqlite3.Connection, group: _Group, first: bool) -> None:
        """Roll back a failed block's savepoint; the group's other blocks stay.

        ``first``: the block opened the group's transaction (without a savepoint) and
        is its only block so far; the whole transaction is rolled back.
        """
        if first and not group.blocks:
            self._group = None
            _roll_back(conn, "a failed write block")
            self._auth_settled()
            group.finish()
            return
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK TO block")
                conn.execute("RELEASE block")
                return
            except sqlite3.Error:
                log.exception("could not roll back a failed write block")
        # SQLite ended the whole transaction (e.g. disk full, I/O error): the group is lost.
        self._close_group(conn, group, sqlite3.OperationalError(
            "the write transaction was rolled back by the database"))

    def _end_turn(self, conn: sqlite3.Connection, group: _Group) -> threading.Lock | None:
        """After a block, under the write lock: commit the group, or leave it to a waiter.

        Releases the write lock. Returns the lock to wait on when the group was left
        open for the next writer (released once the group is over), else ``None``.
        """
        try:
            if self._group is not group:  # closed while this block ran
                return None
            if (self._waiting or self._queued) and len(group.blocks) < self.max_group:
                return group.waiter()
            self._commit_group(conn, group)
            return None
        finally:
            self._write_lock.release()

    def _await(self, group: _Group, over: threading.Lock) -> None:
        """Wait for a group left open to be committed (committing it if it is stranded)."""
        while not over.acquire(timeout=1.0):
            with self._write_lock:
                if self._group is group and self._writer is not None:
                    self._commit_group(self._writer, group)

    def _commit_group(self, conn: sqlite3.Connection, group: _Group) -> None:
        """Commit the open group (under the write lock) and deliver its events in order."""
        self._group = None
        try:
            conn.execute("COMMIT")
        except BaseException as err:
            self._close_group(conn, group, err)
            return
        self._auth_settled()
        group.finish()
        for tx in group.blocks:
            if not tx.events:
                continue
            for listener in list(self.listeners):
                try:
                    listener(tx.events)
                except Exception:  # one broken listener must not undo a commit
                    log.exception("a change listener failed")

    def _close_group(self, conn: sqlite3.Connection, group: _Group,
                     error: BaseException) -> None:
        """End a group that cannot commit: roll back, and fail its finished blocks."""
        if self._group is group:
            self._group = None
        _roll_back(conn, "a failed write transaction")
        self._auth_settled()
        group.error = error
        group.finish()


class _Group:
    """Write blocks sharing one transaction, committed together (``Store.write``)."""

    def __init__(self) -> None:
        self.blocks: list[Tx] = []
        self.error: BaseException | None = None
        self.queued: list[_Queued] = []  # ``run`` blocks of the group, woken when it is over
        # One lock per block waiting for the commit, held until the group is over: a
        # group nobody waits for costs nothing, and each waiter wakes on its own lock
        # (an Event cost a condition and its lock per group, shared by every waiter).
        self._waiters: list[threading.Lock] = []

    def waiter(self) -> threading.Lock:
        """A lock to wait on (``acquire``) until the group is over (under the write lock)."""
        lock = threading.Lock()
        lock.acquire()
        self._waiters.append(lock)
        return lock

    def finish(self) -> None:
        """The group is over (committed or failed): wake every block waiting for it."""
        waiters, self._waiters = self._waiters, []
        for lock in waiters:
            lock.release()
        queued, self.queued = self.queued, []
        for block in queued:
            if self.error is not None and block.error is None:
                block.fail(self.error)
            else:
                block.end()


class _Queued:
    """A ``Store.run`` block waiting to be run, then for its group's commit."""

    __slots__ = ("block", "result", "error", "over", "done")

    def __init__(self, block: Callable[[Tx], Any]) -> None:
        self.block = block
        self.result: Any = None
        self.error: BaseException | None = None
        self.over = False
        self.done = threading.Lock()  # released when the block's group is over
        self.done.acquire()

    def end(self) -> None:
        self.over = True
        self.done.release()

    def fail(self, error: BaseException) -> None:
        err = sqlite3.OperationalError(f"the change was not saved: {error}")
        err.__cause__ = error
        self.error = err
        self.end()


class NoDatabase(Exception):
    """A read-only command found no database in the data dir."""


def open_store(data_dir: Path, pool_size: int = 8, read_only: bool = False) -> Store:
    """Open the data dir's database, private to its owner.

    Creates the data directory (mode 0700) and the database (0600, its
    ``-wal``/``-shm`` likewise) if needed, and migrates it. An existing data
    dir or database readable by others is tightened, with a log line saying so.

    ``read_only``: nothing is created, migrated or changed; raises
    ``NoDatabase`` when there is no database, or when it needs an upgrade
    (migrations this database lacks).
    """
    from .migrations import MIGRATIONS, migrate

    data_dir = Path(data_dir)
    path = data_dir / DB_FILENAME
    if read_only:
        if not path.is_file():
            raise NoDatabase(f"no database in {data_dir} (nothing has been set up there)")
        store = Store(path, pool_size=pool_size, read_only=True)
        with store.connection() as conn:
            pending = MIGRATIONS.pending(sqlite_utils.Database(conn))
        if pending:
            store.close()
            raise NoDatabase(f"the database in {data_dir} needs an upgrade: start the "
                             "server on it once (jonot-local serve)")
        return store
    make_private_dir(data_dir)
    if not path.exists():
        # Created by us with 0600 before SQLite opens it; SQLite gives its -wal and
        # -shm the main file's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    store = Store(path, pool_size=pool_size)
    with store.connection() as conn:
        migrate(conn)
    for suffix in ("", "-wal", "-shm"):
        _tighten(Path(str(path) + suffix), 0o600)
    return store


# What a data dir holds before its database exists (a server's lock, a secret key).
_OWN_NAMES = frozenset({"server.lock", "secret_key", "backups"})


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` with mode 0700, or tighten it if it is ours and open to others.

    A folder is tightened only when it looks like a data dir (holding the
    database, or nothing but a data dir's files) and is not a shared one
    (sticky bit, as ``/tmp``).
    """
    folder = Path(folder)
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        return
    st = folder.stat()
    if (st.st_mode & 0o077 == 0 or st.st_mode & stat.S_ISVTX
            or getattr(os, "getuid", lambda: -1)() != st.st_uid):
        return
    if not (folder / DB_FILENAME).exists() and any(
            p.name not in _OWN_NAMES for p in folder.iterdir()):
        return
    _tighten(folder, 0o700)


def _tighten(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` if it grants more, logging the change."""
    try:
        old = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if os.name != "posix" or old & ~mode == 0:
        return
    path.chmod(mode)
    log.warning("%s was readable by other users (mode %o); now %o", path, old, mode)


def _roll_back(conn: sqlite3.Connection, what: str) -> None:
    """Roll back ``conn``'s open transaction, if any; a failure is logged, not raised
    (the write's own error is the one its caller must see)."""
    if conn.in_transaction:
        try:
            conn.rollback()
        except sqlite3.Error:
            log.exception("could not roll back %s", what)
