"""Queues, desks and displays: the office's set-up, and what each queue looks like now."""

from __future__ import annotations

import json
import re
from typing import Any

from ..db import Tx
from ..ids import new_ulid
from ..timeutil import utcnow_iso
from .errors import Conflict, NotFound, ValidationError
from .model import Desk, Queue
from .text import clean_name, language_code

PREFIX_RE = re.compile(r"^[A-Z]{1,3}$")
COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
PICK_MODES = ("queue_order", "oldest")
MAX_NAME = 80


# -- queues ------------------------------------------------------------------------

def create_queue(tx: Tx, *, name: Any, prefix: Any, colour: Any = None,
                 is_open: bool = True, sort_order: int | None = None) -> Queue:
    """Add a queue. The prefix (1-3 capital letters) is unique in the office."""
    name = _name(name)
    prefix = _prefix(prefix)
    colour = _colour(colour) if colour is not None else "#1f6feb"
    _prefix_free(tx, prefix, None)
    if sort_order is None:
        row = tx.one("SELECT COALESCE(MAX(sort_order), 0) + 1 AS n FROM queues")
        sort_order = row["n"]
    now = utcnow_iso()
    queue_id = new_ulid()
    tx.execute(
        "INSERT INTO queues (id, name, prefix, colour, is_open, sort_order, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (queue_id, name, prefix, colour, 1 if is_open else 0, int(sort_order), now, now),
    )
    queue = get_queue(tx, queue_id)
    tx.emit({"kind": "queue", "action": "created", "queue_id": queue_id})
    return queue


def update_queue(tx: Tx, queue_id: str, **changes: Any) -> Queue:
    """Change name, prefix, colour, open/closed or kiosk order of a queue.

    A new prefix applies to tickets issued from now on; numbering continues.
    """
    get_queue(tx, queue_id)
    columns: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key == "name":
            columns["name"] = _name(value)
        elif key == "prefix":
            columns["prefix"] = _prefix(value)
            _prefix_free(tx, columns["prefix"], queue_id)
        elif key == "colour":
            columns["colour"] = _colour(value)
        elif key == "is_open":
            if not isinstance(value, bool):
                raise ValidationError.field("open", "must be true or false")
            columns["is_open"] = 1 if value else 0
        elif key == "sort_order":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValidationError.field("sort_order", "must be an integer")
            columns["sort_order"] = value
        else:
            raise ValidationError.field(key, "cannot be changed")
    if columns:
        sets = ", ".join(f"{c} = ?" for c in columns)
        tx.execute(
            f"UPDATE queues SET {sets}, updated_at = ?, version = version + 1 WHERE id = ?",
            (*columns.values(), utcnow_iso(), queue_id))
        tx.emit({"kind": "queue", "action": "updated", "queue_id": queue_id})
    return get_queue(tx, queue_id)


def get_queue(tx: Tx, queue_id: str) -> Queue:
    """The queue with this id. Raises ``NotFound``."""
    row = tx.one("SELECT * FROM queues WHERE id = ?", (queue_id,))
    if row is None:
        raise NotFound(f"No queue with id {queue_id}.")
    return Queue.from_row(row)


def list_queues(tx: Tx) -> list[Queue]:
    """Every queue in kiosk order."""
    return [Queue.from_row(r) for r in tx.all("SELECT * FROM queues ORDER BY sort_order, name")]


# -- desks -------------------------------------------------------------------------

def create_desk(tx: Tx, *, name: Any, queue_ids: Any, pick_mode: Any = "queue_order") -> Desk:
    """Add a desk serving ``queue_ids`` in that priority order."""
    name = _name(name)
    queue_ids = _queue_ids(tx, queue_ids)
    pick_mode = _pick_mode(pick_mode)
    if tx.one("SELECT 1 FROM desks WHERE name = ? COLLATE NOCASE", (name,)):
        raise Conflict(f"A desk called {name!r} already exists.", field="name")
    now = utcnow_iso()
    desk_id = new_ulid()
    tx.execute("INSERT INTO desks (id, name, pick_mode, created_at, updated_at) "
               "VALUES (?, ?, ?, ?, ?)", (desk_id, name, pick_mode, now, now))
    _set_desk_queues(tx, desk_id, queue_ids)
    tx.emit({"kind": "desk", "action": "created", "desk_id": desk_id})
    return get_desk(tx, desk_id)


def update_desk(tx: Tx, desk_id: str, *, name: Any = None, queue_ids: Any = None,
                pick_mode: Any = None) -> Desk:
    """Rename a desk, change its queues (in priority order) or how it picks."""
    get_desk(tx, desk_id)
    if name is not None:
        name = _name(name)
        if tx.one("SELECT 1 FROM desks WHERE name = ? COLLATE NOCASE AND id != ?",
                  (name, desk_id)):
            raise Conflict(f"A desk called {name!r} already exists.", field="name")
        tx.execute("UPDATE desks SET name = ? WHERE id = ?", (name, desk_id))
    if pick_mode is not None:
        tx.execute("UPDATE desks SET pick_mode = ? WHERE id = ?", (_pick_mode(pick_mode), desk_id))
    if queue_ids is not None:
        _set_desk_queues(tx, desk_id, _queue_ids(tx, queue_ids))
    tx.execute("UPDATE desks SET updated_at = ? WHERE id = ?", (utcnow_iso(), desk_id))
    tx.emit({"kind": "desk", "action": "updated", "desk_id": desk_id})
    return get_desk(tx, desk_id)


def get_desk(tx: Tx, desk_id: str) -> Desk:
    """The desk with this id and its queues in priority order. Raises ``NotFound``."""
    row = tx.one("SELECT * FROM desks WHERE id = ?", (desk_id,))
    if row is None:
        raise NotFound(f"No desk with id {desk_id}.")
    queue_ids = [r["queue_id"] for r in tx.all(
        "SELECT queue_id FROM desk_queues WHERE desk_id = ? ORDER BY rank", (desk_id,))]
    return Desk(id=row["id"], name=row["name"], pick_mode=row["pick_mode"],
                queue_ids=queue_ids, created_at=row["created_at"], updated_at=row["updated_at"])


def list_desks(tx: Tx) -> list[Desk]:
    """Every desk, by name."""
    return [get_desk(tx, r["id"]) for r in tx.all("SELECT id FROM desks ORDER BY name")]


def _set_desk_queues(tx: Tx, desk_id: str, queue_ids: list[str]) -> None:
    tx.execute("DELETE FROM desk_queues WHERE desk_id = ?", (desk_id,))
    for rank, queue_id in enumerate(queue_ids):
        tx.execute("INSERT INTO desk_queues (desk_id, queue_id, rank) VALUES (?, ?, ?)",
                   (desk_id, queue_id, rank))


# -- displays ------------------------------------------------------------------------

def create_display(tx: Tx, *, name: Any, queue_ids: Any = None,
                   language: Any = None) -> dict[str, Any]:
    """Add a display showing ``queue_ids`` (empty: every queue) in ``language`` (a
    language code such as ``fi``; ``None``: the server's display language)."""
    name = _name(name)
    ids = _queue_ids(tx, queue_ids or [], allow_empty=True)
    lang = language_code("language", language) if language is not None else None
    display_id = new_ulid()
    tx.execute("INSERT INTO displays (id, name, queue_ids, language, created_at) "
               "VALUES (?, ?, ?, ?, ?)",
               (display_id, name, json.dumps(ids), lang, utcnow_iso()))
    tx.emit({"kind": "display", "action": "created", "display_id": display_id})
    return get_display(tx, display_id)


_KEEP: Any = object()


def update_display(tx: Tx, display_id: str, *, name: Any = None,
                   queue_ids: Any = None, language: Any = _KEEP) -> dict[str, Any]:
    """Rename a display, change the queues it shows (empty list: every queue) or its
    language (``None``: the server's display language; not given: unchanged)."""
    get_display(tx, display_id)
    if language is not _KEEP:
        lang = language_code("language", language) if language is not None else None
        tx.execute("UPDATE displays SET language = ? WHERE id = ?", (lang, display_id))
    if name is not None:
        tx.execute("UPDATE displays SET name = ? WHERE id = ?", (_name(name), display_id))
    if queue_ids is not None:
        ids = _queue_ids(tx, queue_ids, allow_empty=True)
        tx.execute("UPDATE displays SET queue_ids = ? WHERE id = ?", (json.dumps(ids), display_id))
    tx.emit({"kind": "display", "action": "updated", "display_id": display_id})
    return get_display(tx, display_id)


def get_display(tx: Tx, display_id: str) -> dict[str, Any]:
    """The display's record. Raises ``NotFound``."""
    row = tx.one("SELECT * FROM displays WHERE id = ?", (display_id,))
    if row is None:
        raise NotFound(f"No display with id {display_id}.")
    return {"id": row["id"], "name": row["name"], "queue_ids": json.loads(row["queue_ids"]),
            "language": row["language"], "created_at": row["created_at"]}


def list_displays(tx: Tx) -> list[dict[str, Any]]:
    """Every display, by name."""
    return [get_display(tx, r["id"]) for r in tx.all("SELECT id FROM displays ORDER BY name")]


# -- validation ------------------------------------------------------------------------

def _name(value: Any) -> str:
    return clean_name("name", value, MAX_NAME)


def _prefix(value: Any) -> str:
    if not isinstance(value, str) or not PREFIX_RE.match(value.strip().upper()):
        raise ValidationError.field("prefix", "must be 1 to 3 letters A-Z")
    return value.strip().upper()


def _prefix_free(tx: Tx, prefix: str, queue_id: str | None) -> None:
    """Refuse a prefix whose codes could repeat one that people still hold.

    No two live tickets (waiting or called) may show the same code: the prefix
    must not be another queue's, nor still be on live tickets that another
    queue issued (a queue that changed its prefix, or tickets transferred away
    keep their codes). A queue's own earlier tickets never clash: its numbers
    only grow. ``ux_tickets_live_code`` backs this in the database.
    """
    row = tx.one("SELECT name FROM queues WHERE prefix = ? AND id IS NOT ?", (prefix, queue_id))
    if row:
        raise Conflict(f"Prefix {prefix} is already used by the queue {row['name']}; "
                       "pick another prefix.", field="prefix")
    # Codes are the prefix's letters then digits: this range is exactly prefix + digits.
    held = tx.all(
        "SELECT t.origin_queue_id, q.name, COUNT(*) AS n FROM tickets t "
        "LEFT JOIN queues q ON q.id = t.origin_queue_id "
        "WHERE t.state IN ('WAITING', 'CALLED') AND t.code >= ? AND t.code < ? "
        "AND t.origin_queue_id IS NOT ? GROUP BY t.origin_queue_id ORDER BY q.name",
        (prefix + "0", prefix + ":", queue_id))
    if held:
        count = sum(r["n"] for r in held)
        names = " and ".join(r["name"] or "a removed queue" for r in held)
        tickets = "ticket" if count == 1 else "tickets"
        raise Conflict(
            f"Prefix {prefix} is still on {count} waiting or called {tickets} of {names}; "
            "pick another prefix or wait until they are served.",
            field="prefix", live_tickets=count)


def _colour(value: Any) -> str:
    if not isinstance(value, str) or not COLOUR_RE.match(value):
        raise ValidationError.field("colour", "must be a colour like #1f6feb")
    return value.lower()


def _pick_mode(value: Any) -> str:
    if value not in PICK_MODES:
        raise ValidationError.field("pick_mode", "must be queue_order or oldest")
    return str(value)


def _queue_ids(tx: Tx, value: Any, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError.field("queue_ids", "must be a list of queue ids")
    if not value and not allow_empty:
        raise ValidationError.field("queue_ids", "must name at least one queue")
    if len(set(value)) != len(value):
        raise ValidationError.field("queue_ids", "must not repeat a queue")
    for i, queue_id in enumerate(value):
        if tx.one("SELECT 1 FROM queues WHERE id = ?", (queue_id,)) is None:
            raise ValidationError.field(f"queue_ids[{i}]", f"no queue with id {queue_id}")
    return list(value)
