"""The sync protocol between an office and the cloud: one declaration both sides import.

Transport: JSON over HTTPS under ``/api/v1/sync/``, the office's bearer token
(``Authorization: Bearer <token>``, made by ``jonot-local cloud office add``).
The office id always comes from the token, never from a body.

``POST /api/v1/sync/push`` — the office sends its outbox in sequence order::

    {"install_id": str, "epoch_id": str, "head_seq": int,
     "entries": [Entry, ...],            # at most MAX_BATCH, seq strictly increasing
     "applied_cmd_through": int,         # highest cmd_seq the office has applied
     "office_time": "UTC ISO 8601"}      # for the cloud's clock-skew measure only

and gets ``{"acked_seq": int, "action": "ok" | "rotate" | "frozen",
"max_numbers": {queue_id: int}, "cloud_time": str, "message": str}``. The
office moves its cursor to ``acked_seq`` only from this answer. ``rotate``:
the cloud saw this epoch diverge (a restored database) — start a new epoch
and push a full snapshot; ``max_numbers`` tells the highest ticket number the
cloud has seen per queue so the office's counters move past them. ``frozen``:
another install, or a copy of this database, uses the same token — stop
pushing, alert the admin; nothing of the push was applied. An unknown token
gets 401 ``{"code": "unauthorized"}``, a revoked one 403 ``{"code": "revoked"}``.

An ``Entry`` is the full current snapshot of one entity (so replays and
skipped intermediate versions are harmless)::

    {"seq": int, "entity": one of ENTITIES, "entity_id": str, "version": int,
     "payload": {...}, "entry_hash": entry_hash(...)}

``GET /api/v1/sync/actions?after=N&wait=S&install_id=I`` — long-poll (S ≤ MAX_WAIT_S) for
commands relayed by the cloud, ``{"actions": [Action, ...]}`` with
``Action = {"cmd_seq": int, "command_id": str, "kind": "join" | "cancel",
"payload": {...}, "created_at": str}``, ``cmd_seq`` contiguous per office.
The office applies ``last_applied + 1`` only, records ``command_id`` in the
same transaction as the effect, and reports each outcome as a ``command``
entry in a later push.

Action payloads: ``join`` is ``{"ticket_id", "ticket_hash", "queue_id"}`` (the
cloud mints the id and the bearer hash; the office also reads ``hash``, an
older name); ``cancel`` is ``{"ticket_id"}`` and applies to a ``WAITING``
ticket only. A ``rejected`` result's ``reason`` is one of ``REJECT_REASONS``;
the cloud has words for each.

Versions: a ticket or queue entry carries the row's own ``version``; desk,
display and location entries carry the entry's ``seq`` (they have no version
column), and ``command`` entries version 1 with ``entity_id`` = the command id.
The cloud compares ``(generation, version)``, the generation being the rank of
the epoch, so a new epoch's snapshot always supersedes the old one.
``max_numbers`` is keyed by the queue whose counter gave the number: a ticket's
``origin_queue_id`` (a transferred ticket keeps its number).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

PREFIX = "/api/v1/sync"
MAX_BATCH = 500
MAX_WAIT_S = 25

#: What an outbox entry can describe. ``command`` entries carry the result of a
#: relayed action: ``{"cmd_seq", "command_id", "result": "applied"|"rejected",
#: "reason": str|None, "ticket_id": str|None}``. ``epoch`` entries (``entity_id`` =
#: the epoch id) frame an epoch's full snapshot: version 1 at seq 1, ``{"epoch_id",
#: "phase": "begin", "previous_epoch_id": str|None, "reason": one of EPOCH_REASONS}``;
#: version 2 after the snapshot's last entry, ``{"epoch_id", "phase": "end",
#: "tickets": int}``.
ENTITIES = ("location", "queue", "desk", "display", "ticket", "command", "epoch")
#: Why an office began an epoch (the ``reason`` of its ``epoch`` begin entry).
EPOCH_REASONS = ("first", "restore", "sync_off", "rotate")
ACTION_KINDS = ("join", "cancel")
REJECT_REASONS = ("queue_closed", "not_found", "invalid", "invalid_transition", "conflict",
                  "already_called", "already_completed", "already_skipped", "already_canceled",
                  "unknown_kind", "refused")
PUSH_ACTIONS = ("ok", "rotate", "frozen")

#: Ticket fields that leave the office. Names, phones, notes, extra fields and
#: staff-only labels stay in the office; the bearer hash is sent only as
#: ``hash_digest`` (``hash_digest()``), so a leaked cloud database opens no ticket.
TICKET_FIELDS = ("id", "queue_id", "number", "code", "state", "source", "priority",
                 "order_key", "desk_id", "recall_count", "created_at", "called_at",
                 "completed_at", "skipped_at", "canceled_at", "canceled_by", "updated_at",
                 "version", "origin_queue_id")


def hash_digest(ticket_hash: str) -> str:
    """What the cloud stores of a ticket's bearer hash: SHA-256, hex."""
    return hashlib.sha256(ticket_hash.encode()).hexdigest()


def entry_hash(entity: str, entity_id: str, version: int, payload: dict[str, Any]) -> str:
    """A stable digest of an entry's content: the same entry always hashes the same.

    The cloud compares it for a sequence number it has already applied: equal
    means a harmless duplicate, different means the office's history forked.
    """
    canonical = json.dumps([entity, entity_id, version, payload], sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
