"""The office's holder feed: the views of every watched ticket, read once per batch of changes.

Each open ``/tickets/by-hash/<hash>/events`` stream watches its ticket here.
When a stream wakes for changes up to the hub's sequence number ``seq`` and
asks for its ticket's view, the first stream to ask reads the views of every
watched ticket those changes may touch in one short read (a handful of
statements whatever the number of tickets: the tickets, their positions by one
window query, their queues and desks) and the others share the result, so a
call that moves 500 holders' positions costs one read, not 500. Each view's
JSON is encoded once per host the stream was reached at (the view carries the
page's absolute URL) and the frame is made from it.

The views are exactly ``holder_view``'s (``tests/test_streams.py`` compares
them); a view is kept only while its ticket is watched.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..db import Store
from ..domain import status
from ..domain.model import CALLED, WAITING, Queue, Ticket
from ..events import EventHub
from ..settings import Settings
from .common import ticket_json


def touches(event: dict[str, Any], ticket_id: str, queue_id: str | None) -> bool:
    """Whether ``event`` may change the view of ``ticket_id`` (in ``queue_id``)."""
    return (event.get("ticket_id") == ticket_id or event.get("kind") == "desk"
            or (queue_id is not None and (event.get("queue_id") == queue_id
                                          or event.get("prev_queue_id") == queue_id)))


class HolderFeed:
    """Watched tickets' holder views, current up to a hub sequence number, shared by streams."""

    def __init__(self, store: Store, hub: EventHub, settings: Settings) -> None:
        self.store = store
        self.hub = hub
        self.settings = settings
        self._watched: dict[str, int] = {}  # ticket id -> open streams
        self._views: dict[str, dict[str, Any]] = {}  # without the two URLs
        # ticket id -> host -> the view with its URLs, and its JSON
        self._encoded: dict[str, dict[str, tuple[dict[str, Any], str]]] = {}
        self._seq = 0  # the views held are current for every event up to this one
        self._lock = threading.Lock()  # the dicts
        self._build = threading.Lock()  # one reader of the database at a time
        self.reads = 0  # batch reads made (for tests and the bench)

    # -- streams ------------------------------------------------------------------------

    def watch(self, ticket_id: str) -> None:
        with self._lock:
            self._watched[ticket_id] = self._watched.get(ticket_id, 0) + 1

    def unwatch(self, ticket_id: str) -> None:
        with self._lock:
            left = self._watched.get(ticket_id, 0) - 1
            if left > 0:
                self._watched[ticket_id] = left
                return
            self._watched.pop(ticket_id, None)
            self._views.pop(ticket_id, None)  # unwatched changes would leave it stale
            self._encoded.pop(ticket_id, None)

    def view(self, ticket_id: str, seq: int,
             base_url: str) -> tuple[dict[str, Any], str] | None:
        """The ticket's view reflecting every event up to ``seq``, and its JSON text.

        ``base_url``: the scheme and host the stream was reached at (for ``url``);
        ``None`` when the ticket is gone.
        """
        found = self._ready(ticket_id, seq, base_url)
        if found is None:
            with self._build:
                found = self._ready(ticket_id, seq, base_url)
                if found is None:
                    self._refresh(ticket_id)
                    found = self._ready(ticket_id, 0, base_url)
                    with self._lock:
                        if ticket_id not in self._watched:  # not kept: nothing refreshes it
                            self._views.pop(ticket_id, None)
                            self._encoded.pop(ticket_id, None)
        return found

    def _ready(self, ticket_id: str, seq: int, base_url: str) -> tuple[dict[str, Any], str] | None:
        with self._lock:
            if self._seq < seq:
                return None
            view = self._views.get(ticket_id)
            if view is None:
                return None
            hosts = self._encoded.setdefault(ticket_id, {})
            found = hosts.get(base_url)
            if found is None:
                ticket_hash = view["hash"]
                dressed = {**view, "url": base_url.rstrip("/") + "/t/" + ticket_hash,
                           "cloud_url": self._cloud_url(ticket_hash)}
                found = hosts[base_url] = (dressed, json.dumps(dressed, separators=(",", ":")))
            return found

    def _cloud_url(self, ticket_hash: str) -> str | None:
        settings = self.settings
        if not (settings.cloud_url and settings.cloud_token):
            return None
        return settings.cloud_url.rstrip("/") + "/t/" + ticket_hash

    def _refresh(self, wanted: str) -> None:
        """Read the views the events since the last read may have changed (under ``_build``)."""
        upto = self.hub.last_seq  # first: everything up to it is committed, so in the read
        with self._lock:
            events = self.hub.since(self._seq)
            stale = []
            for ticket_id in self._watched:
                view = self._views.get(ticket_id)
                if view is None or events is None or any(
                        touches(e, ticket_id, view["queue_id"]) for _, e in events):
                    stale.append(ticket_id)
            if wanted not in stale:
                stale.append(wanted)
        fresh = holder_views(self.store, stale, self.settings.default_service_s)
        self.reads += 1
        with self._lock:
            for ticket_id in stale:
                self._encoded.pop(ticket_id, None)
                if ticket_id in fresh and (ticket_id in self._watched or ticket_id == wanted):
                    self._views[ticket_id] = fresh[ticket_id]
                else:
                    self._views.pop(ticket_id, None)
            self._seq = max(self._seq, upto)


def holder_views(store: Store, ticket_ids: list[str],
                 default_service_s: float) -> dict[str, dict[str, Any]]:
    """``holder_view`` of many tickets at once (without ``url`` and ``cloud_url``), by id.

    Tickets that do not exist are left out.
    """
    if not ticket_ids:
        return {}
    ids = json.dumps(ticket_ids)
    with store.read() as tx:
        rows = tx.all("SELECT * FROM tickets WHERE id IN (SELECT value FROM json_each(?))",
                      (ids,))
        found = [Ticket.from_row(r) for r in rows]
        if not found:
            return {}
        queue_ids = json.dumps(sorted({t.queue_id for t in found}))
        queues: dict[str, tuple[Queue, int]] = {}
        for row in tx.all(
                "SELECT q.*, (SELECT COUNT(*) FROM desk_queues WHERE queue_id = q.id) AS "
                "desks_ FROM queues q WHERE q.id IN (SELECT value FROM json_each(?))",
                (queue_ids,)):
            data = dict(row)
            desks = data.pop("desks_")
            queues[data["id"]] = (Queue.from_row(data), desks)
        serving = {qid: status.now_serving(tx, queue) for qid, (queue, _) in queues.items()}
        # The rank among the queue's waiting tickets, priority first, is status.position:
        # 1 + those of higher priority + those of the same priority with a lower order key.
        positions: dict[str, int] = {}
        waiting = [t.id for t in found if t.state == WAITING]
        if waiting:
            positions = {r["id"]: r["pos"] for r in tx.all(
                "SELECT id, pos FROM (SELECT id, RANK() OVER (PARTITION BY queue_id "
                "ORDER BY priority DESC, order_key) AS pos FROM tickets WHERE state = "
                "'WAITING' AND queue_id IN (SELECT value FROM json_each(?))) "
                "WHERE id IN (SELECT value FROM json_each(?))", (queue_ids, json.dumps(waiting)))}
        desk_ids = sorted({t.desk_id for t in found if t.state == CALLED and t.desk_id})
        desk_names = {r["id"]: r["name"] for r in tx.all(
            "SELECT id, name FROM desks WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(desk_ids),))} if desk_ids else {}
        out: dict[str, dict[str, Any]] = {}
        for ticket in found:
            queue, desks = queues[ticket.queue_id]
            pos = positions.get(ticket.id) if ticket.state == WAITING else None
            data = ticket_json(ticket, private=False)
            data.update({
                "position": pos,
                "estimated_wait_s": (
                    status.estimated_wait_s(tx, queue, pos - 1, default_service_s, desks)
                    if pos is not None else None),
                "now_serving": serving[ticket.queue_id],
                "desk_name": (desk_names.get(ticket.desk_id) if ticket.state == CALLED
                              and ticket.desk_id else None),
                "queue_name": queue.name,
            })
            out[ticket.id] = data
    return out
