"""The office's outbox: every change the cloud needs, written in the transaction of the change.

``install`` hooks ``record`` into ``Store.before_commit``: a write transaction
that emitted change events (``tx.emit``) gets one outbox entry per entity it
touched, carrying the entity's full snapshot read in that same transaction, so
the entry commits, or rolls back, with the change. Sequence numbers
(``outbox.seq``, AUTOINCREMENT) strictly increase and are the only order the
cloud uses; timestamps are data.

The epoch (``sync_identity.epoch_id``) names one continuous history of this
outbox. A new epoch starts on the first start with sync on, after a restore
(the ``restored_at`` setting written by ``backup.restore_database`` differs from
the one the epoch has seen), after the server ran with sync off (changes went
unrecorded), and when the cloud answers ``rotate``. A new epoch empties the
outbox, numbers its entries from 1 again and writes a full snapshot of every
entity, so the cloud never has to guess what happened before it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from jonot_local.db import Store, Tx
from jonot_local.ids import new_ulid
from jonot_local.timeutil import parse_iso, to_iso, utcnow_iso

from .protocol import TICKET_FIELDS, hash_digest

# (entity, entity_id) → (version or None for "use the seq", payload); None: gone.
Snapshot = tuple[int | None, dict[str, Any]] | None


# -- snapshots of one entity --------------------------------------------------------

def ticket_snapshot(tx: Tx, ticket_id: str) -> Snapshot:
    """The ticket as the cloud may hold it: ``TICKET_FIELDS`` plus ``hash_digest``,
    ``public_labels``, ``desk_name`` and ``queue_name`` (no name, phone or notes)."""
    row = tx.one(
        "SELECT t.*, q.name AS queue_name, d.name AS desk_name FROM tickets t "
        "LEFT JOIN queues q ON q.id = t.queue_id LEFT JOIN desks d ON d.id = t.desk_id "
        "WHERE t.id = ?", (ticket_id,))
    if row is None:
        return None
    payload = {name: row[name] for name in TICKET_FIELDS}
    payload["priority"] = "priority" if row["priority"] else "normal"
    payload["hash_digest"] = hash_digest(row["hash"])
    payload["public_labels"] = [label for label in json.loads(row["labels"])
                                if label.get("public") is True]
    payload["desk_name"] = row["desk_name"] if row["desk_id"] else None
    payload["queue_name"] = row["queue_name"]
    return row["version"], payload


def queue_snapshot(tx: Tx, queue_id: str) -> Snapshot:
    """A queue's public set-up (its counter travels with its tickets' numbers)."""
    row = tx.one("SELECT id, name, prefix, colour, is_open, sort_order, avg_service_s, "
                 "updated_at, version FROM queues WHERE id = ?", (queue_id,))
    if row is None:
        return None
    payload = dict(row)
    payload["is_open"] = bool(payload["is_open"])
    return row["version"], payload


def desk_snapshot(tx: Tx, desk_id: str) -> Snapshot:
    row = tx.one("SELECT id, name, pick_mode, updated_at FROM desks WHERE id = ?", (desk_id,))
    if row is None:
        return None
    payload = dict(row)
    payload["queue_ids"] = [r["queue_id"] for r in tx.all(
        "SELECT queue_id FROM desk_queues WHERE desk_id = ? ORDER BY rank", (desk_id,))]
    return None, payload


def display_snapshot(tx: Tx, display_id: str) -> Snapshot:
    row = tx.one("SELECT id, name, queue_ids, created_at FROM displays WHERE id = ?",
                 (display_id,))
    if row is None:
        return None
    payload = dict(row)
    payload["queue_ids"] = json.loads(payload["queue_ids"])
    return None, payload


def location_snapshot(tx: Tx, location_id: str | None = None) -> Snapshot:
    row = tx.one("SELECT id, name, created_at FROM location LIMIT 1")
    return None, dict(row)


_SNAPSHOTS = {"ticket": ticket_snapshot, "queue": queue_snapshot, "desk": desk_snapshot,
              "display": display_snapshot, "location": location_snapshot}
_ID_KEYS = {"ticket": "ticket_id", "queue": "queue_id", "desk": "desk_id",
            "display": "display_id", "location": None}


# -- writing entries --------------------------------------------------------------------

def record(tx: Tx) -> None:
    """The ``before_commit`` hook: one entry per entity the transaction's events touched.

    An entity touched several times in one transaction gets one entry, its
    final state.
    """
    touched: dict[tuple[str, str], None] = {}
    for event in tx.events:
        kind = event.get("kind")
        if kind not in _SNAPSHOTS:
            continue
        key = _ID_KEYS[kind]
        entity_id = event.get(key) if key else _location_id(tx)
        if entity_id:
            touched[(kind, entity_id)] = None
    if not touched:
        return
    rows = []
    for entity, entity_id in touched:
        snap = _SNAPSHOTS[entity](tx, entity_id)
        if snap is not None:
            rows.append((entity, entity_id, snap[0], snap[1]))
    append(tx, rows)


def append(tx: Tx, rows: list[tuple[str, str, int | None, dict[str, Any]]]) -> int:
    """Write entries ``(entity, entity_id, version, payload)`` in this order; returns the
    last seq. ``version=None``: the entry's own seq (entities without a version column)."""
    if not rows:
        return 0
    head = tx.one("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
    seq = head["seq"] if head else 0
    now = utcnow_iso()
    values = []
    for entity, entity_id, version, payload in rows:
        seq += 1
        version = seq if version is None else int(version)
        # The payload is encoded once, canonically, and the entry's hash taken from
        # that text: the same bytes as ``protocol.entry_hash`` hashes (a list's JSON is
        # its items' JSON joined by commas), at half the cost.
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        canonical = f"[{json.dumps(entity)},{json.dumps(entity_id)},{version},{text}]"
        values.append((seq, entity, entity_id, version, text,
                       hashlib.sha256(canonical.encode()).hexdigest(), now))
    tx.conn.executemany(
        "INSERT INTO outbox (seq, entity, entity_id, version, payload, entry_hash, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", values)
    return seq


def _location_id(tx: Tx) -> str:
    return str(tx.one("SELECT id FROM location LIMIT 1")["id"])


# -- epochs -------------------------------------------------------------------------------

def identity(tx: Tx) -> dict[str, Any]:
    """``install_id``, ``epoch_id`` (None before the first), ``epoch_started_at``."""
    return dict(tx.one("SELECT install_id, epoch_id, epoch_started_at, restore_mark, recording "
                       "FROM sync_identity WHERE id = 1"))


def _restored_at(tx: Tx) -> str | None:
    row = tx.one("SELECT value FROM settings WHERE key = 'restored_at'")
    return row["value"] if row else None


#: Why an epoch began (``protocol.EPOCH_REASONS``), in words for the log.
EPOCH_REASON_WORDS = {"first": "first start with sync",
                      "restore": "the database was restored from a backup",
                      "sync_off": "changes were made while sync was off",
                      "rotate": "the cloud asked for a new epoch"}


def new_epoch_reason(tx: Tx) -> str | None:
    """Why this database cannot continue its epoch (a ``protocol.EPOCH_REASONS`` code),
    or None when it can."""
    ident = identity(tx)
    if not ident["epoch_id"]:
        return "first"
    if ident["restore_mark"] != _restored_at(tx):
        return "restore"
    if not ident["recording"]:
        return "sync_off"
    return None


def needs_new_epoch(tx: Tx) -> str | None:
    """Why this database cannot continue its epoch (words), or None when it can."""
    reason = new_epoch_reason(tx)
    return EPOCH_REASON_WORDS[reason] if reason else None


def start_epoch(tx: Tx, max_numbers: dict[str, int] | None = None,
                reason: str = "rotate") -> str:
    """Begin a new epoch in this transaction: empty the outbox, number from 1 again, and
    write a full snapshot of every entity. ``max_numbers`` (queue id → the highest
    number the cloud has seen) moves the queues' counters past those numbers, so no
    visible number is ever reused. Returns the new epoch id.

    The snapshot is framed by two ``epoch`` entries: seq 1 says which epoch this one
    follows and why (``reason``, one of ``protocol.EPOCH_REASONS``), so the cloud can
    tell a second copy of one history (a cloned disk) before applying anything of
    it; the last says the snapshot is complete, so the cloud retires the tickets
    of earlier epochs that this database no longer has."""
    for queue_id, number in (max_numbers or {}).items():
        tx.execute("UPDATE queues SET last_number = MAX(last_number, ?) WHERE id = ?",
                   (int(number), str(queue_id)))
    previous = identity(tx)["epoch_id"]
    tx.execute("DELETE FROM outbox")
    tx.execute("DELETE FROM sqlite_sequence WHERE name = 'outbox'")
    epoch_id = new_ulid()
    tx.execute("UPDATE sync_identity SET epoch_id = ?, epoch_started_at = ?, restore_mark = ?, "
               "recording = 1 WHERE id = 1", (epoch_id, utcnow_iso(), _restored_at(tx)))
    tx.execute("UPDATE sync_state SET acked_seq = 0, frozen_at = NULL, frozen_message = NULL "
               "WHERE id = 1")
    rows: list[tuple[str, str, int | None, dict[str, Any]]] = [
        ("epoch", epoch_id, 1, {"epoch_id": epoch_id, "phase": "begin",
                                "previous_epoch_id": previous, "reason": reason})]
    tickets = 0

    def add(entity: str, entity_id: str) -> None:
        snap = _SNAPSHOTS[entity](tx, entity_id)
        if snap is not None:
            rows.append((entity, entity_id, snap[0], snap[1]))

    add("location", _location_id(tx))
    for table, entity in (("queues", "queue"), ("desks", "desk"), ("displays", "display")):
        for r in tx.all(f"SELECT id FROM {table} ORDER BY id"):  # noqa: S608 - fixed names
            add(entity, r["id"])
    for r in tx.all("SELECT id FROM tickets ORDER BY id"):
        add("ticket", r["id"])
        tickets += 1
        if len(rows) >= 1000:
            append(tx, rows)
            rows = []
    for r in tx.all("SELECT * FROM applied_commands ORDER BY cmd_seq"):
        rows.append(command_row(r["cmd_seq"], r["command_id"], r["result"], r["reason"],
                                r["ticket_id"]))
    rows.append(("epoch", epoch_id, 2, {"epoch_id": epoch_id, "phase": "end",
                                        "tickets": tickets}))
    append(tx, rows)
    return epoch_id


def command_row(cmd_seq: int, command_id: str, result: str, reason: str | None,
                ticket_id: str | None) -> tuple[str, str, int | None, dict[str, Any]]:
    """The outbox row reporting a relayed command's outcome."""
    return ("command", command_id, 1, {"cmd_seq": cmd_seq, "command_id": command_id,
                                       "result": result, "reason": reason,
                                       "ticket_id": ticket_id})


def install(store: Store) -> str | None:
    """Record this store's changes from now on; start a new epoch if continuity is broken.

    Returns why a new epoch began (words), or None.
    """
    with store.write() as tx:
        reason = new_epoch_reason(tx)
        if reason:
            start_epoch(tx, reason=reason)
    if record not in store.before_commit:
        store.before_commit.append(record)
    return EPOCH_REASON_WORDS[reason] if reason else None


def stop_recording(store: Store) -> None:
    """Sync is off for this run: remember that changes go unrecorded (a new epoch later)."""
    with store.read() as tx:
        recording = identity(tx)["recording"]
    if recording:
        with store.write() as tx:
            tx.execute("UPDATE sync_identity SET recording = 0 WHERE id = 1")


def prune(tx: Tx, retention_s: float, now_iso: str) -> int:
    """Delete acknowledged entries older than ``retention_s``; returns how many."""
    cutoff = to_iso(parse_iso(now_iso) - timedelta(seconds=retention_s))
    cur = tx.execute(
        "DELETE FROM outbox WHERE seq <= (SELECT acked_seq FROM sync_state WHERE id = 1) "
        "AND created_at < ?", (cutoff,))
    return cur.rowcount
