"""The cloud's store: one small interface, two backends (SQLite, PostgreSQL).

Both backends run the same SQL, written with ``?`` placeholders and the upsert
form both understand (``INSERT … ON CONFLICT … DO UPDATE``); the PostgreSQL
backend rewrites the placeholders. ``write(lock_office=…)`` serialises writers
of one office: ``SELECT … FOR UPDATE`` on the office's row on PostgreSQL (two
cloud processes sharing a database wait for each other there), ``BEGIN
IMMEDIATE`` on SQLite (one writer for the whole file). After a write commits,
``changed`` wakes everything waiting in this process and, on PostgreSQL, in
every process sharing the database (``LISTEN/NOTIFY``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("jonot_local.cloud")

NOTIFY_CHANNEL = "jonot_cloud"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS office (
        office_id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
        install_id TEXT, epoch_id TEXT, status TEXT NOT NULL DEFAULT 'active',
        created_at TEXT NOT NULL, revoked_at TEXT, last_push_at TEXT,
        clock_skew_s DOUBLE PRECISION, alert TEXT, last_cmd_seq BIGINT NOT NULL DEFAULT 0,
        applied_cmd_through BIGINT NOT NULL DEFAULT 0)""",
    # The cursor: one row per office and epoch; generation orders the epochs.
    """CREATE TABLE IF NOT EXISTS office_epoch (
        office_id TEXT NOT NULL, epoch_id TEXT NOT NULL, generation BIGINT NOT NULL,
        acked_seq BIGINT NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'live',
        install_id TEXT, created_at TEXT NOT NULL, PRIMARY KEY (office_id, epoch_id))""",
    """CREATE TABLE IF NOT EXISTS office_install (
        office_id TEXT NOT NULL, install_id TEXT NOT NULL, first_seen TEXT NOT NULL,
        PRIMARY KEY (office_id, install_id))""",
    """CREATE TABLE IF NOT EXISTS applied_entry (
        office_id TEXT NOT NULL, epoch_id TEXT NOT NULL, seq BIGINT NOT NULL,
        entry_hash TEXT NOT NULL, PRIMARY KEY (office_id, epoch_id, seq))""",
    """CREATE TABLE IF NOT EXISTS dead_letter (
        office_id TEXT NOT NULL, epoch_id TEXT NOT NULL, seq BIGINT NOT NULL,
        entity TEXT, entity_id TEXT, reason TEXT NOT NULL, entry TEXT NOT NULL,
        created_at TEXT NOT NULL, PRIMARY KEY (office_id, epoch_id, seq))""",
    """CREATE TABLE IF NOT EXISTS entity (
        kind TEXT NOT NULL, entity_id TEXT NOT NULL, office_id TEXT NOT NULL,
        generation BIGINT NOT NULL, version BIGINT NOT NULL, payload TEXT NOT NULL,
        updated_at TEXT NOT NULL, PRIMARY KEY (kind, entity_id))""",
    """CREATE TABLE IF NOT EXISTS ticket (
        ticket_id TEXT PRIMARY KEY, office_id TEXT NOT NULL, queue_id TEXT NOT NULL,
        hash_digest TEXT, generation BIGINT NOT NULL, version BIGINT NOT NULL,
        number BIGINT, code TEXT, state TEXT NOT NULL, prio INTEGER NOT NULL DEFAULT 0,
        order_key DOUBLE PRECISION, desk_id TEXT, called_at TEXT, payload TEXT NOT NULL,
        note TEXT, cancel_pending INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_ticket_hash ON ticket(hash_digest)",
    "CREATE INDEX IF NOT EXISTS ix_ticket_waiting ON ticket(queue_id, state, prio, order_key)",
    "CREATE INDEX IF NOT EXISTS ix_ticket_office ON ticket(office_id, queue_id)",
    "CREATE INDEX IF NOT EXISTS ix_ticket_called ON ticket(queue_id, called_at)",
    # The highest number seen per queue, kept as tickets arrive (answered on every push).
    """CREATE TABLE IF NOT EXISTS queue_number (
        queue_id TEXT PRIMARY KEY, office_id TEXT NOT NULL, max_number BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_queue_number_office ON queue_number(office_id)",
    # Relayed actions. cmd_seq is given when the office first fetches the command,
    # so an unfetched one can expire without leaving a hole in the numbering.
    """CREATE TABLE IF NOT EXISTS command (
        command_id TEXT PRIMARY KEY, office_id TEXT NOT NULL, cmd_seq BIGINT,
        kind TEXT NOT NULL, ticket_id TEXT, payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending', result TEXT, reason TEXT,
        created_at TEXT NOT NULL, fetched_at TEXT, resolved_at TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_command_seq ON command(office_id, cmd_seq)",
    "CREATE INDEX IF NOT EXISTS ix_command_state ON command(office_id, state, created_at)",
)


class TransientError(Exception):
    """The database could not be used just now (locked, gone, restarting): retry later."""


class Tx:
    """One transaction: parameterised statements, rows as dicts."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect
        self.changed: set[str] = set()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        self._cur.execute(self._sql(sql), tuple(params))
        return self._cur.rowcount

    def any_of(self, column: str, values: list[Any]) -> tuple[str, list[Any]]:
        """``column`` equal to one of ``values``: SQL and its parameters (one array
        parameter on PostgreSQL, which psycopg parses once for any length)."""
        if self.dialect == "postgres":
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run one statement for each row of parameters (pipelined on PostgreSQL)."""
        if rows:
            self._cur.executemany(self._sql(sql), rows)

    def one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> dict[str, Any] | None:
        self._cur.execute(self._sql(sql), tuple(params))
        row = self._cur.fetchone()
        return None if row is None else dict(row)

    def all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        self._cur.execute(self._sql(sql), tuple(params))
        return [dict(r) for r in self._cur.fetchall()]

    def lock_office(self, office_id: str) -> dict[str, Any] | None:
        """The office's row, locked until this transaction ends (``None``: no such office)."""
        suffix = " FOR UPDATE" if self.dialect == "postgres" else ""
        return self.one("SELECT * FROM office WHERE office_id = ?" + suffix, (office_id,))

    def wake(self, office_id: str) -> None:
        """Wake waiters (streams, long polls) once this transaction commits."""
        self.changed.add(office_id)


class Changes:
    """Change counters (one overall, one per office) with a condition variable.

    A waiter sleeps until the counter it watches moves, so a stream of one
    office's ticket is not woken into a database read by other offices' pushes.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0  # every change
        self._everyone = 0  # changes of unknown offices (e.g. after a reconnect)
        self._per_office: dict[str, int] = {}
        self._listeners: list[Callable[[set[str] | None], None]] = []

    def subscribe(self, listener: Callable[[set[str] | None], None]) -> None:
        """Call ``listener(office_ids)`` after every bump (``None``: any office); it must be
        quick (it runs in the committing thread, or the LISTEN thread)."""
        self._listeners.append(listener)

    def bump(self, office_ids: set[str] | None = None) -> None:
        """Count a change of these offices (``None``: possibly of any office)."""
        with self._cond:
            self.count += 1
            if office_ids is None:
                self._everyone += 1
            else:
                for office_id in office_ids:
                    self._per_office[office_id] = self._per_office.get(office_id, 0) + 1
            self._cond.notify_all()
        for listener in list(self._listeners):
            listener(office_ids)

    def seen(self, office_id: str | None = None) -> tuple[int, int]:
        """A token for ``wait``: the watched counter now (of the office, when given)."""
        with self._cond:
            return self._token(office_id)

    def _token(self, office_id: str | None) -> tuple[int, int]:
        if office_id is None:
            return (self.count, 0)
        return (self._everyone, self._per_office.get(office_id, 0))

    def wait(self, seen: tuple[int, int], timeout: float, office_id: str | None = None) -> None:
        """Wait until the watched counter differs from ``seen`` or ``timeout`` passes."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._token(office_id) == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)


class CloudStore:
    """The interface both backends share."""

    dialect = "sqlite"
    description = ""

    def __init__(self) -> None:
        self.changes = Changes()

    def _connect(self) -> Any:
        raise NotImplementedError

    @contextlib.contextmanager
    def write(self, lock_office: str | None = None) -> Iterator[Tx]:
        """A write transaction (with the office's row locked when given); commit on success."""
        raise NotImplementedError
        yield  # pragma: no cover

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        raise NotImplementedError
        yield  # pragma: no cover

    def migrate(self) -> None:
        with self.write() as tx:
            for stmt in SCHEMA:
                tx.execute(stmt)

    def close(self) -> None:
        """Release connections and stop background listeners."""

    def _committed(self, tx: Tx) -> None:
        if tx.changed:
            self.changes.bump(set(tx.changed))


class SqliteCloudStore(CloudStore):
    """SQLite in one file: WAL, ``synchronous=FULL``, a bounded pool of connections.

    Every open ticket stream holds a server thread; one connection per thread
    (as before) meant 2,000 streams held 2,000 connections, each with its own
    page cache, statement cache and two file descriptors (650 MiB of RSS and
    6,000 fds measured). The pool keeps ``pool_size`` whatever the thread count.
    """

    dialect = "sqlite"

    def __init__(self, path: Path, pool_size: int = 8) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.description = f"SQLite {self.path}"
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []
        self._size = max(1, pool_size)
        self._lock = threading.Lock()
        self.migrate()

    def _new(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=15.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=15000")
        return conn

    def _get(self) -> sqlite3.Connection:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) < self._size:
                conn = self._new()
                self._all.append(conn)
                return conn
        try:
            return self._pool.get(timeout=15)
        except queue.Empty:
            raise TransientError("all database connections are busy") from None

    @contextlib.contextmanager
    def _tx(self, begin: str) -> Iterator[Tx]:
        conn = self._get()
        try:
            try:
                conn.execute(begin)
            except sqlite3.OperationalError as exc:
                raise TransientError(str(exc)) from exc
            tx = Tx(conn.cursor(), "sqlite")
            try:
                yield tx
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise TransientError(str(exc)) from exc
                raise
        finally:
            self._pool.put(conn)
        self._committed(tx)

    @contextlib.contextmanager
    def write(self, lock_office: str | None = None) -> Iterator[Tx]:
        with self._tx("BEGIN IMMEDIATE") as tx:
            yield tx

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with self._tx("BEGIN") as tx:
            yield tx

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        while True:
            try:
                self._pool.get_nowait()
            except queue.Empty:
                break


class PostgresCloudStore(CloudStore):
    """PostgreSQL through psycopg 3: a bounded pool, and a LISTEN thread for changes."""

    dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 8, listen: bool = True) -> None:
        super().__init__()
        # Each NOTIFY names this process, so its LISTEN thread knows its own commits
        # (already counted when they committed) and does not wake everything twice.
        self.process_tag = secrets.token_hex(6)
        self.echoes_skipped = 0
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("PostgreSQL needs psycopg 3: pip install 'jonot-local[cloud]'") \
                from exc
        self._psycopg = psycopg
        self._dict_row = dict_row
        self.url = url
        self.description = "PostgreSQL " + _without_password(url)
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._made = 0
        self._size = pool_size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        with self._lock:  # concurrent first starts of two processes: one creates the tables
            conn = self._new()
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(4242)")
                    for stmt in SCHEMA:
                        conn.execute(stmt)
            finally:
                self._put(conn)
        if listen:
            self._listener = threading.Thread(target=self._listen, name="cloud-listen",
                                              daemon=True)
            self._listener.start()

    def _new(self) -> Any:
        try:
            conn = self._psycopg.connect(self.url, row_factory=self._dict_row,
                                         autocommit=True, connect_timeout=10)
        except self._psycopg.OperationalError as exc:
            raise TransientError(str(exc)) from exc
        self._made += 1
        return conn

    def _get(self) -> Any:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._made < self._size:
                return self._new()
        try:
            return self._pool.get(timeout=15)
        except queue.Empty:
            raise TransientError("all database connections are busy") from None

    def _put(self, conn: Any) -> None:
        if conn.closed:
            with self._lock:
                self._made -= 1
            return
        self._pool.put(conn)

    @contextlib.contextmanager
    def _tx(self, lock_office: str | None, read_only: bool) -> Iterator[Tx]:
        psycopg = self._psycopg
        conn = self._get()
        tx = None
        try:
            with conn.transaction(), conn.cursor() as cur:
                tx = Tx(cur, "postgres")
                yield tx
                for office_id in sorted(tx.changed):
                    cur.execute("SELECT pg_notify(%s, %s)",
                                (NOTIFY_CHANNEL, f"{self.process_tag} {office_id}"))
        except psycopg.OperationalError as exc:
            raise TransientError(str(exc)) from exc
        finally:
            self._put(conn)
        if tx is not None:
            self._committed(tx)

    @contextlib.contextmanager
    def write(self, lock_office: str | None = None) -> Iterator[Tx]:
        with self._tx(lock_office, read_only=False) as tx:
            yield tx

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with self._tx(None, read_only=True) as tx:
            yield tx

    def _listen(self) -> None:
        """Turn other processes' commits into local wake-ups, reconnecting after errors."""
        psycopg = self._psycopg
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.changes.bump()  # anything missed while not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=1):
                            tag, _, office_id = note.payload.rpartition(" ")
                            if tag == self.process_tag:
                                self.echoes_skipped += 1
                                continue
                            self.changes.bump({office_id})
            except psycopg.Error as exc:
                log.warning("cloud: LISTEN connection lost (%s); retrying", exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(5)
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(Exception):
                conn.close()


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def open_cloud_store(data_dir: Path, database_url: str = "", pool_size: int = 8) -> CloudStore:
    """The store a URL names: PostgreSQL for ``postgresql://…``, else SQLite in ``data_dir``."""
    if database_url.startswith(("postgresql://", "postgres://")):
        return PostgresCloudStore(database_url, pool_size=pool_size)
    if database_url:
        raise ValueError(f"unsupported database URL {database_url!r}: use postgresql://… "
                         "or leave it empty for SQLite")
    return SqliteCloudStore(Path(data_dir) / "cloud.sqlite3", pool_size=pool_size)
