"""Named, append-only schema migrations, applied at start.

A migration that has shipped is never edited: add a new step instead.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database, Migrations

from .ids import new_ulid
from .timeutil import utcnow_iso

MIGRATIONS = Migrations("jonot_local")


@MIGRATIONS(name="0001_initial")
def _initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE location (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE queues (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            colour TEXT NOT NULL DEFAULT '#1f6feb',
            is_open INTEGER NOT NULL DEFAULT 1,
            sort_order INTEGER NOT NULL DEFAULT 0,
            last_number INTEGER NOT NULL DEFAULT 0,
            avg_service_s REAL,
            now_serving_ticket_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE desks (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            pick_mode TEXT NOT NULL DEFAULT 'queue_order'
                CHECK (pick_mode IN ('queue_order', 'oldest')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE desk_queues (
            desk_id TEXT NOT NULL REFERENCES desks(id) ON DELETE CASCADE,
            queue_id TEXT NOT NULL REFERENCES queues(id),
            rank INTEGER NOT NULL,
            PRIMARY KEY (desk_id, queue_id)
        );
        CREATE INDEX ix_desk_queues_queue ON desk_queues(queue_id);
        CREATE TABLE displays (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            queue_ids TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL
        );
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name TEXT NOT NULL DEFAULT '',
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('staff', 'admin')),
            active INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL
        );
        CREATE TABLE api_tokens (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE TABLE tickets (
            id TEXT PRIMARY KEY,
            queue_id TEXT NOT NULL REFERENCES queues(id),
            number INTEGER NOT NULL,
            code TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL CHECK (state IN
                ('WAITING', 'CALLED', 'COMPLETED', 'SKIPPED', 'CANCELED')),
            source TEXT NOT NULL CHECK (source IN ('kiosk', 'desk', 'remote', 'appointment')),
            name TEXT,
            phone TEXT,
            extra TEXT NOT NULL DEFAULT '[]',
            labels TEXT NOT NULL DEFAULT '[]',
            notes TEXT NOT NULL DEFAULT '',
            priority INTEGER NOT NULL DEFAULT 0,
            order_key REAL NOT NULL,
            desk_id TEXT REFERENCES desks(id),
            called_by TEXT REFERENCES users(id),
            recall_count INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            called_at TEXT,
            completed_at TEXT,
            skipped_at TEXT,
            canceled_at TEXT,
            canceled_by TEXT CHECK (canceled_by IN ('customer', 'staff')),
            updated_at TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            origin_queue_id TEXT NOT NULL,
            UNIQUE (origin_queue_id, number)
        );
        -- Call-next and position only touch waiting tickets: a partial index
        -- keeps them independent of the size of the history. ``state`` is a
        -- column too so that SQLite counts positions from the index alone.
        CREATE INDEX ix_tickets_waiting ON tickets(queue_id, state, priority DESC, order_key)
            WHERE state = 'WAITING';
        CREATE INDEX ix_tickets_queue_created ON tickets(queue_id, created_at);
        CREATE INDEX ix_tickets_created ON tickets(created_at);
        CREATE INDEX ix_tickets_state ON tickets(state, queue_id);
        CREATE TABLE interactions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ticket_id TEXT NOT NULL REFERENCES tickets(id),
            queue_id TEXT NOT NULL,
            desk_id TEXT,
            user_id TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            outcome TEXT CHECK (outcome IN
                ('completed', 'skipped', 'returned', 'transferred', 'canceled'))
        );
        CREATE INDEX ix_interactions_ticket ON interactions(ticket_id);
        CREATE INDEX ix_interactions_started ON interactions(started_at);
        CREATE INDEX ix_interactions_queue ON interactions(queue_id, id);
        """
    )
    db.execute(
        "INSERT INTO location (id, name, created_at) VALUES (?, ?, ?)",
        [new_ulid(), "Jonot Local", utcnow_iso()],
    )


@MIGRATIONS(name="0002_devices")
def _devices(db: Database) -> None:
    """Registered devices (kiosks, displays, desks) and their long-lived credentials."""
    db.executescript(
        """
        CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('kiosk', 'display', 'desk')),
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        """
    )


@MIGRATIONS(name="0004_live_codes")
def _live_codes(db: Database) -> None:
    """No two live tickets show one code, and no two queues share a prefix, in the database.

    Earlier versions let a queue take a prefix that waiting tickets of another
    queue still showed, so two live tickets could carry the same code. Such
    pairs, if any, are told apart before the index is built: the ticket issued
    first keeps its code, each later one gets ``-2``, ``-3`` … appended (a
    changed code, visible on its ticket page, rather than two people answering
    one call).
    """
    dupes = db.execute(
        "SELECT id, code FROM tickets WHERE state IN ('WAITING', 'CALLED') AND code IN ("
        "  SELECT code FROM tickets WHERE state IN ('WAITING', 'CALLED') "
        "  GROUP BY code HAVING COUNT(*) > 1) "
        "ORDER BY code, created_at, id").fetchall()
    taken = {code for (code,) in db.execute(
        "SELECT code FROM tickets WHERE state IN ('WAITING', 'CALLED')").fetchall()}
    previous = None
    now = utcnow_iso()
    for ticket_id, code in dupes:
        if code != previous:
            previous = code
            continue
        suffix = 2
        while f"{code}-{suffix}" in taken:
            suffix += 1
        taken.add(f"{code}-{suffix}")
        db.execute("UPDATE tickets SET code = ?, updated_at = ?, version = version + 1 "
                   "WHERE id = ?", [f"{code}-{suffix}", now, ticket_id])
    # One statement at a time: ``executescript`` would commit the migration half-way.
    db.execute("CREATE UNIQUE INDEX ux_tickets_live_code ON tickets(code) "
               "WHERE state IN ('WAITING', 'CALLED')")
    db.execute("CREATE UNIQUE INDEX ux_queues_prefix ON queues(prefix)")


@MIGRATIONS(name="0003_join_keys")
def _join_keys(db: Database) -> None:
    """Live anonymous tickets and the hashed key of the client that took each one."""
    db.executescript(
        """
        CREATE TABLE join_keys (
            ticket_id TEXT PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
            client_key TEXT NOT NULL,
            address_key TEXT
        ) WITHOUT ROWID;
        -- No index on the keys: only a refused join lists a client's codes, and the
        -- table holds live anonymous tickets only. Each index would be one more page
        -- written (and synced) by every anonymous join.
        -- Live tickets per key (client or address), kept by the triggers below, so
        -- checking a budget is one primary-key read whatever the cap.
        CREATE TABLE join_key_counts (
            key TEXT PRIMARY KEY,
            live INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TRIGGER tr_join_keys_counted AFTER INSERT ON join_keys
        BEGIN
            INSERT INTO join_key_counts (key, live) VALUES (NEW.client_key, 1)
                ON CONFLICT (key) DO UPDATE SET live = live + 1;
            INSERT INTO join_key_counts (key, live) SELECT NEW.address_key, 1
                WHERE NEW.address_key IS NOT NULL
                ON CONFLICT (key) DO UPDATE SET live = live + 1;
        END;
        CREATE TRIGGER tr_join_keys_uncounted AFTER DELETE ON join_keys
        BEGIN
            UPDATE join_key_counts SET live = live - 1
                WHERE key IN (OLD.client_key, OLD.address_key);
            DELETE FROM join_key_counts
                WHERE key IN (OLD.client_key, OLD.address_key) AND live <= 0;
        END;
        -- Only live tickets count: the row goes when its ticket ends.
        CREATE TRIGGER tr_join_keys_ended AFTER UPDATE OF state ON tickets
            WHEN NEW.state NOT IN ('WAITING', 'CALLED')
        BEGIN
            DELETE FROM join_keys WHERE ticket_id = NEW.id;
        END;
        """
    )
@MIGRATIONS(name="0005_device_printer")
def _device_printer(db: Database) -> None:
    """A kiosk may have its own receipt printer (a URI; NULL: the server's default)."""
    db.execute("ALTER TABLE devices ADD COLUMN printer TEXT")


@MIGRATIONS(name="0006_sync")
def _sync(db: Database) -> None:
    """Cloud sync: the office's identity, its outbox, the worker's cursors, applied commands.

    ``sync_identity.epoch_id`` starts empty: the first start with sync on makes
    one (``jonot_local.sync.outbox.install``), with a full snapshot.
    """
    db.execute("CREATE TABLE sync_identity ("
               " id INTEGER PRIMARY KEY CHECK (id = 1),"
               " install_id TEXT NOT NULL,"
               " epoch_id TEXT,"
               " epoch_started_at TEXT,"
               " restore_mark TEXT,"       # the settings row restored_at this epoch has seen
               " recording INTEGER NOT NULL DEFAULT 0)")  # outbox kept since the epoch began
    db.execute("CREATE TABLE outbox ("
               " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
               " entity TEXT NOT NULL,"
               " entity_id TEXT NOT NULL,"
               " version INTEGER NOT NULL,"
               " payload TEXT NOT NULL,"
               " entry_hash TEXT NOT NULL,"
               " created_at TEXT NOT NULL)")
    db.execute("CREATE TABLE sync_state ("
               " id INTEGER PRIMARY KEY CHECK (id = 1),"
               " acked_seq INTEGER NOT NULL DEFAULT 0,"
               " last_applied_cmd_seq INTEGER NOT NULL DEFAULT 0,"
               " last_ok_at TEXT,"
               " last_error TEXT,"
               " last_error_at TEXT,"
               " clock_skew_s REAL,"
               " frozen_at TEXT,"
               " frozen_message TEXT)")
    db.execute("CREATE TABLE applied_commands ("
               " command_id TEXT PRIMARY KEY,"
               " cmd_seq INTEGER NOT NULL,"
               " kind TEXT NOT NULL,"
               " result TEXT NOT NULL,"
               " reason TEXT,"
               " ticket_id TEXT,"
               " applied_at TEXT NOT NULL)")
    db.execute("INSERT INTO sync_identity (id, install_id) VALUES (1, ?)", [new_ulid()])
    db.execute("INSERT INTO sync_state (id) VALUES (1)")


@MIGRATIONS(name="0007_kiosk_options")
def _kiosk_options(db: Database) -> None:
    """A device's own options (a kiosk's queues, buttons, language, printing), as JSON."""
    db.executescript("ALTER TABLE devices ADD COLUMN options TEXT;")


@MIGRATIONS(name="0008_display_language")
def _display_language(db: Database) -> None:
    """A display's own language (its page and spoken announcements); NULL: the server's."""
    db.execute("ALTER TABLE displays ADD COLUMN language TEXT")


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every pending migration; returns the names applied.

    Runs under ``BEGIN IMMEDIATE`` so two processes starting at once on the
    same file migrate it once.
    """
    db = Database(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        pending = [m.name for m in MIGRATIONS.pending(db)]
        MIGRATIONS.apply(db)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return pending


def applied(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in the database."""
    return [m.name for m in MIGRATIONS.applied(Database(conn))]
