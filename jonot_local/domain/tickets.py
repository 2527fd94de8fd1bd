"""Tickets: joining, the state machine, ordering and edits.

Every function takes an open write transaction (``Tx``) from ``Store.write``,
so several steps (or a sync command and its record) commit together. Every
change bumps ``version``, stamps ``updated_at`` and emits one change event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..bodies import ActionRequest, CallRequest, ReorderRequest, TransferRequest
from ..db import Tx
from ..ids import new_ticket_hash, new_ulid
from ..timeutil import parse_iso, utcnow_iso
from .errors import (
    InvalidTransition,
    NotFound,
    QueueClosed,
    QueueEmpty,
    ValidationError,
    VersionConflict,
)
from .model import (
    CALLED,
    CANCELED,
    COMPLETED,
    SKIPPED,
    SOURCES,
    TERMINAL,
    WAITING,
    Interaction,
    Queue,
    Ticket,
    format_code,
)
from .status import ServiceEstimator
from .text import clean_line, clean_notes
from .transitions import Transition, Transitions

MAX_NAME = 120
MAX_PHONE = 40
MAX_NOTES = 2000
MAX_LABELS = 10
MAX_LABEL = 32
MAX_EXTRA = 20
MAX_EXTRA_TITLE = 60
MAX_EXTRA_VALUE = 500
DEFAULT_ESTIMATOR = ServiceEstimator()

# The state machine: every action on a ticket is registered by its function below
# (see ``transitions``); the API routes, the OpenAPI operations, the interaction
# outcomes and the tests' table of moves are derived from this registry.
TRANSITIONS = Transitions()
transition = TRANSITIONS.transition


# -- reading -------------------------------------------------------------------

def get(tx: Tx, ticket_id: str) -> Ticket:
    """The ticket with this id. Raises ``NotFound``."""
    row = tx.one("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
    if row is None:
        raise NotFound(f"No ticket with id {ticket_id}.")
    return Ticket.from_row(row)


def find_by_hash(tx: Tx, ticket_hash: str) -> Ticket | None:
    """The ticket whose bearer hash this is, or ``None``."""
    row = tx.one("SELECT * FROM tickets WHERE hash = ?", (ticket_hash,))
    return Ticket.from_row(row) if row else None


def interactions(tx: Tx, ticket_id: str) -> list[Interaction]:
    """One row per call of the ticket, oldest first."""
    rows = tx.all("SELECT * FROM interactions WHERE ticket_id = ? ORDER BY id", (ticket_id,))
    return [Interaction.from_row(r) for r in rows]


# -- joining -------------------------------------------------------------------

@dataclass(frozen=True)
class Joined:
    """A ticket just issued, with what its holder is shown, read by the join's own statements.

    ``position`` counts the ticket itself (1: next); ``queue`` is the queue as of the
    join (its counter already advanced); ``desks``: how many desks serve it;
    ``now_serving``: as ``status.now_serving``.
    """

    ticket: Ticket
    queue: Queue
    position: int
    desks: int
    now_serving: dict[str, Any] | None


def join(
    tx: Tx,
    queue_id: str,
    *,
    source: str = "remote",
    name: str | None = None,
    phone: str | None = None,
    priority: bool = False,
    extra: list[dict[str, Any]] | None = None,
    labels: list[dict[str, Any]] | None = None,
    notes: str = "",
    allow_closed: bool = False,
    ticket_id: str | None = None,
    ticket_hash: str | None = None,
) -> Ticket:
    """Issue the next ticket of a queue.

    The queue's counter advances in this same transaction, so numbers are
    1, 2, 3… per queue with no gap and no reuse. Raises ``NotFound`` for an
    unknown queue, ``QueueClosed`` when it is closed (unless ``allow_closed``),
    ``ValidationError`` for bad fields.

    ``ticket_id``/``ticket_hash``: the id and hash minted elsewhere (a remote
    join relayed by the cloud); when a ticket with that id exists already it is
    returned unchanged, so a repeated join makes one ticket.
    """
    if ticket_id is not None:
        existing = tx.one("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
        if existing is not None:
            return Ticket.from_row(existing)
    return issue(tx, queue_id, source=source, name=name, phone=phone, priority=priority,
                 extra=extra, labels=labels, notes=notes, allow_closed=allow_closed,
                 ticket_id=ticket_id, ticket_hash=ticket_hash).ticket


# The counter's statement also reads what the new ticket's holder is shown (desks
# serving the queue, the waiting tickets ahead, the queue's now serving): the
# subqueries run inside it, in C, instead of as statements of their own.
_ADVANCE_COUNTER = """UPDATE queues SET last_number = last_number + 1
    WHERE id = ?1 AND (is_open OR ?2)
    RETURNING *,
        (SELECT COUNT(*) FROM desk_queues WHERE queue_id = queues.id) AS desks_,
        (SELECT COALESCE(SUM(n), 0) FROM queue_waiting
            WHERE queue_id = queues.id AND priority >= ?3) AS ahead_,
        (SELECT code FROM tickets WHERE id = queues.now_serving_ticket_id) AS ns_code_,
        (SELECT desk_id FROM tickets WHERE id = queues.now_serving_ticket_id) AS ns_desk_id_,
        (SELECT called_at FROM tickets WHERE id = queues.now_serving_ticket_id) AS ns_called_at_,
        (SELECT d.name FROM tickets t JOIN desks d ON d.id = t.desk_id
            WHERE t.id = queues.now_serving_ticket_id) AS ns_desk_name_"""
_QUEUE_COLUMNS = tuple(Queue.__dataclass_fields__)


def issue(
    tx: Tx,
    queue_id: str,
    *,
    source: str = "remote",
    name: str | None = None,
    phone: str | None = None,
    priority: bool = False,
    extra: list[dict[str, Any]] | None = None,
    labels: list[dict[str, Any]] | None = None,
    notes: str = "",
    allow_closed: bool = False,
    ticket_id: str | None = None,
    ticket_hash: str | None = None,
) -> Joined:
    """Issue the next ticket of a queue, as ``join`` (without its look-up of an existing
    ``ticket_id``), and return it with its position, the queue and what it serves now.

    Two statements: the queue's counter (which reads the rest of the answer) and
    the ticket's insert, which takes the next order key (``_ORDER_KEY_NEXT``).
    """
    if source not in SOURCES:
        raise ValidationError.field("source", f"must be one of {', '.join(SOURCES)}")
    name = _clean_text("name", name, MAX_NAME)
    phone = _clean_text("phone", phone, MAX_PHONE)
    notes = _clean_text("notes", notes, MAX_NOTES) or ""
    extra_list = validate_extra(extra) if extra else []
    label_list = validate_labels(labels) if labels else []
    # Joins are the busiest writes: few statements while the write lock is held
    # (each one hands the GIL to other threads and must wait to get it back).
    counter = tx.one(_ADVANCE_COUNTER, (queue_id, 1 if allow_closed else 0,
                                        1 if priority else 0))
    if counter is None:
        if tx.one("SELECT 1 FROM queues WHERE id = ?", (queue_id,)) is None:
            raise NotFound(f"No queue with id {queue_id}.")
        raise QueueClosed("This queue is closed and takes no new tickets.", queue_id=queue_id)
    number, prefix = counter["last_number"], counter["prefix"]
    now = utcnow_iso()
    ticket_id = ticket_id or new_ulid()
    code, ticket_hash = format_code(prefix, number), ticket_hash or new_ticket_hash()
    # The insert takes the next order key itself (a trigger advances the sequence),
    # and the new row is known whole (every other column starts empty): only the key
    # is read back.
    order_key = tx.one(
        """INSERT INTO tickets (id, queue_id, origin_queue_id, number, code, hash, state,
               source, name, phone, extra, labels, notes, priority, order_key,
               created_at, updated_at, version)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, """ + _ORDER_KEY_NEXT + """,
               ?, ?, ?) RETURNING order_key""",
        (ticket_id, queue_id, queue_id, number, code, ticket_hash, WAITING, source,
         name, phone, json.dumps(extra_list) if extra_list else "[]",
         json.dumps(label_list) if label_list else "[]", notes, 1 if priority else 0,
         now, now, 1),
    )["order_key"]
    ticket = Ticket(
        id=ticket_id, queue_id=queue_id, number=number, code=code, hash=ticket_hash,
        state=WAITING, source=source, name=name, phone=phone, extra=extra_list,
        labels=label_list, notes=notes, priority="priority" if priority else "normal",
        order_key=float(order_key), desk_id=None, called_by=None, recall_count=0,
        created_at=now, called_at=None, completed_at=None, skipped_at=None,
        canceled_at=None, canceled_by=None, updated_at=now, version=1,
        origin_queue_id=queue_id)
    _emit(tx, ticket, "joined")
    queue = Queue.from_row({k: counter[k] for k in _QUEUE_COLUMNS})
    now_serving = None
    if queue.now_serving_ticket_id and counter["ns_code_"] is not None:
        now_serving = {"code": counter["ns_code_"], "desk_id": counter["ns_desk_id_"],
                       "desk_name": counter["ns_desk_name_"],
                       "called_at": counter["ns_called_at_"]}
    # The new ticket is the last of its priority: those ahead were waiting before it.
    return Joined(ticket=ticket, queue=queue, position=counter["ahead_"] + 1,
                  desks=counter["desks_"], now_serving=now_serving)


# -- calling -------------------------------------------------------------------

def call_next(tx: Tx, desk_id: str, *, user_id: str | None = None) -> Ticket:
    """Call the next waiting ticket for a desk.

    The desk's queues are taken in its priority order (``queue_order``), or
    the oldest head across them (``oldest``: issue order, i.e. the office-wide
    order key, not the wall clock, which may be stepped back); within a queue,
    priority tickets first, then the order key. Run inside ``Store.write`` this is
    atomic: each ticket is called by exactly one desk. Raises ``NotFound``
    for an unknown desk and ``QueueEmpty`` when nothing waits.
    """
    desk = tx.one("SELECT id, pick_mode FROM desks WHERE id = ?", (desk_id,))
    if desk is None:
        raise NotFound(f"No desk with id {desk_id}.")
    queue_ids = [r["queue_id"] for r in tx.all(
        "SELECT queue_id FROM desk_queues WHERE desk_id = ? ORDER BY rank", (desk_id,))]
    heads: list[Any] = []
    for queue_id in queue_ids:
        head = tx.one(
            "SELECT id, priority, order_key FROM tickets WHERE queue_id = ? AND state = 'WAITING' "
            "ORDER BY priority DESC, order_key LIMIT 1",
            (queue_id,),
        )
        if head is None:
            continue
        if desk["pick_mode"] == "queue_order":
            heads = [head]
            break
        heads.append(head)
    if not heads:
        raise QueueEmpty("No ticket is waiting in the queues this desk serves.", desk_id=desk_id)
    chosen = min(heads, key=lambda h: (-h["priority"], h["order_key"]))
    return _call(_begin(tx, call, chosen["id"], None, user_id), desk_id)


@transition("call", from_={WAITING}, to=CALLED, body=CallRequest, past="called",
            summary="Call this waiting ticket to a desk, out of order if need be")
def call(tx: Tx, ticket_id: str, desk_id: str, *, user_id: str | None = None,
         version: int | None = None) -> Ticket:
    """Call this waiting ticket to a desk, out of order if need be.

    ``user_id`` (who called) is kept as the ticket's ``called_by`` and the new
    interaction's user.
    """
    act = _begin(tx, call, ticket_id, version, user_id)
    if tx.one("SELECT 1 FROM desks WHERE id = ?", (desk_id,)) is None:
        raise NotFound(f"No desk with id {desk_id}.")
    return _call(act, desk_id)


def _call(act: _Act, desk_id: str) -> Ticket:
    tx, ticket, now = act.tx, act.ticket, act.now
    tx.execute(
        "UPDATE tickets SET state = 'CALLED', desk_id = ?, called_by = ?, called_at = ?, "
        "recall_count = 0, updated_at = ?, version = version + 1 "
        "WHERE id = ? AND state = 'WAITING'",
        (desk_id, act.user_id, now, now, ticket.id),
    )
    tx.execute(
        "INSERT INTO interactions (ticket_id, queue_id, desk_id, user_id, started_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (ticket.id, ticket.queue_id, desk_id, act.user_id, now),
    )
    tx.execute(
        "UPDATE queues SET now_serving_ticket_id = ? WHERE id = ?", (ticket.id, ticket.queue_id))
    return act.finish()


@transition("recall", from_={CALLED}, to=CALLED, body=ActionRequest, past="recalled",
            summary="Announce a called ticket again at the same desk (CALLED → CALLED)")
def recall(tx: Tx, ticket_id: str, *, version: int | None = None) -> Ticket:
    """Announce a called ticket again at the same desk; counts the recalls."""
    act = _begin(tx, recall, ticket_id, version)
    tx.execute(
        "UPDATE tickets SET recall_count = recall_count + 1, updated_at = ?, "
        "version = version + 1 WHERE id = ?",
        (act.now, act.ticket.id),
    )
    # A recall is a call again: it is what the queue serves now.
    tx.execute("UPDATE queues SET now_serving_ticket_id = ? WHERE id = ?",
               (act.ticket.id, act.ticket.queue_id))
    return act.finish()


# -- ending a call ---------------------------------------------------------------
# ``user_id`` of these is who acted: it becomes the ended interaction's user.

@transition("complete", from_={CALLED}, to=COMPLETED, outcome="completed", call_stands=True,
            body=ActionRequest, past="completed", summary="Service done (CALLED → COMPLETED)",
            settings={"service": ServiceEstimator.from_settings})
def complete(tx: Tx, ticket_id: str, *, user_id: str | None = None,
             version: int | None = None,
             service: ServiceEstimator = DEFAULT_ESTIMATOR) -> Ticket:
    """Mark service done (terminal). Feeds the queue's service-time estimate."""
    act = _begin(tx, complete, ticket_id, version, user_id)
    started = act.end_call()
    tx.execute(
        "UPDATE tickets SET state = 'COMPLETED', completed_at = ?, updated_at = ?, "
        "version = version + 1 WHERE id = ?",
        (act.now, act.now, act.ticket.id),
    )
    if started is not None:
        _learn_service_time(tx, act.ticket.queue_id, started, act.now, service)
    return act.finish()


@transition("skip", from_={CALLED}, to=SKIPPED, outcome="skipped", call_stands=True,
            body=ActionRequest, past="skipped", summary="No-show (CALLED → SKIPPED)")
def skip(tx: Tx, ticket_id: str, *, user_id: str | None = None,
         version: int | None = None) -> Ticket:
    """Mark a called ticket as a no-show (terminal)."""
    act = _begin(tx, skip, ticket_id, version, user_id)
    act.end_call()
    tx.execute(
        "UPDATE tickets SET state = 'SKIPPED', skipped_at = ?, updated_at = ?, "
        "version = version + 1 WHERE id = ?",
        (act.now, act.now, act.ticket.id),
    )
    return act.finish()


@transition("cancel", from_={WAITING, CALLED}, to=CANCELED, outcome="canceled",
            body=ActionRequest, past="canceled", staff_args={"by": "staff"},
            summary="Cancel (WAITING or CALLED → CANCELED, canceled_by staff)")
def cancel(tx: Tx, ticket_id: str, *, by: str, user_id: str | None = None,
           version: int | None = None) -> Ticket:
    """Cancel a waiting or called ticket (terminal); ``by`` is ``customer`` or ``staff``."""
    if by not in ("customer", "staff"):
        raise ValidationError.field("canceled_by", "must be customer or staff")
    act = _begin(tx, cancel, ticket_id, version, user_id)
    if act.ticket.state == CALLED:
        act.end_call()
    tx.execute(
        "UPDATE tickets SET state = 'CANCELED', canceled_at = ?, canceled_by = ?, "
        "updated_at = ?, version = version + 1 WHERE id = ?",
        (act.now, by, act.now, act.ticket.id),
    )
    return act.finish()


@transition("return", from_={CALLED}, to=WAITING, outcome="returned", body=ActionRequest,
            past="returned to the queue",
            summary="Back to the queue, keeping its place (CALLED → WAITING)")
def return_to_queue(tx: Tx, ticket_id: str, *, user_id: str | None = None,
                    version: int | None = None) -> Ticket:
    """Put a called ticket back to waiting; it keeps its place in the queue."""
    act = _begin(tx, return_to_queue, ticket_id, version, user_id)
    act.end_call()
    tx.execute(
        "UPDATE tickets SET state = 'WAITING', updated_at = ?, version = version + 1 "
        "WHERE id = ?",
        (act.now, act.ticket.id),
    )
    return act.finish()


@transition("transfer", from_={CALLED}, to=WAITING, outcome="transferred",
            body=TransferRequest, past="transferred",
            summary="Move a called ticket to another queue as waiting; it keeps its code")
def transfer(tx: Tx, ticket_id: str, queue_id: str, *, user_id: str | None = None,
             version: int | None = None, to_front: bool = False) -> Ticket:
    """Move a called ticket to another queue as waiting; it keeps its code.

    It goes to the end of that queue, or the front with ``to_front``.
    """
    act = _begin(tx, transfer, ticket_id, version, user_id)
    ticket = act.ticket
    if tx.one("SELECT 1 FROM queues WHERE id = ?", (queue_id,)) is None:
        raise NotFound(f"No queue with id {queue_id}.")
    if queue_id == ticket.queue_id:
        raise ValidationError.field(
            "queue_id", "is the ticket's own queue; use return to put it back")
    act.end_call()
    if to_front:
        first = tx.one(
            f"SELECT MIN(order_key) AS k FROM tickets WHERE queue_id = ? AND {_HOLDS_PLACE}",
            (queue_id,))
        order_key = (first["k"] - 1.0) if first["k"] is not None else _next_order_key(tx)
    else:
        order_key = _next_order_key(tx)
    tx.execute(
        "UPDATE tickets SET state = 'WAITING', queue_id = ?, order_key = ?, updated_at = ?, "
        "version = version + 1 WHERE id = ?",
        (queue_id, order_key, act.now, ticket.id),
    )
    return act.finish(prev_queue_id=ticket.queue_id)


# -- edits -----------------------------------------------------------------------

def update(tx: Tx, ticket_id: str, *, version: int, **changes: Any) -> Ticket:
    """Edit name, phone, notes, labels, extra or priority of a live ticket.

    ``version`` must be the ticket's current version (else ``VersionConflict``);
    terminal tickets refuse edits (``InvalidTransition``).
    """
    ticket = get(tx, ticket_id)
    _check_version(ticket, version)
    if ticket.terminal:
        raise InvalidTransition(
            f"Ticket {ticket.code} is {ticket.state} and can no longer change.",
            state=ticket.state)
    allowed = {"name", "phone", "notes", "labels", "extra", "priority"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationError.field(sorted(unknown)[0], "cannot be changed")
    columns: dict[str, Any] = {}
    if "name" in changes:
        columns["name"] = _clean_text("name", changes["name"], MAX_NAME)
    if "phone" in changes:
        columns["phone"] = _clean_text("phone", changes["phone"], MAX_PHONE)
    if "notes" in changes:
        columns["notes"] = _clean_text("notes", changes["notes"], MAX_NOTES) or ""
    if "labels" in changes:
        columns["labels"] = json.dumps(validate_labels(changes["labels"] or []))
    if "extra" in changes:
        columns["extra"] = json.dumps(validate_extra(changes["extra"] or []))
    if "priority" in changes:
        columns["priority"] = 1 if parse_priority(changes["priority"]) else 0
    if not columns:
        return ticket
    assignments = ", ".join(f"{c} = ?" for c in columns)
    tx.execute(
        f"UPDATE tickets SET {assignments}, updated_at = ?, version = version + 1 WHERE id = ?",
        (*columns.values(), utcnow_iso(), ticket.id),
    )
    edited = get(tx, ticket.id)
    _emit(tx, edited, "updated")
    return edited


@transition("reorder", from_={WAITING}, to=WAITING, body=ReorderRequest, past="moved",
            event="reordered",
            summary="Move a waiting ticket after another one of its queue (null: the front)")
def reorder(tx: Tx, ticket_id: str, *, after: str | None, version: int | None = None) -> Ticket:
    """Move a waiting ticket to just after another waiting ticket of its queue.

    ``after=None`` moves it to the front. Priority still comes first: a normal
    ticket placed after a priority one is served after all priority tickets.
    """
    act = _begin(tx, reorder, ticket_id, version)
    ticket = act.ticket
    if after == ticket.id:
        raise ValidationError.field("after", "cannot be the ticket itself")
    if after is None:
        first = tx.one(
            f"SELECT MIN(order_key) AS k FROM tickets WHERE queue_id = ? AND {_HOLDS_PLACE} "
            "AND id != ?", (ticket.queue_id, ticket.id))
        new_key = ticket.order_key if first["k"] is None else first["k"] - 1.0
    else:
        anchor = tx.one(
            "SELECT order_key FROM tickets WHERE id = ? AND queue_id = ? AND state = 'WAITING'",
            (after, ticket.queue_id))
        if anchor is None:
            raise ValidationError.field("after", "must be a waiting ticket of the same queue")
        nxt = tx.one(
            f"SELECT MIN(order_key) AS k FROM tickets WHERE queue_id = ? AND {_HOLDS_PLACE} "
            "AND order_key > ? AND id != ?", (ticket.queue_id, anchor["order_key"], ticket.id))
        if nxt["k"] is None:
            new_key = _next_order_key(tx)  # a fresh key: ``+ 1`` could be the next join's
        else:
            new_key = (anchor["order_key"] + nxt["k"]) / 2.0
            if not anchor["order_key"] < new_key < nxt["k"]:
                _respace_order_keys(tx, ticket.queue_id)
                return reorder(tx, ticket_id, after=after, version=None)
    tx.execute(
        "UPDATE tickets SET order_key = ?, updated_at = ?, version = version + 1 WHERE id = ?",
        (new_key, act.now, ticket.id),
    )
    return act.finish()


# -- validation helpers ------------------------------------------------------------

def parse_priority(value: Any) -> bool:
    """``priority``/``normal`` (or a boolean) to a boolean. Raises ``ValidationError``."""
    if isinstance(value, bool):
        return value
    if value in ("priority", "normal"):
        return value == "priority"
    raise ValidationError.field("priority", "must be 'priority' or 'normal'")


def validate_labels(labels: Any) -> list[dict[str, Any]]:
    """Labels as ``[{"value": "VIP", "color": "#ff00ff", "public": false}]``.

    A label may be given as a plain string. The colour defaults to grey;
    ``public`` (default false) says whether the ticket's holder may see it:
    labels are staff-only unless marked public. Values are cleaned like every
    short text (``text.clean_line``).
    """
    if not isinstance(labels, list) or len(labels) > MAX_LABELS:
        raise ValidationError.field("labels", f"must be a list of at most {MAX_LABELS} labels")
    out = []
    for i, label in enumerate(labels):
        if isinstance(label, str):
            label = {"value": label}
        if not isinstance(label, dict):
            raise ValidationError.field(f"labels[{i}]", "must be an object with value and color")
        raw = label.get("value")
        if not isinstance(raw, str):
            raise ValidationError.field(f"labels[{i}].value", "must be 1 to 32 characters")
        value = clean_line(f"labels[{i}].value", raw, MAX_LABEL)
        if value is None:
            raise ValidationError.field(f"labels[{i}].value", "must be 1 to 32 characters")
        color = label.get("color") or "#6e7781"
        if not _is_colour(color):
            raise ValidationError.field(f"labels[{i}].color", "must be a colour like #ff00ff")
        public = label.get("public", False)
        if public is None:
            public = False
        if not isinstance(public, bool):
            raise ValidationError.field(f"labels[{i}].public", "must be true or false")
        out.append({"value": value, "color": _norm_colour(color), "public": public})
    return out


def public_labels(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The labels a ticket's holder may see: those marked public."""
    return [label for label in labels if label.get("public") is True]


def validate_extra(extra: Any) -> list[dict[str, str]]:
    """Free-form fields as ``[{"title": "Reason", "value": "blood test"}]``.

    Titles (1-60 characters) and values (up to 500) are cleaned like every
    short text (``text.clean_line``).
    """
    if not isinstance(extra, list) or len(extra) > MAX_EXTRA:
        raise ValidationError.field("extra", f"must be a list of at most {MAX_EXTRA} fields")
    out = []
    for i, item in enumerate(extra):
        if not isinstance(item, dict):
            raise ValidationError.field(f"extra[{i}]", "must be an object with title and value")
        title, value = item.get("title"), item.get("value", "")
        if not isinstance(title, str):
            raise ValidationError.field(f"extra[{i}].title", "must be 1 to 60 characters")
        title = clean_line(f"extra[{i}].title", title, MAX_EXTRA_TITLE)
        if title is None:
            raise ValidationError.field(f"extra[{i}].title", "must be 1 to 60 characters")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValidationError.field(f"extra[{i}].value",
                                        "must be text of at most 500 characters")
        value = clean_line(f"extra[{i}].value", value, MAX_EXTRA_VALUE) or ""
        out.append({"title": title, "value": value})
    return out


def _clean_text(field: str, value: Any, limit: int) -> str | None:
    """A ticket's text field, cleaned by ``text``: notes keep their lines, the rest is one line."""
    if field in _MULTILINE_FIELDS:
        return clean_notes(field, value, limit)
    return clean_line(field, value, limit)


_MULTILINE_FIELDS = frozenset({"notes"})


def _is_colour(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    v = value.lstrip("#")
    return len(v) in (3, 6) and all(c in "0123456789abcdefABCDEF" for c in v)


def _norm_colour(value: str) -> str:
    v = value.lstrip("#").lower()
    if len(v) == 3:
        v = "".join(c * 2 for c in v)
    return "#" + v


# -- internals -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Act:
    """An action under way on one ticket: checked, with its time and who acts."""

    tx: Tx
    transition: Transition
    ticket: Ticket
    user_id: str | None
    now: str

    def end_call(self) -> str | None:
        """Close the open call with the action's outcome; returns when the call started."""
        return _end_interaction(self.tx, self.ticket, self.transition, self.now, self.user_id)

    def finish(self, **more: Any) -> Ticket:
        """The ticket now, which must be in the action's target state; emits the change."""
        done = get(self.tx, self.ticket.id)
        if done.state != self.transition.to:
            raise RuntimeError(f"{self.transition.name} left ticket {done.code} "
                               f"{done.state}, not {self.transition.to}")
        _emit(self.tx, done, self.transition.event, **more)
        return done


def _begin(tx: Tx, fn: Callable[..., Any], ticket_id: str, version: int | None,
           user_id: str | None = None) -> _Act:
    """Load the ticket for the registered action ``fn``: its version, then its state.

    Raises ``NotFound``, ``VersionConflict`` or ``InvalidTransition`` (a refused
    move changes nothing).
    """
    entry = TRANSITIONS.of(fn)
    ticket = get(tx, ticket_id)
    _check_version(ticket, version)
    if ticket.state not in entry.from_:
        raise InvalidTransition(
            f"Ticket {ticket.code} is {ticket.state}; it cannot be {entry.past}.",
            state=ticket.state, action=entry.name)
    return _Act(tx, entry, ticket, user_id, utcnow_iso())


def _check_version(ticket: Ticket, version: int | None) -> None:
    if version is not None and version != ticket.version:
        raise VersionConflict(
            f"Ticket {ticket.code} was changed by someone else (version {ticket.version}, "
            f"you had {version}). Reload it and try again.",
            current_version=ticket.version)


def _end_interaction(tx: Tx, ticket: Ticket, action: Transition, now: str,
                     user_id: str | None) -> str | None:
    """Close the ticket's open interaction with the action's outcome; returns when it started.

    ``user_id``, when known, replaces the interaction's user: who ended the call.
    """
    row = tx.one(
        "UPDATE interactions SET ended_at = ?, outcome = ?, user_id = COALESCE(?, user_id) "
        "WHERE id = (SELECT id FROM interactions WHERE ticket_id = ? AND ended_at IS NULL "
        "ORDER BY id DESC LIMIT 1) RETURNING started_at",
        (now, action.outcome, user_id, ticket.id),
    )
    if not action.call_stands:
        _forget_now_serving(tx, ticket)
    return row["started_at"] if row else None


def _forget_now_serving(tx: Tx, ticket: Ticket) -> None:
    """A call that did not happen (returned, transferred, canceled) stops being "now serving".

    The queue then shows its latest call that stands: one still open or served.
    """
    standing = ", ".join("?" for _ in _STANDING_OUTCOMES)
    tx.execute(
        "UPDATE queues SET now_serving_ticket_id = ("
        "  SELECT ticket_id FROM interactions WHERE queue_id = ? "
        f"  AND (ended_at IS NULL OR outcome IN ({standing})) "
        "  ORDER BY id DESC LIMIT 1) "
        "WHERE id = ? AND now_serving_ticket_id = ?",
        (ticket.queue_id, *_STANDING_OUTCOMES, ticket.queue_id, ticket.id))


def _learn_service_time(tx: Tx, queue_id: str, started: str, ended: str,
                        service: ServiceEstimator) -> None:
    """After a completed service: refresh the queue's cached service time.

    A service too short or too long to be believable changes nothing.
    """
    seconds = (parse_iso(ended) - parse_iso(started)).total_seconds()
    if service.counts(seconds):
        service.learn(tx, queue_id)


# Tickets that hold a place in their queue's order: waiting ones, and called ones,
# which a return puts back where they were. Keys of these must stay distinct.
_HOLDS_PLACE = "state IN ('WAITING', 'CALLED')"


# The next order key, read inside a ticket's insert; the insert's trigger
# (``tr_tickets_order_seq``) then raises the sequence to the key, as
# ``_next_order_key`` does.
_ORDER_KEY_NEXT = ("(SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM settings "
                   "WHERE key = 'order_seq'), 0) + 1)")


def _next_order_key(tx: Tx) -> float:
    row = tx.one(
        "INSERT INTO settings (key, value) VALUES ('order_seq', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value")
    return float(row["value"])


def _respace_order_keys(tx: Tx, queue_id: str) -> None:
    rows = tx.all(
        f"SELECT id FROM tickets WHERE queue_id = ? AND {_HOLDS_PLACE} ORDER BY order_key",
        (queue_id,))
    for row in rows:
        tx.execute("UPDATE tickets SET order_key = ? WHERE id = ?",
                   (_next_order_key(tx), row["id"]))


def _emit(tx: Tx, ticket: Ticket, action: str, **more: Any) -> None:
    desk_name = None
    if ticket.desk_id and ticket.state == CALLED:
        row = tx.one("SELECT name FROM desks WHERE id = ?", (ticket.desk_id,))
        desk_name = row["name"] if row else None
    tx.emit({
        "kind": "ticket",
        "action": action,
        "ticket_id": ticket.id,
        "queue_id": ticket.queue_id,
        "code": ticket.code,
        "state": ticket.state,
        "desk_id": ticket.desk_id if ticket.state == CALLED else None,
        "desk_name": desk_name,
        "recall_count": ticket.recall_count,
        "version": ticket.version,
        "at": ticket.updated_at,
        **more,
    })


# Outcomes a call can end with, and those of calls that did happen.
OUTCOMES = TRANSITIONS.outcomes()
_STANDING_OUTCOMES = TRANSITIONS.standing_outcomes()


__all__ = [
    "TERMINAL", "TRANSITIONS", "OUTCOMES", "Transition", "get", "find_by_hash",
    "interactions", "join", "call_next",
    "call", "recall", "complete", "skip", "cancel", "return_to_queue", "transfer", "update",
    "reorder", "parse_priority", "validate_labels", "validate_extra", "CANCELED",
]
