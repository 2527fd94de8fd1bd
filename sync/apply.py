"""Applying commands relayed by the cloud (remote join, remote cancel) exactly once.

``apply_action`` runs one write transaction that records the command id in
``applied_commands`` (its primary key makes a redelivery do nothing), makes
the change through the domain's own rules, writes the outcome as a ``command``
outbox entry and advances ``last_applied_cmd_seq``. A refusal (queue closed,
ticket already called or ended) is an outcome (``rejected`` with a reason), not
an error: it is recorded and reported like a success.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from jonot_local.db import Store, Tx
from jonot_local.domain import tickets
from jonot_local.domain.errors import (
    DomainError,
    InvalidTransition,
    NotFound,
    QueueClosed,
    ValidationError,
)
from jonot_local.ids import is_ticket_hash
from jonot_local.timeutil import utcnow_iso

from . import outbox
from .protocol import hash_digest


class CommandGap(Exception):
    """The action is not the next one (``last_applied_cmd_seq + 1``); fetch again."""


@dataclass(frozen=True)
class Outcome:
    cmd_seq: int
    command_id: str
    result: str  # "applied" | "rejected"
    reason: str | None = None
    ticket_id: str | None = None
    duplicate: bool = False  # applied before: nothing was done this time


def last_applied(tx: Tx) -> int:
    return int(tx.one("SELECT last_applied_cmd_seq FROM sync_state WHERE id = 1")[0])


def apply_action(store: Store, action: dict[str, Any]) -> Outcome:
    """Apply one relayed action, once. Raises ``CommandGap`` when it is not the next one.

    An action whose ``cmd_seq`` was passed already, or whose ``command_id`` was
    applied, changes nothing (``duplicate``).
    """
    cmd_seq = int(action["cmd_seq"])
    command_id = str(action["command_id"])
    with store.write() as tx:
        done = last_applied(tx)
        previous = tx.one("SELECT * FROM applied_commands WHERE command_id = ?", (command_id,))
        if cmd_seq <= done or previous is not None:
            if cmd_seq == done + 1:  # applied under another number: just move past it
                tx.execute("UPDATE sync_state SET last_applied_cmd_seq = ? WHERE id = 1",
                           (cmd_seq,))
            if previous is not None:
                return Outcome(previous["cmd_seq"], command_id, previous["result"],
                               previous["reason"], previous["ticket_id"], duplicate=True)
            return Outcome(cmd_seq, command_id, "applied", duplicate=True)
        if cmd_seq != done + 1:
            raise CommandGap(f"action {cmd_seq} arrived but {done + 1} is the next one")
        result, reason, ticket_id = _run(tx, str(action.get("kind")), action.get("payload") or {})
        tx.execute("INSERT INTO applied_commands (command_id, cmd_seq, kind, result, reason, "
                   "ticket_id, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (command_id, cmd_seq, str(action.get("kind")), result, reason, ticket_id,
                    utcnow_iso()))
        tx.execute("UPDATE sync_state SET last_applied_cmd_seq = ? WHERE id = 1", (cmd_seq,))
        # The ticket's own entry (from its change event) is written by the
        # before-commit hook, after this one: the cloud sees the result, then the state.
        outbox.append(tx, [outbox.command_row(cmd_seq, command_id, result, reason, ticket_id)])
    return Outcome(cmd_seq, command_id, result, reason, ticket_id)


def _run(tx: Tx, kind: str, payload: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """Make the change in a savepoint; a refusal rolls it back and becomes the outcome."""
    ticket_id = payload.get("ticket_id") if isinstance(payload.get("ticket_id"), str) else None
    events_before = len(tx.events)
    tx.execute("SAVEPOINT sync_command")
    try:
        if kind == "join":
            ticket_id = _join(tx, payload)
        elif kind == "cancel":
            _cancel(tx, payload)
        else:
            raise _Refused("unknown_kind")
    except (_Refused, DomainError, sqlite3.IntegrityError) as exc:
        tx.execute("ROLLBACK TO sync_command")
        tx.execute("RELEASE sync_command")
        del tx.events[events_before:]
        return "rejected", _reason(exc), ticket_id
    tx.execute("RELEASE sync_command")
    return "applied", None, ticket_id


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _join(tx: Tx, payload: dict[str, Any]) -> str:
    ticket_id = payload.get("ticket_id")
    ticket_hash = payload.get("ticket_hash", payload.get("hash"))  # "hash": an older cloud
    queue_id = payload.get("queue_id")
    if not isinstance(queue_id, str):
        raise _Refused("invalid")
    if not (isinstance(ticket_id, str) and 10 <= len(ticket_id) <= 40 and ticket_id.isalnum()):
        raise _Refused("invalid")
    if not (isinstance(ticket_hash, str) and is_ticket_hash(ticket_hash)):
        raise _Refused("invalid")
    ticket = tickets.join(tx, queue_id, source="remote", name=payload.get("name"),
                          phone=payload.get("phone"),
                          priority=bool(payload.get("priority", False)),
                          ticket_id=ticket_id, ticket_hash=ticket_hash)
    if ticket.hash != ticket_hash:
        raise _Refused("conflict")  # the id is another ticket's
    return ticket.id


def _cancel(tx: Tx, payload: dict[str, Any]) -> None:
    """A relayed cancel applies to a waiting ticket only: once a desk has called it,
    the office's call stands (the patient may be on the way)."""
    ticket_id = payload.get("ticket_id")
    if not isinstance(ticket_id, str):
        raise _Refused("invalid")
    ticket = tickets.get(tx, ticket_id)
    digest = payload.get("hash_digest")
    if digest is not None and digest != hash_digest(ticket.hash):
        raise _Refused("not_found")
    if ticket.state != "WAITING":
        raise _Refused(f"already_{ticket.state.lower()}")
    tickets.cancel(tx, ticket.id, by="customer")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _Refused):
        return exc.reason
    if isinstance(exc, QueueClosed):
        return "queue_closed"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, InvalidTransition):
        return "invalid_transition"
    if isinstance(exc, ValidationError):
        return "invalid"
    if isinstance(exc, sqlite3.IntegrityError):
        return "conflict"
    return "refused"
