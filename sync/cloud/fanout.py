"""The cloud's fan-out: holder views read once per office change, streams woken in waves.

Every open ``/tickets/by-hash/<hash>/events`` stream on the cloud is a
``Watch`` here. When a commit changes an office (a push applied, a command
expired, a cancel relayed; in this process or, on PostgreSQL, in another one
sharing the database: ``Changes.subscribe``), one thread reads the views of
every watched ticket of that office together — the tickets' rows, the waiting
tickets of their queues (positions are counted here, not by one ``COUNT`` per
ticket), the queues' and desks' payloads, the office's last push: a handful
of statements whatever the number of streams — and compares each with what
its streams last sent. Changes close together are read once.

Streams are woken in two waves: first those whose own ticket changed (it was
called, ended, its cancel was answered), then, once those have taken their
frame (or after ``FIRST_WAVE_S``), the rest whose view moved (a position, the
now serving). Each stream gets its frame ready-made: the same bytes the
per-stream read made before (``relay.compose_view``, ``sse``).

Every watched office is also read again every heartbeat, as each stream did
before, so a change whose wake-up was lost (a dropped LISTEN connection) is
seen within a heartbeat.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from . import relay
from .store import CloudStore, Tx

log = logging.getLogger("jonot_local.cloud")

FIRST_WAVE_S = 0.05  # how long the rest wait for the streams whose ticket changed
HAND_BATCH = 100  # frames encoded and handed out at a time in the second wave
GONE = "gone"  # what ``Fanout.next`` answers when the ticket left the cloud
# The parts of a view that are the ticket itself (not its place in the queue).
OWN = ("state", "version", "desk_id", "called_at", "recall_count", "cancel_pending", "message")


def sse(event: str, data: Any) -> str:
    """One Server-Sent Event as the cloud writes it."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def key_of(view: dict[str, Any]) -> tuple[Any, ...]:
    """What ``relay.view_key`` compares, whatever host the view's URL names (each stream
    has its own): the values but the freshness clock, in ``compose_view``'s order (so
    equal keys are equal views; a tuple, compared without encoding 2,000 views)."""
    return tuple(v for k, v in view.items() if k not in _NOT_KEY)


_NOT_KEY = frozenset(("updated_at_office", "stale", "url"))


def own_of(view: dict[str, Any]) -> tuple[Any, ...]:
    """What in a view is the ticket's own news (it was called, ended, a cancel answered)."""
    return tuple(view.get(k) for k in OWN)


class Watch:
    """One open stream: its ticket, what it last sent, and the frame waiting for it."""

    __slots__ = ("office_id", "ticket_id", "ticket_hash", "base_url", "key", "own",
                 "pending", "cond", "first")

    def __init__(self, office_id: str, ticket_id: str, ticket_hash: str, base_url: str,
                 first_view: dict[str, Any], cond: threading.Condition) -> None:
        self.office_id = office_id
        self.ticket_id = ticket_id
        self.ticket_hash = ticket_hash
        self.base_url = base_url
        self.key = key_of(first_view)
        self.own = own_of(first_view)
        self.pending: tuple[dict[str, Any], str] | str | None = None
        self.cond = cond
        self.first = False


class Fanout:
    """The watches of one cloud process and the thread that reads and delivers their views."""

    def __init__(self, store: CloudStore, stale_after_s: float, default_service_s: float,
                 heartbeat_s: float) -> None:
        self.store = store
        self.stale_after_s = stale_after_s
        self.default_service_s = default_service_s
        self.heartbeat_s = max(0.5, heartbeat_s)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the fan-out thread waits here
        self._first_done = threading.Condition(self._lock)
        self._first_left = 0
        self._watches: dict[str, dict[str, list[Watch]]] = {}  # office -> ticket -> watches
        self._dirty: set[str] = set()
        self._everything = False
        self._stop = False
        self.reads = 0  # office reads made (for tests and the bench)
        store.changes.subscribe(self._changed)
        self._thread = threading.Thread(target=self._run, name="cloud-fanout", daemon=True)
        self._thread.start()

    # -- streams ---------------------------------------------------------------------------

    def watch(self, office_id: str, ticket_id: str, ticket_hash: str, base_url: str,
              first_view: dict[str, Any], seen: tuple[int, int]) -> Watch:
        """Register a stream whose first view was read after ``seen`` (``Changes.seen``)."""
        with self._lock:
            w = Watch(office_id, ticket_id, ticket_hash, base_url, first_view,
                      threading.Condition(self._lock))
            self._watches.setdefault(office_id, {}).setdefault(ticket_id, []).append(w)
            if self.store.changes.seen(office_id) != seen:
                # A change came between the first view and now: read the office again.
                self._dirty.add(office_id)
                self._work.notify()
        return w

    def unwatch(self, w: Watch) -> None:
        with self._lock:
            tickets = self._watches.get(w.office_id, {})
            watches = tickets.get(w.ticket_id, [])
            if w in watches:
                watches.remove(w)
            if not watches:
                tickets.pop(w.ticket_id, None)
            if not tickets:
                self._watches.pop(w.office_id, None)
            self._took(w)

    def next(self, w: Watch, timeout: float) -> tuple[dict[str, Any], str] | str | None:
        """The stream's next (view, frame), ``GONE``, or ``None`` after ``timeout``."""
        with self._lock:
            if w.pending is None and not self._stop:
                w.cond.wait_for(lambda: w.pending is not None or self._stop, timeout)
            got, w.pending = w.pending, None
            self._took(w)
            return got

    def _took(self, w: Watch) -> None:
        if w.first:
            w.first = False
            self._first_left -= 1
            if self._first_left <= 0:
                self._first_done.notify()

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._work.notify_all()
            self._first_done.notify_all()
            for tickets in self._watches.values():
                for watches in tickets.values():
                    for w in watches:
                        w.cond.notify()
        self._thread.join(5)

    @property
    def watching(self) -> int:
        with self._lock:
            return sum(len(ws) for t in self._watches.values() for ws in t.values())

    # -- the fan-out thread -------------------------------------------------------------

    def _changed(self, office_ids: set[str] | None) -> None:
        with self._lock:
            if office_ids is None:
                self._everything = True
            else:
                self._dirty |= office_ids & self._watches.keys()
            if self._everything or self._dirty:
                self._work.notify()

    def _run(self) -> None:
        last_all = time.monotonic()
        while True:
            with self._lock:
                while not (self._stop or self._dirty or self._everything):
                    left = last_all + self.heartbeat_s - time.monotonic()
                    if left <= 0:
                        self._everything = True
                        break
                    self._work.wait(left)
                if self._stop:
                    return
                if self._everything:
                    offices = set(self._watches)
                    last_all = time.monotonic()
                else:
                    offices = self._dirty & self._watches.keys()
                self._dirty = set()
                self._everything = False
            for office_id in sorted(offices):
                try:
                    self._deliver(office_id)
                except Exception:  # noqa: BLE001 - the thread must outlive a bad read
                    log.exception("cloud: fan-out of office %s failed", office_id)
                    with self._lock:
                        self._dirty.add(office_id)  # again at the next change or heartbeat
                    time.sleep(0.5)

    def _deliver(self, office_id: str) -> None:
        with self._lock:
            ticket_ids = sorted(self._watches.get(office_id, {}))
        if not ticket_ids:
            return
        with self.store.read() as tx:
            views = read_views(tx, office_id, ticket_ids, stale_after_s=self.stale_after_s,
                               default_service_s=self.default_service_s)
        self.reads += 1
        first: list[tuple[Watch, dict[str, Any] | str]] = []
        rest: list[tuple[Watch, dict[str, Any]]] = []
        with self._lock:
            for ticket_id in ticket_ids:
                watches = self._watches.get(office_id, {}).get(ticket_id, [])
                view = views.get(ticket_id)
                if view is None:
                    first.extend((w, GONE) for w in watches)
                    continue
                key, own = key_of(view), own_of(view)
                for w in watches:
                    if w.key == key:
                        continue
                    changed_itself = w.own != own
                    w.key, w.own = key, own
                    if changed_itself:
                        first.append((w, view))
                    else:
                        rest.append((w, view))
        # Wave 1: the streams whose own ticket changed, their frames made first.
        self._hand([(w, v if isinstance(v, str) else _frame(w, v)) for w, v in first],
                   first_wave=True)
        if first and rest:
            deadline = time.monotonic() + FIRST_WAVE_S
            with self._lock:
                while self._first_left > 0 and not self._stop:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._first_done.wait(left)
        # Wave 2: the others whose view moved; one encoding per ticket and host, handed
        # out a batch at a time so the first streams write while the rest are encoded.
        made: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        for start in range(0, len(rest), HAND_BATCH):
            wave2: list[tuple[Watch, tuple[dict[str, Any], str] | str]] = []
            for w, view in rest[start:start + HAND_BATCH]:
                k = (w.ticket_id, w.base_url)
                if k not in made:
                    made[k] = _frame(w, view)
                wave2.append((w, made[k]))
            self._hand(wave2, first_wave=False)

    def _hand(self, items: Iterable[tuple[Watch, tuple[dict[str, Any], str] | str]],
              first_wave: bool) -> None:
        with self._lock:
            for w, item in items:
                w.pending = item
                if first_wave and not w.first:
                    w.first = True
                    self._first_left += 1
                w.cond.notify()


def _frame(w: Watch, view: dict[str, Any]) -> tuple[dict[str, Any], str]:
    dressed = {**view, "url": f"{w.base_url}/t/{w.ticket_hash}"}
    return dressed, sse("ticket", dressed)


def read_views(tx: Tx, office_id: str, ticket_ids: list[str], *, stale_after_s: float,
               default_service_s: float,
               now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """``relay.holder_view`` of many tickets of one office (``url`` left empty), by id.

    A ticket not found (or of another office) is left out.
    """
    now = now or datetime.now(UTC)
    where, params = tx.any_of("ticket_id", ticket_ids)
    rows = {r["ticket_id"]: r for r in tx.all(f"SELECT * FROM ticket WHERE {where}", params)
            if r["office_id"] == office_id}
    if not rows:
        return {}
    queue_ids = sorted({r["queue_id"] for r in rows.values()})
    desk_ids = sorted({r["desk_id"] for r in rows.values() if r["desk_id"]})
    where, params = tx.any_of("entity_id", queue_ids + desk_ids)
    entities = {(r["kind"], r["entity_id"]): json.loads(r["payload"]) for r in tx.all(
        f"SELECT kind, entity_id, payload FROM entity WHERE kind IN ('queue', 'desk') AND "
        f"{where}", params)}
    office = tx.one("SELECT last_push_at FROM office WHERE office_id = ?", (office_id,)) or {}
    # The waiting tickets of these queues, per queue and prio: their order keys (sorted,
    # without the missing ones) and how many they are, to count who is ahead as
    # holder_view's COUNT does: a higher prio, or the same prio and a lower order key.
    waiting: dict[str, dict[int, tuple[list[Any], int]]] = {}
    if any(r["state"] == "WAITING" for r in rows.values()):
        where, params = tx.any_of("queue_id", queue_ids)
        keys: dict[str, dict[int, list[Any]]] = {}
        for r in tx.all(f"SELECT queue_id, prio, order_key FROM ticket WHERE state = 'WAITING' "
                        f"AND {where}", params):
            keys.setdefault(r["queue_id"], {}).setdefault(int(r["prio"]), []).append(
                r["order_key"])
        waiting = {queue_id: {prio: (sorted(k for k in found if k is not None), len(found))
                              for prio, found in prios.items()}
                   for queue_id, prios in keys.items()}
    serving = {queue_id: relay.now_serving(tx, queue_id, entities.get(("queue", queue_id)) or {})
               for queue_id in queue_ids}
    views = {}
    for ticket_id, row in rows.items():
        ahead = None
        if row["state"] == "WAITING" and row["order_key"] is not None:
            prio = int(row["prio"])
            prios = waiting.get(row["queue_id"], {})
            same = prios.get(prio, ([], 0))[0]
            ahead = (sum(n for p, (_, n) in prios.items() if p > prio)
                     + bisect.bisect_left(same, row["order_key"]))
        views[ticket_id] = relay.compose_view(
            row, queue=entities.get(("queue", row["queue_id"])) or {},
            desk=entities.get(("desk", row["desk_id"])) if row["desk_id"] else None,
            last_push=office.get("last_push_at"), ahead=ahead,
            now_serving=serving[row["queue_id"]], url="", stale_after_s=stale_after_s,
            default_service_s=default_service_s, now=now)
    return views
