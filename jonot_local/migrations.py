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


@MIGRATIONS(name="0008_device_paired")
def _device_paired(db: Database) -> None:
    """When a device last opened its pairing link (NULL: not yet, since the link was made)."""
    db.execute("ALTER TABLE devices ADD COLUMN paired_at TEXT")


@MIGRATIONS(name="0009_waiting_counts")
def _waiting_counts(db: Database) -> None:
    """How many tickets wait per queue and priority, kept by triggers on ``tickets``.

    A join's position and a queue's waiting count are then one row read, however
    long the queue: counting the waiting tickets grows with the queue. Triggers
    keep the count in the same transaction as every change, whichever code path
    makes it.
    """
    db.executescript("""
        CREATE TABLE queue_waiting (
            queue_id TEXT NOT NULL,
            priority INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (queue_id, priority)
        ) WITHOUT ROWID;
        INSERT INTO queue_waiting (queue_id, priority, n)
            SELECT queue_id, priority, COUNT(*) FROM tickets WHERE state = 'WAITING'
            GROUP BY queue_id, priority;
        CREATE TRIGGER tr_waiting_insert AFTER INSERT ON tickets
        WHEN NEW.state = 'WAITING' BEGIN
            INSERT INTO queue_waiting (queue_id, priority, n)
                VALUES (NEW.queue_id, NEW.priority, 1)
                ON CONFLICT (queue_id, priority) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER tr_waiting_delete AFTER DELETE ON tickets
        WHEN OLD.state = 'WAITING' BEGIN
            UPDATE queue_waiting SET n = n - 1
                WHERE queue_id = OLD.queue_id AND priority = OLD.priority;
        END;
        CREATE TRIGGER tr_waiting_leave AFTER UPDATE OF state, queue_id, priority ON tickets
        WHEN OLD.state = 'WAITING' BEGIN
            UPDATE queue_waiting SET n = n - 1
                WHERE queue_id = OLD.queue_id AND priority = OLD.priority;
        END;
        CREATE TRIGGER tr_waiting_enter AFTER UPDATE OF state, queue_id, priority ON tickets
        WHEN NEW.state = 'WAITING' BEGIN
            INSERT INTO queue_waiting (queue_id, priority, n)
                VALUES (NEW.queue_id, NEW.priority, 1)
                ON CONFLICT (queue_id, priority) DO UPDATE SET n = n + 1;
        END;
    """)

@MIGRATIONS(name="0010_report_rollup")
def _report_rollup(db: Database) -> None:
    """Counts for the reports, kept by triggers in the transaction of each ticket change.

    A report over a year must not read a year of tickets: these tables hold, per
    day of the office's calendar, the tickets issued per hour and queue, the
    tickets ended per queue, desk and outcome, and histograms of wait and service
    seconds (buckets of 10 s under 10 min, 30 s under an hour, 2 min under 4 h,
    10 min under a day, then one "a day or more" bucket, each named by its lower
    bound). Every figure is keyed by the day the ticket was issued.

    ``report_zone`` holds the UTC offsets of the office's time zone, from each
    change (DST) on; the server fills it at start and rebuilds the counts when
    the zone changed (``jonot_local.domain.report_rollup``), and so also counts
    the tickets of a database made before this step, once, at its first start.
    """
    for sql in (
        "CREATE TABLE report_zone (from_utc TEXT PRIMARY KEY, offset_min INTEGER NOT NULL)"
        " WITHOUT ROWID",
        # One row per ticket: its local day and hour, outcome and time buckets.
        """CREATE VIEW report_facts AS
        SELECT id, origin_queue_id, queue_id, desk_id, state,
               substr(local, 1, 10) AS day, CAST(substr(local, 12, 2) AS INTEGER) AS hour,
               CASE state WHEN 'COMPLETED' THEN 'completed' WHEN 'SKIPPED' THEN 'no_show'
                          WHEN 'CANCELED' THEN 'canceled' END AS outcome,
               CASE WHEN wait_s IS NULL THEN NULL
                    WHEN wait_s < 600 THEN CAST(wait_s / 10 AS INTEGER) * 10
                    WHEN wait_s < 3600 THEN CAST(wait_s / 30 AS INTEGER) * 30
                    WHEN wait_s < 14400 THEN CAST(wait_s / 120 AS INTEGER) * 120
                    WHEN wait_s < 86400 THEN CAST(wait_s / 600 AS INTEGER) * 600
                    ELSE 86400 END AS wait_bucket,
               CASE WHEN service_s IS NULL THEN NULL
                    WHEN service_s < 600 THEN CAST(service_s / 10 AS INTEGER) * 10
                    WHEN service_s < 3600 THEN CAST(service_s / 30 AS INTEGER) * 30
                    WHEN service_s < 14400 THEN CAST(service_s / 120 AS INTEGER) * 120
                    WHEN service_s < 86400 THEN CAST(service_s / 600 AS INTEGER) * 600
                    ELSE 86400 END AS service_bucket
        FROM (SELECT id, origin_queue_id, queue_id, COALESCE(desk_id, '') AS desk_id, state,
                     datetime(created_at, COALESCE((SELECT offset_min FROM report_zone
                         WHERE from_utc <= created_at ORDER BY from_utc DESC LIMIT 1), 0)
                         || ' minutes') AS local,
                     CASE WHEN called_at IS NOT NULL
                               AND state IN ('COMPLETED', 'SKIPPED', 'CANCELED')
                          THEN MAX(0, (julianday(called_at) - julianday(created_at)) * 86400.0)
                     END AS wait_s,
                     CASE WHEN state = 'COMPLETED' AND called_at IS NOT NULL
                          THEN MAX(0, (julianday(completed_at) - julianday(called_at)) * 86400.0)
                     END AS service_s
              FROM tickets)""",
        "CREATE TABLE report_joined (day TEXT NOT NULL, hour INTEGER NOT NULL,"
        " queue_id TEXT NOT NULL, n INTEGER NOT NULL,"
        " PRIMARY KEY (day, hour, queue_id)) WITHOUT ROWID",
        "CREATE TABLE report_ended (day TEXT NOT NULL, queue_id TEXT NOT NULL,"
        " desk_id TEXT NOT NULL, outcome TEXT NOT NULL, n INTEGER NOT NULL,"
        " PRIMARY KEY (day, queue_id, desk_id, outcome)) WITHOUT ROWID",
        "CREATE TABLE report_times (day TEXT NOT NULL, kind TEXT NOT NULL"
        " CHECK (kind IN ('wait', 'service')), queue_id TEXT NOT NULL, desk_id TEXT NOT NULL,"
        " bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
        " PRIMARY KEY (day, kind, queue_id, desk_id, bucket)) WITHOUT ROWID",
        f"""CREATE TRIGGER tr_report_joined AFTER INSERT ON tickets
        BEGIN
            INSERT INTO report_joined (day, hour, queue_id, n)
                SELECT day, hour, origin_queue_id, 1 FROM report_facts WHERE id = NEW.id
                ON CONFLICT (day, hour, queue_id) DO UPDATE SET n = n + 1;
            {_REPORT_ENDED_0008}
        END""",
        f"""CREATE TRIGGER tr_report_ended AFTER UPDATE OF state ON tickets
            WHEN NEW.state IN ('COMPLETED', 'SKIPPED', 'CANCELED')
                 AND OLD.state NOT IN ('COMPLETED', 'SKIPPED', 'CANCELED')
        BEGIN
            {_REPORT_ENDED_0008}
        END""",
    ):
        db.execute(sql)


# What an ended ticket adds to the counts (the body of both report triggers).
_REPORT_ENDED_0008 = """
            INSERT INTO report_ended (day, queue_id, desk_id, outcome, n)
                SELECT day, queue_id, desk_id, outcome, 1 FROM report_facts
                WHERE id = NEW.id AND outcome IS NOT NULL
                ON CONFLICT (day, queue_id, desk_id, outcome) DO UPDATE SET n = n + 1;
            INSERT INTO report_times (day, kind, queue_id, desk_id, bucket, n)
                SELECT day, 'wait', queue_id, desk_id, wait_bucket, 1 FROM report_facts
                WHERE id = NEW.id AND outcome IS NOT NULL AND wait_bucket IS NOT NULL
                ON CONFLICT (day, kind, queue_id, desk_id, bucket) DO UPDATE SET n = n + 1;
            INSERT INTO report_times (day, kind, queue_id, desk_id, bucket, n)
                SELECT day, 'service', queue_id, desk_id, service_bucket, 1 FROM report_facts
                WHERE id = NEW.id AND outcome IS NOT NULL AND service_bucket IS NOT NULL
                ON CONFLICT (day, kind, queue_id, desk_id, bucket) DO UPDATE SET n = n + 1;"""


@MIGRATIONS(name="0011_user_language")
def _user_language(db: Database) -> None:
    """An account's own page language (NULL: the browser's, then the office's)."""
    db.execute("ALTER TABLE users ADD COLUMN language TEXT")


@MIGRATIONS(name="0012_display_language")
def _display_language(db: Database) -> None:
    """A display's own language (its page and spoken announcements); NULL: the server's."""
    db.execute("ALTER TABLE displays ADD COLUMN language TEXT")


@MIGRATIONS(name="0013_sync_error_code")
def _sync_error_code(db: Database) -> None:
    """The stable code of the cloud's last refusal (``unauthorized``, ``revoked``…)."""
    db.execute("ALTER TABLE sync_state ADD COLUMN last_error_code TEXT")



@MIGRATIONS(name="0014_order_seq_trigger")
def _order_seq_trigger(db: Database) -> None:
    """A ticket's insert takes the next order key and advances the sequence itself.

    The insert reads ``settings.order_seq`` + 1 into ``order_key``; this trigger
    raises the sequence to every inserted key (never lowers it), so a join is one
    statement less and a ticket inserted with any key still sorts before the next.
    """
    db.execute(
        """CREATE TRIGGER tr_tickets_order_seq AFTER INSERT ON tickets
            WHEN NEW.order_key >= 1
        BEGIN
            INSERT INTO settings (key, value)
                VALUES ('order_seq', CAST(CAST(NEW.order_key AS INTEGER) AS TEXT))
                ON CONFLICT (key) DO UPDATE SET value = excluded.value
                WHERE CAST(excluded.value AS INTEGER) > CAST(value AS INTEGER);
        END""")

@MIGRATIONS(name="0015_report_joined_direct")
def _report_joined_direct(db: Database) -> None:
    """A new ticket's hour is counted from the inserted row itself.

    The first form of ``tr_report_joined`` read the new row back through the
    ``report_facts`` view four times (the hour it joined, then three counts that
    only a ticket inserted already ended adds to). The join, the busiest write,
    now pays one statement that reads nothing but the office's zone; a ticket
    inserted ended (a sync or a restore) is counted by a trigger of its own.
    The day and hour are those ``report_facts`` gives, so a rebuild agrees.
    """
    db.execute("DROP TRIGGER tr_report_joined")
    db.execute(
        """CREATE TRIGGER tr_report_joined AFTER INSERT ON tickets
        BEGIN
            INSERT INTO report_joined (day, hour, queue_id, n)
                SELECT substr(local, 1, 10), CAST(substr(local, 12, 2) AS INTEGER),
                       NEW.origin_queue_id, 1
                FROM (SELECT datetime(NEW.created_at, COALESCE((SELECT offset_min
                          FROM report_zone WHERE from_utc <= NEW.created_at
                          ORDER BY from_utc DESC LIMIT 1), 0) || ' minutes') AS local)
                WHERE true
                ON CONFLICT (day, hour, queue_id) DO UPDATE SET n = n + 1;
        END""")
    db.execute(
        f"""CREATE TRIGGER tr_report_inserted_ended AFTER INSERT ON tickets
            WHEN NEW.state IN ('COMPLETED', 'SKIPPED', 'CANCELED')
        BEGIN
            {_REPORT_ENDED_0008}
        END""")


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
