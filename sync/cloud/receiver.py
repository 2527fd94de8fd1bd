"""Applying an office's push: idempotent, in sequence order, one office at a time.

One transaction per batch with the office's row locked (see ``store``):

- ``seq ≤ acked_seq``: the hash recorded for that seq equal → a duplicate,
  skipped; different → the epoch forked (a restored or copied database):
  ``rotate``, and this epoch is refused from then on. A ``head_seq`` behind
  ``acked_seq`` alone is no fork: a push delayed or duplicated on the way
  arrives after later ones were applied and is answered as a duplicate; an
  office really behind (restored with nothing new) sees an ``acked_seq`` past
  its head in the answer and starts a new epoch itself;
- ``seq = acked_seq + 1``: applied; an entry that can never be applied is
  dead-lettered and the cursor still moves past it;
- a gap: the batch stops there and the answer says ``acked_seq``.

Entities only move forward in ``(generation, version)``, the generation being
the rank of the epoch among the office's epochs, so a new epoch's snapshot
supersedes what an older one said, and its ``epoch`` end entry retires the
tickets of earlier epochs the office no longer has. A second install under one
token, or a second copy of one history (see ``_copy_alert``), freezes the
office with an alert before anything of it is applied. Timestamps in entries
are data; order comes from ``seq`` alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jonot_local.sync import protocol

from jonot_local.domain.errors import ValidationError
from jonot_local.timeutil import parse_iso, to_iso

from .store import CloudStore, Tx

TICKET_STATES = ("WAITING", "CALLED", "COMPLETED", "SKIPPED", "CANCELED")
#: Cloud-only states: a remote join not yet numbered, refused, or a ticket the office's
#: later snapshot no longer has.
CLOUD_STATES = ("PENDING", "REJECTED", "RETIRED")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_ID = 64


class Poison(Exception):
    """An entry that can never be applied (it is dead-lettered)."""


@dataclass
class PushResult:
    acked_seq: int
    action: str
    message: str
    max_numbers: dict[str, int]
    cloud_time: str
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"acked_seq": self.acked_seq, "action": self.action, "message": self.message,
                "max_numbers": self.max_numbers, "cloud_time": self.cloud_time,
                "applied": self.applied, "duplicates": self.duplicates,
                "dead_lettered": self.dead_lettered}


def _int(body: dict[str, Any], name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError.field(name, "must be a whole number ≥ 0")
    return value


def _id(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise ValidationError.field(name, f"must be a text of 1 to {MAX_ID} characters")
    return value


def check_push(body: dict[str, Any]) -> dict[str, Any]:
    """The push body's envelope checked (entries one by one later); 422 when malformed."""
    _id(body, "install_id")
    _id(body, "epoch_id")
    _int(body, "head_seq")
    _int(body, "applied_cmd_through", 0)
    entries = body.get("entries", [])
    if not isinstance(entries, list) or len(entries) > protocol.MAX_BATCH:
        raise ValidationError.field("entries", f"must be a list of at most {protocol.MAX_BATCH}")
    last = 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValidationError.field(f"entries[{i}]", "must be an object")
        seq = entry.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= last:
            raise ValidationError.field(f"entries[{i}].seq",
                                        "must be a whole number > 0, strictly increasing")
        if not isinstance(entry.get("entry_hash"), str):
            raise ValidationError.field(f"entries[{i}].entry_hash", "is required")
        last = seq
    office_time = body.get("office_time")
    if office_time is not None and not isinstance(office_time, str):
        raise ValidationError.field("office_time", "must be an ISO 8601 time")
    return body


def apply_push(store: CloudStore, office_id: str, body: dict[str, Any],
               now: datetime | None = None) -> PushResult:
    """Apply one checked push for the office the token named; what to answer."""
    now = now or datetime.now(UTC)
    stamp = to_iso(now)
    install_id, epoch_id = body["install_id"], body["epoch_id"]
    with store.write(lock_office=office_id) as tx:
        office = tx.lock_office(office_id)
        if office is None or office["status"] == "revoked":
            raise PermissionError("revoked")
        tx.wake(office_id)

        def answer(acked: int, action: str, message: str, **counts: int) -> PushResult:
            return PushResult(acked, action, message, max_numbers(tx, office_id), stamp,
                              **counts)

        # Nothing of a push is taken, not even its clock or command cursor, before it is
        # known to come from the office's one install and one line of history.
        if office["status"] == "frozen":
            return answer(0, "frozen", office["alert"] or "This office is frozen.")
        alert = _install_alert(tx, office, install_id, stamp) \
            or _copy_alert(tx, office_id, epoch_id, body.get("entries", []))
        if alert:
            freeze_office(tx, office_id, alert)
            return answer(0, "frozen", alert)
        tx.execute("UPDATE office SET last_push_at = ?, clock_skew_s = ?, "
                   "applied_cmd_through = ? WHERE office_id = ?",
                   (stamp, _skew(body.get("office_time"), now),
                    _int(body, "applied_cmd_through", 0), office_id))
        epoch = _epoch(tx, office, epoch_id, install_id, stamp)
        acked = int(epoch["acked_seq"])
        if epoch["status"] != "live":
            return answer(acked, "rotate", "This epoch is no longer current here: start a new "
                                           "epoch and push a full snapshot.")
        applied = duplicates = dead = 0
        generation = int(epoch["generation"])
        entries = body.get("entries", [])
        seen = _seen_hashes(tx, office_id, epoch_id, entries, acked)
        batch = _TicketBatch(tx, office_id, generation, stamp, entries, acked)
        done: list[tuple[str, str, int, str]] = []
        for entry in entries:
            seq = entry["seq"]
            if seq <= acked:
                if seq in seen and seen[seq] != entry["entry_hash"]:
                    batch.flush()
                    _record_applied(tx, done)
                    return _fork(tx, office_id, epoch_id, acked, answer,
                                 f"entry {seq} differs from the one applied")
                duplicates += 1
                continue
            if seq != acked + 1:
                break
            try:
                _apply_entry(tx, office_id, generation, entry, stamp, batch)
                applied += 1
            except Poison as exc:
                dead += 1
                batch.flush()
                tx.execute(
                    "INSERT INTO dead_letter (office_id, epoch_id, seq, entity, entity_id, "
                    "reason, entry, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (office_id, epoch_id, seq) DO NOTHING",
                    (office_id, epoch_id, seq, str(entry.get("entity"))[:32],
                     str(entry.get("entity_id"))[:MAX_ID], str(exc),
                     json.dumps(entry)[:100_000], stamp))
            done.append((office_id, epoch_id, seq, entry["entry_hash"]))
            acked = seq
        batch.flush()
        _record_applied(tx, done)
        tx.execute("UPDATE office_epoch SET acked_seq = ? WHERE office_id = ? AND epoch_id = ?",
                   (acked, office_id, epoch_id))
        return answer(acked, "ok", "", applied=applied, duplicates=duplicates,
                      dead_lettered=dead)


def _seen_hashes(tx: Tx, office_id: str, epoch_id: str, entries: list[dict[str, Any]],
                 acked: int) -> dict[int, str]:
    """The hashes recorded for the entries of this push already applied (one query)."""
    old = [e["seq"] for e in entries if e["seq"] <= acked]
    if not old:
        return {}
    rows = tx.all("SELECT seq, entry_hash FROM applied_entry WHERE office_id = ? "
                  "AND epoch_id = ? AND seq >= ? AND seq <= ?",
                  (office_id, epoch_id, min(old), max(old)))
    return {int(r["seq"]): r["entry_hash"] for r in rows}


def _record_applied(tx: Tx, done: list[tuple[str, str, int, str]]) -> None:
    """Record the entries taken, in one ``executemany``."""
    tx.executemany("INSERT INTO applied_entry (office_id, epoch_id, seq, entry_hash) "
                   "VALUES (?, ?, ?, ?)", done)
    done.clear()


def _skew(office_time: Any, now: datetime) -> float | None:
    if not isinstance(office_time, str):
        return None
    try:
        return round((parse_iso(office_time) - now).total_seconds(), 3)
    except (ValueError, OverflowError):
        return None


def _fork(tx: Tx, office_id: str, epoch_id: str, acked: int, answer: Any,
          why: str) -> PushResult:
    tx.execute("UPDATE office_epoch SET status = 'forked' WHERE office_id = ? AND epoch_id = ?",
               (office_id, epoch_id))
    return answer(acked, "rotate", f"This office's history forked ({why}): a restored or "
                                   "copied database. Start a new epoch and push a full "
                                   "snapshot.")


def freeze_office(tx: Tx, office_id: str, alert: str) -> None:
    """Stop taking anything from this office's token until an admin re-enrols it."""
    tx.execute("UPDATE office SET status = 'frozen', alert = ? WHERE office_id = ? "
               "AND status = 'active'", (alert, office_id))


def install_alert(office: dict[str, Any], install_id: str) -> str | None:
    """The alert when ``install_id`` is not the install this office's token belongs to."""
    current = office["install_id"]
    if current is None or current == install_id:
        return None
    return (f"Two installations use this office's token: {current} and {install_id} "
            "(the same token set up on a second computer?). Sync is frozen and nothing of "
            "the second was taken: re-enrol the one that is this office "
            "(jonot-local cloud office reenrol).")


def _install_alert(tx: Tx, office: dict[str, Any], install_id: str, stamp: str) -> str | None:
    """Why this install may not push (words), or None; the first install is taken.

    The token belongs to the first install that pushed with it: another one is
    frozen before anything of it is applied, never merged. Moving an office to a
    new machine keeps its install (it is in the database a backup carries); a
    fresh install takes over only after ``reenrol``.
    """
    alert = install_alert(office, install_id)
    if alert or office["install_id"] == install_id:
        return alert
    office_id = office["office_id"]
    tx.execute("INSERT INTO office_install (office_id, install_id, first_seen) VALUES (?, ?, ?) "
               "ON CONFLICT (office_id, install_id) DO NOTHING", (office_id, install_id, stamp))
    tx.execute("UPDATE office SET install_id = ? WHERE office_id = ?", (install_id, office_id))
    return None


_COPY_ALERT = ("Two copies of this office's database push under its token (a copied disk or "
               "virtual machine?): two histories went on from epoch {old}. Sync is frozen "
               "and nothing of the second was taken: switch off one copy and re-enrol the "
               "other (jonot-local cloud office reenrol).")


def _copy_alert(tx: Tx, office_id: str, epoch_id: str,
                entries: list[dict[str, Any]]) -> str | None:
    """Why this push is a second copy of one history (words), or None.

    An epoch that began from another (its ``epoch`` begin entry names it, for any
    reason but a restore) marks it ``continued``: that history ended there. A
    push in a continued epoch is answered ``rotate`` (it may be a late copy of a
    request the office gave up on); a second new epoch continuing the same one
    can only come from a copy of the database, so it is refused before anything
    of it is applied. A restore starts over from an older point on purpose and
    is not counted.
    """
    if tx.one("SELECT 1 AS x FROM office_epoch WHERE office_id = ? AND epoch_id = ?",
              (office_id, epoch_id)) is not None:
        return None
    first = entries[0] if entries else None
    if not first or first.get("seq") != 1 or first.get("entity") != "epoch" \
            or not isinstance(first.get("payload"), dict):
        return None
    begin = first["payload"]
    previous = begin.get("previous_epoch_id")
    if not isinstance(previous, str) or begin.get("reason") == "restore":
        return None
    prev = tx.one("SELECT status FROM office_epoch WHERE office_id = ? AND epoch_id = ?",
                  (office_id, previous))
    if prev is None:
        return None
    if prev["status"] == "continued":
        return _COPY_ALERT.format(old=previous)
    tx.execute("UPDATE office_epoch SET status = 'continued' WHERE office_id = ? "
               "AND epoch_id = ?", (office_id, previous))
    return None


def _epoch(tx: Tx, office: dict[str, Any], epoch_id: str, install_id: str,
           stamp: str) -> dict[str, Any]:
    """The cursor of this epoch; a new epoch becomes the office's current one."""
    office_id = office["office_id"]
    row = tx.one("SELECT * FROM office_epoch WHERE office_id = ? AND epoch_id = ?",
                 (office_id, epoch_id))
    if row is not None:
        if office["epoch_id"] != epoch_id:
            row["status"] = "superseded"
        return row
    top = tx.one("SELECT MAX(generation) AS g FROM office_epoch WHERE office_id = ?",
                 (office_id,))
    generation = int((top or {}).get("g") or 0) + 1
    tx.execute("INSERT INTO office_epoch (office_id, epoch_id, generation, acked_seq, status, "
               "install_id, created_at) VALUES (?, ?, ?, 0, 'live', ?, ?)",
               (office_id, epoch_id, generation, install_id, stamp))
    tx.execute("UPDATE office SET epoch_id = ? WHERE office_id = ?", (epoch_id, office_id))
    return {"generation": generation, "acked_seq": 0, "status": "live"}


def max_numbers(tx: Tx, office_id: str) -> dict[str, int]:
    """The highest ticket number the cloud has seen, per queue of this office."""
    rows = tx.all("SELECT queue_id, max_number FROM queue_number WHERE office_id = ?",
                  (office_id,))
    return {r["queue_id"]: int(r["max_number"]) for r in rows}


# -- entries ---------------------------------------------------------------------------------

def _apply_entry(tx: Tx, office_id: str, generation: int, entry: dict[str, Any],
                 stamp: str, batch: _TicketBatch) -> None:
    entity, entity_id = entry.get("entity"), entry.get("entity_id")
    version, payload = entry.get("version"), entry.get("payload")
    if not isinstance(entity, str) or entity not in protocol.ENTITIES:
        raise Poison(f"unknown entity {str(entity)[:32]!r}")
    if not isinstance(entity_id, str) or not 0 < len(entity_id) <= MAX_ID:
        raise Poison("entity_id must be a text of 1 to 64 characters")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise Poison("version must be a whole number")
    if not isinstance(payload, dict):
        raise Poison("payload must be an object")
    if protocol.entry_hash(entity, entity_id, version, payload) != entry["entry_hash"]:
        raise Poison("entry_hash does not match the entry's content")
    if entity == "ticket":
        batch.add(entity_id, version, payload)
        return
    # Tickets before this entry are written first: a command's result or an entity
    # applies to the state the entries before it left.
    batch.flush()
    if entity == "command":
        _apply_command_result(tx, office_id, payload, stamp)
    elif entity == "epoch":
        if payload.get("phase") == "end":
            _retire_earlier_tickets(tx, office_id, generation, stamp)
    else:
        _apply_entity(tx, office_id, generation, entity, entity_id, version, payload, stamp)
        if entity == "queue":
            batch.queue_owner[entity_id] = office_id


def _retire_earlier_tickets(tx: Tx, office_id: str, generation: int, stamp: str) -> None:
    """An epoch's full snapshot is complete: a ticket still waiting or called in an
    earlier epoch is one this office no longer has (restored from an older backup,
    or a copy that lost): shown as ``RETIRED`` with the reason, never left waiting."""
    tx.execute("UPDATE ticket SET state = 'RETIRED', note = 'office_restored', "
               "cancel_pending = 0, updated_at = ? WHERE office_id = ? AND generation < ? "
               "AND state IN ('WAITING', 'CALLED')", (stamp, office_id, generation))


_FORWARD = ("(({t}.generation < excluded.generation) OR ({t}.generation = excluded.generation "
            "AND {t}.version < excluded.version)) AND {t}.office_id = excluded.office_id")


def _owner(tx: Tx, sql: str, entity_id: str) -> None | str:
    row = tx.one(sql, (entity_id,))
    return None if row is None else row["office_id"]


def _apply_entity(tx: Tx, office_id: str, generation: int, kind: str, entity_id: str,
                  version: int, payload: dict[str, Any], stamp: str) -> None:
    owner = _owner(tx, f"SELECT office_id FROM entity WHERE kind = '{kind}' AND entity_id = ?",
                   entity_id)
    if owner not in (None, office_id):
        raise Poison(f"{kind} {entity_id} belongs to another office")
    tx.execute(
        "INSERT INTO entity (kind, entity_id, office_id, generation, version, payload, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, entity_id) DO UPDATE SET "
        "generation = excluded.generation, version = excluded.version, "
        "payload = excluded.payload, updated_at = excluded.updated_at WHERE "
        + _FORWARD.format(t="entity"),
        (kind, entity_id, office_id, generation, version, json.dumps(payload), stamp))


_TICKET_UPSERT = (
    "INSERT INTO ticket (ticket_id, office_id, queue_id, hash_digest, generation, version, "
    "number, code, state, prio, order_key, desk_id, called_at, payload, note, "
    "cancel_pending, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?)"
    " ON CONFLICT (ticket_id) DO UPDATE SET queue_id = excluded.queue_id, "
    "hash_digest = COALESCE(ticket.hash_digest, excluded.hash_digest), "
    "generation = excluded.generation, version = excluded.version, "
    "number = excluded.number, code = excluded.code, state = excluded.state, "
    "prio = excluded.prio, order_key = excluded.order_key, desk_id = excluded.desk_id, "
    "called_at = excluded.called_at, payload = excluded.payload, note = NULL, "
    "cancel_pending = CASE WHEN excluded.state IN ('WAITING') "
    "THEN ticket.cancel_pending ELSE 0 END, updated_at = excluded.updated_at WHERE "
    + _FORWARD.format(t="ticket"))
_NUMBER_UPSERT = (
    "INSERT INTO queue_number (queue_id, office_id, max_number) VALUES (?, ?, ?) "
    "ON CONFLICT (queue_id) DO UPDATE SET max_number = CASE WHEN "
    "excluded.max_number > queue_number.max_number THEN excluded.max_number "
    "ELSE queue_number.max_number END WHERE queue_number.office_id = excluded.office_id")
_IN_CHUNK = 500


class _TicketBatch:
    """The ticket entries of one push, checked one by one and written together.

    What the checks need (which office owns each ticket and queue, which ticket
    holds each hash digest) is read for the whole push in three queries and
    kept up to date as entries are taken; the upserts go out in entry order
    with one ``executemany`` (pipelined on PostgreSQL) whenever an entry of
    another kind comes, and at the end. Per queue only the highest number of
    the batch is written. The effect is that of applying them one at a time.
    """

    def __init__(self, tx: Tx, office_id: str, generation: int, stamp: str,
                 entries: list[dict[str, Any]], acked: int) -> None:
        self.tx, self.office_id, self.generation, self.stamp = tx, office_id, generation, stamp
        self.rows: list[tuple[Any, ...]] = []
        self.numbers: dict[str, int] = {}
        ticket_ids, queue_ids, digests = set(), set(), set()
        for e in entries:
            payload = e.get("payload")
            if e["seq"] <= acked or e.get("entity") != "ticket" or not isinstance(payload, dict):
                continue
            if isinstance(e.get("entity_id"), str):
                ticket_ids.add(e["entity_id"])
            if isinstance(payload.get("queue_id"), str):
                queue_ids.add(payload["queue_id"])
            if isinstance(payload.get("hash_digest"), str):
                digests.add(payload["hash_digest"])
        self.ticket_owner = {r["ticket_id"]: r["office_id"] for r in self._many(
            "SELECT ticket_id, office_id FROM ticket WHERE ", "ticket_id", ticket_ids)}
        self.queue_owner: dict[str, str] = {r["entity_id"]: r["office_id"] for r in self._many(
            "SELECT entity_id, office_id FROM entity WHERE kind = 'queue' AND ", "entity_id",
            queue_ids)}
        self.digest_owner = {r["hash_digest"]: r["ticket_id"] for r in self._many(
            "SELECT hash_digest, ticket_id FROM ticket WHERE ", "hash_digest", digests)}

    def _many(self, sql: str, column: str, keys: set[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        ordered = sorted(keys)
        for i in range(0, len(ordered), _IN_CHUNK):
            where, params = self.tx.any_of(column, ordered[i:i + _IN_CHUNK])
            found += self.tx.all(sql + where, params)
        return found

    def add(self, ticket_id: str, version: int, payload: dict[str, Any]) -> None:
        """Check one ticket entry (``Poison`` if it can never apply) and queue its upsert."""
        office_id = self.office_id
        if payload.get("id", ticket_id) != ticket_id:
            raise Poison("the payload's id differs from entity_id")
        queue_id, state = payload.get("queue_id"), payload.get("state")
        if not isinstance(queue_id, str) or not 0 < len(queue_id) <= MAX_ID:
            raise Poison("a ticket needs its queue_id")
        if state not in TICKET_STATES:
            raise Poison(f"unknown ticket state {str(state)[:32]!r}")
        number = payload.get("number")
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise Poison("number must be a whole number")
        digest = payload.get("hash_digest")
        if digest is not None and (not isinstance(digest, str) or not _DIGEST.match(digest)):
            raise Poison("hash_digest must be 64 hex digits")
        order_key = payload.get("order_key")
        if order_key is not None and not isinstance(order_key, int | float):
            raise Poison("order_key must be a number")
        owner = self.ticket_owner.get(ticket_id)
        if owner is not None and owner != office_id:
            raise Poison(f"ticket {ticket_id} belongs to another office")
        if self.queue_owner.get(queue_id, office_id) != office_id:
            raise Poison(f"queue {queue_id} belongs to another office")
        if digest is not None and owner is None and digest in self.digest_owner:
            raise Poison("another ticket has this hash")
        kept = {k: payload[k] for k in protocol.TICKET_FIELDS if k in payload}
        prio = 1 if payload.get("priority") in ("priority", 1, True) else 0
        self.rows.append(
            (ticket_id, office_id, queue_id, digest, self.generation, version, number,
             payload.get("code"), state, prio, order_key, payload.get("desk_id"),
             payload.get("called_at"), json.dumps(kept), self.stamp))
        if owner is None:
            self.ticket_owner[ticket_id] = office_id
            if digest is not None:
                self.digest_owner[digest] = ticket_id
        # Numbers come from the counter of the queue a ticket was first made in (a
        # transferred ticket keeps its number), so that is the queue they are counted under.
        origin = payload.get("origin_queue_id")
        number_queue = origin if isinstance(origin, str) and 0 < len(origin) <= MAX_ID \
            else queue_id
        if number is not None and number > self.numbers.get(number_queue, number - 1):
            self.numbers[number_queue] = number

    def flush(self) -> None:
        """Write the upserts taken so far."""
        # executemany, not one multi-row statement: a statement may not upsert one
        # row twice, and psycopg pipelines these (it measured faster, too).
        if self.rows:
            self.tx.executemany(_TICKET_UPSERT, self.rows)
            self.rows = []
        if self.numbers:
            self.tx.executemany(_NUMBER_UPSERT, [(q, self.office_id, n) for q, n
                                                 in sorted(self.numbers.items())])
            self.numbers = {}


def _apply_command_result(tx: Tx, office_id: str, payload: dict[str, Any], stamp: str) -> None:
    command_id, result = payload.get("command_id"), payload.get("result")
    if not isinstance(command_id, str) or result not in ("applied", "rejected"):
        raise Poison("a command entry needs command_id and result applied|rejected")
    cmd = tx.one("SELECT * FROM command WHERE command_id = ? AND office_id = ?",
                 (command_id, office_id))
    if cmd is None:
        raise Poison(f"no command {command_id[:MAX_ID]} was relayed to this office")
    if cmd["state"] in ("applied", "rejected"):
        return  # the office's record of it, again: the first result stands
    reason = payload.get("reason")
    reason = str(reason)[:200] if reason is not None else None
    # The bearer hash was needed only to deliver the join; the cloud keeps its digest.
    tx.execute("UPDATE command SET state = ?, result = ?, reason = ?, resolved_at = ?, "
               "payload = ? WHERE command_id = ?",
               (result, result, reason, stamp,
                json.dumps({k: v for k, v in json.loads(cmd["payload"]).items()
                           if k not in ("ticket_hash", "hash")}),
                command_id))
    if cmd["kind"] == "cancel":
        tx.execute("UPDATE ticket SET cancel_pending = 0, note = ? WHERE ticket_id = ?",
                   (reason if result == "rejected" else None, cmd["ticket_id"]))
    elif cmd["kind"] == "join" and result == "rejected":
        tx.execute("UPDATE ticket SET state = 'REJECTED', note = ? WHERE ticket_id = ? "
                   "AND state = 'PENDING'", (reason or "refused", cmd["ticket_id"]))
