"""What the cloud shows and relays for tickets it holds: holder views, remote join and cancel.

The cloud never decides a ticket's fate. A remote join is a ``PENDING`` ticket
and a ``join`` command; a remote cancel is a ``cancel`` command and a
"cancel pending" flag; both stay so until the office's result arrives in a
push. A command is numbered (``cmd_seq``) when the office first fetches it; one
not fetched within the TTL expires, and a fetched one never does, so no command
is both expired and applied.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from jonot_local.sync import protocol

from jonot_local.domain.errors import InvalidTransition as AlreadyEnded
from jonot_local.domain.errors import NotFound, QueueClosed
from jonot_local.ids import new_ticket_hash, new_ulid
from jonot_local.timeutil import parse_iso, to_iso

from .store import CloudStore, Tx

TERMINAL = ("COMPLETED", "SKIPPED", "CANCELED", "REJECTED", "RETIRED")
def N_(words: str) -> str:
    """Marks words for the translations (the ticket page shows them in the patient's language)."""
    return words


EXPIRED_REASON = N_("The clinic is offline just now, so this request could not reach it. "
                    "Try again later, or take a ticket at the kiosk.")

#: Every refusal code the office reports (``sync/apply.py``), in words.
REASONS = {
    "queue_closed": N_("This queue is closed just now."),
    "already_called": N_("Too late to cancel: the ticket has already been called."),
    "already_ended": N_("This ticket has already ended."),
    "already_completed": N_("This ticket has already been served."),
    "already_skipped": N_("This ticket was skipped: ask at the reception."),
    "already_canceled": N_("This ticket has already been canceled."),
    "not_found": N_("The clinic does not know this ticket or queue."),
    "invalid": N_("The clinic could not read this request."),
    "invalid_transition": N_("The clinic could not do this for the ticket in its present "
                             "state."),
    "conflict": N_("The clinic already has another ticket with this id; please join again."),
    "unknown_kind": N_("The clinic does not know this kind of request yet."),
    "refused": N_("The clinic refused this request."),
    "expired": EXPIRED_REASON,
    "office_restored": N_("The clinic's records no longer have this ticket: they were put "
                          "back from an earlier backup. Please ask at the reception."),
}


def reason_words(reason: str | None) -> str | None:
    """A refusal's code as words people understand (unknown codes shown as sent)."""
    if reason is None:
        return None
    return REASONS.get(reason, reason.replace("_", " ").capitalize() + ".")


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# -- holder views --------------------------------------------------------------------------

def find_by_hash(tx: Tx, ticket_hash: str) -> dict[str, Any] | None:
    return tx.one("SELECT * FROM ticket WHERE hash_digest = ?",
                  (protocol.hash_digest(ticket_hash),))


def _entity(tx: Tx, kind: str, entity_id: str | None) -> dict[str, Any] | None:
    if not entity_id:
        return None
    row = tx.one("SELECT payload FROM entity WHERE kind = ? AND entity_id = ?", (kind, entity_id))
    return None if row is None else json.loads(row["payload"])


def holder_view(tx: Tx, ticket: dict[str, Any], *, url: str, stale_after_s: float,
                default_service_s: float, now: datetime | None = None) -> dict[str, Any]:
    """The office's ``HolderTicket`` shape as far as the cloud knows it, plus freshness.

    Extra fields: ``cancel_pending`` (a cancel waits for the office), ``message``
    (a refusal or a note in words), ``updated_at_office`` (when the office last
    pushed), ``stale`` (silent longer than ``stale_after_s``) and ``source_of_truth``.
    """
    queue = _entity(tx, "queue", ticket["queue_id"]) or {}
    office = tx.one("SELECT last_push_at FROM office WHERE office_id = ?",
                    (ticket["office_id"],)) or {}
    ahead = None
    if ticket["state"] == "WAITING" and ticket["order_key"] is not None:
        row = tx.one(
            "SELECT COUNT(*) AS n FROM ticket WHERE queue_id = ? AND state = 'WAITING' AND "
            "(prio > ? OR (prio = ? AND order_key < ?))",
            (ticket["queue_id"], ticket["prio"], ticket["prio"], ticket["order_key"]))
        ahead = int((row or {}).get("n") or 0)
    return compose_view(ticket, queue=queue, desk=_entity(tx, "desk", ticket["desk_id"]),
                        last_push=office.get("last_push_at"), ahead=ahead,
                        now_serving=_now_serving(tx, ticket["queue_id"], queue), url=url,
                        stale_after_s=stale_after_s, default_service_s=default_service_s,
                        now=now)


def compose_view(ticket: dict[str, Any], *, queue: dict[str, Any], desk: dict[str, Any] | None,
                 last_push: str | None, ahead: int | None, now_serving: dict[str, Any] | None,
                 url: str, stale_after_s: float, default_service_s: float,
                 now: datetime | None = None) -> dict[str, Any]:
    """``holder_view`` from what was read for it: the ticket's row, its queue's and desk's
    payloads, the office's last push, the waiting tickets ahead (``None`` unless it waits)
    and the queue's now serving. The fan-out reads these for many tickets at once."""
    now = _now(now)
    payload = json.loads(ticket["payload"])
    state = ticket["state"]
    quiet_s = (now - parse_iso(last_push)).total_seconds() if last_push else None
    position = wait = None
    if ahead is not None:
        position = ahead + 1
        per = float(queue.get("service_time_s") or queue.get("avg_service_s")
                    or default_service_s)
        desks = max(1, int(queue.get("desks_serving") or 1))
        wait = int(math.ceil(per * ahead / desks)) if ahead else 0
    data: dict[str, Any] = {
        "id": ticket["ticket_id"], "queue_id": ticket["queue_id"],
        "number": ticket["number"], "code": ticket["code"], "state": state,
        "source": payload.get("source", "remote"), "labels": [],
        "priority": "priority" if ticket["prio"] else "normal",
        "desk_id": ticket["desk_id"], "recall_count": payload.get("recall_count", 0),
        "created_at": payload.get("created_at"), "called_at": payload.get("called_at"),
        "completed_at": payload.get("completed_at"), "skipped_at": payload.get("skipped_at"),
        "canceled_at": payload.get("canceled_at"), "canceled_by": payload.get("canceled_by"),
        "updated_at": payload.get("updated_at", ticket["updated_at"]),
        "version": ticket["version"],
        "position": position, "estimated_wait_s": wait,
        "now_serving": now_serving,
        "desk_name": desk.get("name") if desk and state == "CALLED" else None,
        "queue_name": queue.get("name", ""),
        "url": url,
        "cancel_pending": bool(ticket["cancel_pending"]),
        "message": reason_words(ticket["note"]),
        "updated_at_office": last_push,
        "stale": quiet_s is None or quiet_s > stale_after_s,
        "source_of_truth": "cloud copy of the office",
    }
    return data


def now_serving(tx: Tx, queue_id: str, queue: dict[str, Any]) -> dict[str, Any] | None:
    """What the queue's payload says is being served, else its latest call the cloud holds."""
    return _now_serving(tx, queue_id, queue)


def _now_serving(tx: Tx, queue_id: str, queue: dict[str, Any]) -> dict[str, Any] | None:
    given = queue.get("now_serving")
    if isinstance(given, dict) and given.get("code"):
        return {k: given.get(k) for k in ("code", "desk_id", "desk_name", "called_at")}
    row = tx.one("SELECT code, desk_id, called_at FROM ticket WHERE queue_id = ? "
                 "AND called_at IS NOT NULL ORDER BY called_at DESC LIMIT 1", (queue_id,))
    if row is None:
        return None
    desk = _entity(tx, "desk", row["desk_id"])
    return {"code": row["code"], "desk_id": row["desk_id"],
            "desk_name": desk.get("name") if desk else None, "called_at": row["called_at"]}


def view_key(view: dict[str, Any]) -> str:
    """What makes two views different to a holder (not the freshness clock)."""
    return json.dumps({k: v for k, v in view.items() if k not in ("updated_at_office", "stale")},
                      sort_keys=True)


# -- remote join and cancel ---------------------------------------------------------------------

def remote_join(store: CloudStore, queue_id: str,
                now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """Mint a ticket id and hash, store a ``PENDING`` ticket, queue a ``join``; (hash, row)."""
    stamp = to_iso(_now(now))
    with store.read() as tx:
        row = tx.one("SELECT office_id, payload FROM entity WHERE kind = 'queue' "
                     "AND entity_id = ?", (queue_id,))
    if row is None:
        raise NotFound("No queue has this id here.", kind="queue")
    queue = json.loads(row["payload"])
    if queue.get("open", queue.get("is_open")) is False:
        raise QueueClosed("This queue is closed just now.")
    office_id = row["office_id"]
    ticket_id, ticket_hash = new_ulid(), new_ticket_hash()
    command_id = new_ulid()
    payload = {"ticket_id": ticket_id, "ticket_hash": ticket_hash, "queue_id": queue_id}
    with store.write(lock_office=office_id) as tx:
        office = tx.lock_office(office_id)
        if office is None or office["status"] != "active":
            raise QueueClosed("This clinic cannot take remote tickets just now.")
        tx.execute(
            "INSERT INTO ticket (ticket_id, office_id, queue_id, hash_digest, generation, "
            "version, state, prio, payload, updated_at) VALUES (?, ?, ?, ?, 0, 0, 'PENDING', 0,"
            " ?, ?)", (ticket_id, office_id, queue_id, protocol.hash_digest(ticket_hash),
                       json.dumps({"source": "remote", "created_at": stamp}), stamp))
        _command(tx, office_id, command_id, "join", ticket_id, payload, stamp)
        ticket = tx.one("SELECT * FROM ticket WHERE ticket_id = ?", (ticket_id,))
    assert ticket is not None
    return ticket_hash, ticket


def remote_cancel(store: CloudStore, ticket_id: str, now: datetime | None = None) -> None:
    """Ask the office to cancel; idempotent while one is pending. Ended tickets: 409."""
    stamp = to_iso(_now(now))
    with store.read() as tx:
        row = tx.one("SELECT office_id FROM ticket WHERE ticket_id = ?", (ticket_id,))
    if row is None:
        raise NotFound("No ticket has this link.", kind="ticket")
    office_id = row["office_id"]
    with store.write(lock_office=office_id) as tx:
        tx.lock_office(office_id)
        ticket = tx.one("SELECT * FROM ticket WHERE ticket_id = ?", (ticket_id,))
        assert ticket is not None
        if ticket["state"] in TERMINAL:
            raise AlreadyEnded("This ticket has already ended.", state=ticket["state"])
        if ticket["cancel_pending"]:
            return
        if ticket["state"] == "PENDING":
            # A join the office has not fetched yet is withdrawn here; it never reaches it.
            withdrawn = tx.execute(
                "UPDATE command SET state = 'withdrawn', resolved_at = ? WHERE office_id = ? "
                "AND ticket_id = ? AND kind = 'join' AND state = 'pending'",
                (stamp, office_id, ticket_id))
            if withdrawn:
                tx.execute("UPDATE ticket SET state = 'CANCELED', note = NULL, updated_at = ? "
                           "WHERE ticket_id = ?", (stamp, ticket_id))
                tx.wake(office_id)
                return
        _command(tx, office_id, new_ulid(), "cancel", ticket_id, {"ticket_id": ticket_id},
                 stamp)
        tx.execute("UPDATE ticket SET cancel_pending = 1, note = NULL WHERE ticket_id = ?",
                   (ticket_id,))


def _command(tx: Tx, office_id: str, command_id: str, kind: str, ticket_id: str,
             payload: dict[str, Any], stamp: str) -> None:
    tx.execute("INSERT INTO command (command_id, office_id, kind, ticket_id, payload, state, "
               "created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
               (command_id, office_id, kind, ticket_id, json.dumps(payload), stamp))
    tx.wake(office_id)


# -- delivery to the office ---------------------------------------------------------------------

def expire_commands(tx: Tx, office_id: str, ttl_s: float, now: datetime) -> int:
    """Expire the office's unfetched commands older than the TTL; how many."""
    cutoff = to_iso(now - timedelta(seconds=ttl_s))
    old = tx.all("SELECT command_id, kind, ticket_id FROM command WHERE office_id = ? AND "
                 "state = 'pending' AND created_at < ?", (office_id, cutoff))
    stamp = to_iso(now)
    for cmd in old:
        tx.execute("UPDATE command SET state = 'expired', reason = 'expired', resolved_at = ? "
                   "WHERE command_id = ?", (stamp, cmd["command_id"]))
        if cmd["kind"] == "join":
            tx.execute("UPDATE ticket SET state = 'REJECTED', note = 'expired' "
                       "WHERE ticket_id = ? AND state = 'PENDING'", (cmd["ticket_id"],))
        else:
            tx.execute("UPDATE ticket SET cancel_pending = 0, note = 'expired' "
                       "WHERE ticket_id = ?", (cmd["ticket_id"],))
    if old:
        tx.wake(office_id)
    return len(old)


def expire_all(store: CloudStore, ttl_s: float, now: datetime | None = None) -> int:
    """Expire unfetched commands of every office (a periodic sweep)."""
    now = _now(now)
    cutoff = to_iso(now - timedelta(seconds=ttl_s))
    with store.read() as tx:
        offices = [r["office_id"] for r in tx.all(
            "SELECT DISTINCT office_id FROM command WHERE state = 'pending' AND created_at < ?",
            (cutoff,))]
    total = 0
    for office_id in offices:
        with store.write(lock_office=office_id) as tx:
            tx.lock_office(office_id)
            total += expire_commands(tx, office_id, ttl_s, now)
    return total


def take_actions(store: CloudStore, office_id: str, after: int, ttl_s: float,
                 now: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Commands with ``cmd_seq > after`` for the office, numbering and marking new ones fetched.

    Already fetched ones come again (the office may have lost them); they keep
    their number. Expired ones are never numbered, so the numbering has no holes.
    """
    now = _now(now)
    stamp = to_iso(now)
    with store.read() as tx:
        top = tx.one("SELECT last_cmd_seq FROM office WHERE office_id = ?", (office_id,))
        waiting = tx.one("SELECT COUNT(*) AS n FROM command WHERE office_id = ? "
                         "AND state = 'pending'", (office_id,))
    if top is None:
        return []
    if (waiting or {}).get("n") or int(top["last_cmd_seq"]) > after:
        with store.write(lock_office=office_id) as tx:
            office = tx.lock_office(office_id)
            assert office is not None
            expire_commands(tx, office_id, ttl_s, now)
            seq = int(office["last_cmd_seq"])
            fresh = tx.all("SELECT command_id FROM command WHERE office_id = ? AND "
                           "state = 'pending' ORDER BY created_at, command_id LIMIT ?",
                           (office_id, limit))
            for cmd in fresh:
                seq += 1
                tx.execute("UPDATE command SET cmd_seq = ?, state = 'fetched', fetched_at = ? "
                           "WHERE command_id = ?", (seq, stamp, cmd["command_id"]))
            if fresh:
                tx.execute("UPDATE office SET last_cmd_seq = ? WHERE office_id = ?",
                           (seq, office_id))
            rows = tx.all("SELECT cmd_seq, command_id, kind, payload, created_at FROM command "
                          "WHERE office_id = ? AND cmd_seq > ? ORDER BY cmd_seq LIMIT ?",
                          (office_id, after, limit))
        return [{"cmd_seq": int(r["cmd_seq"]), "command_id": r["command_id"],
                 "kind": r["kind"], "payload": json.loads(r["payload"]),
                 "created_at": r["created_at"]} for r in rows]
    return []
