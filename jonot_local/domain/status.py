"""What a queue looks like now: positions, estimated waits, now serving, display state."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from ..db import Tx
from ..timeutil import parse_iso
from .model import CALLED, WAITING, Queue, Ticket


@dataclass(frozen=True)
class ServiceEstimator:
    """How long one service in a queue takes, learnt from its recent completed services.

    A service counts only if it lasted between ``min_s`` and ``max_s``: a call
    completed a few seconds after it was made was a slip, one left open for
    hours was forgotten. The estimate is the median of the last ``window``
    counted services, so one odd service does not move it. Until a queue has
    ``warmup`` counted services the median is blended with ``default_s``
    (with n of them, the data weighs n / ``warmup``).
    """

    default_s: float = 300.0
    min_s: float = 20.0
    max_s: float = 2 * 3600.0
    window: int = 20
    warmup: int = 5

    @classmethod
    def from_settings(cls, settings: Any) -> ServiceEstimator:
        """The estimator the office's settings describe."""
        return cls(default_s=settings.default_service_s, min_s=settings.service_min_s,
                   max_s=settings.service_max_s, window=settings.service_window,
                   warmup=settings.service_warmup)

    def counts(self, seconds: float) -> bool:
        """Whether a service of this length is believable enough to learn from."""
        return self.min_s <= seconds <= self.max_s

    def estimate(self, samples: list[float]) -> float | None:
        """The service time from recent service lengths (newest first); ``None``: no data."""
        counted = [s for s in samples if self.counts(s)][:max(1, self.window)]
        if not counted:
            return None
        median = statistics.median(counted)
        if len(counted) >= self.warmup:
            return float(median)
        weight = len(counted) / self.warmup
        return weight * median + (1 - weight) * self.default_s

    def learn(self, tx: Tx, queue_id: str) -> float | None:
        """Recompute the queue's cached service time (``avg_service_s``) and return it.

        Reads at most ``4 × window`` of the queue's newest interactions through
        ``ix_interactions_queue``, whatever the size of the history. The blend
        with ``default_s`` is the one of this moment: a new default reaches a
        queue still warming up at its next completed service.
        """
        rows = tx.all(
            "SELECT started_at, ended_at FROM (SELECT started_at, ended_at, outcome "
            "FROM interactions WHERE queue_id = ? ORDER BY id DESC LIMIT ?) "
            "WHERE outcome = 'completed' AND ended_at IS NOT NULL",
            (queue_id, 4 * max(1, self.window)))
        samples = [(parse_iso(r["ended_at"]) - parse_iso(r["started_at"])).total_seconds()
                   for r in rows]
        value = self.estimate(samples)
        tx.execute("UPDATE queues SET avg_service_s = ? WHERE id = ?", (value, queue_id))
        return value


def position(tx: Tx, ticket: Ticket) -> int | None:
    """1 + the waiting tickets served before this one; ``None`` unless it is waiting."""
    if ticket.state != WAITING:
        return None
    prio = 1 if ticket.priority == "priority" else 0
    # Two range counts on ix_tickets_waiting: the work is the number of people ahead.
    row = tx.one(
        "SELECT (SELECT COUNT(*) FROM tickets WHERE queue_id = ?1 AND state = 'WAITING' "
        "AND priority > ?2) + (SELECT COUNT(*) FROM tickets WHERE queue_id = ?1 "
        "AND state = 'WAITING' AND priority = ?2 AND order_key < ?3) AS n",
        (ticket.queue_id, prio, ticket.order_key),
    )
    return 1 + row["n"]


def position_at_tail(tx: Tx, ticket: Ticket) -> int:
    """The position of a waiting ticket that is the last of its priority in its queue.

    A ticket just issued is (its order key is the newest): then its position is
    the waiting count of its priority and above, read from ``queue_waiting``
    in one row, however long the queue. Call it in the transaction that issued
    the ticket, so that later joins are not counted.
    """
    prio = 1 if ticket.priority == "priority" else 0
    row = tx.one("SELECT COALESCE(SUM(n), 0) AS n FROM queue_waiting "
                 "WHERE queue_id = ? AND priority >= ?", (ticket.queue_id, prio))
    return max(1, row["n"])


def waiting_count(tx: Tx, queue_id: str) -> int:
    """How many tickets wait in the queue (kept by triggers in ``queue_waiting``)."""
    row = tx.one("SELECT COALESCE(SUM(n), 0) AS n FROM queue_waiting WHERE queue_id = ?",
                 (queue_id,))
    return row["n"]


def desks_serving(tx: Tx, queue_id: str) -> int:
    """How many desks serve the queue (at least 1, for the estimate)."""
    row = tx.one("SELECT COUNT(*) AS n FROM desk_queues WHERE queue_id = ?", (queue_id,))
    return max(1, row["n"])


def service_time_s(queue: Queue, default_s: float) -> float:
    """The queue's learnt service time (``ServiceEstimator``), or the default before data."""
    return queue.avg_service_s if queue.avg_service_s else default_s


def estimated_wait_s(tx: Tx, queue: Queue, people_ahead: int, default_s: float,
                     desks: int | None = None) -> int:
    """About how long ``people_ahead`` take: service time × people ÷ desks, whole seconds.

    ``desks``: how many desks serve the queue, when the caller has counted them.
    """
    if people_ahead <= 0:
        return 0
    return _wait_s(queue, people_ahead, default_s,
                   desks if desks is not None else desks_serving(tx, queue.id))


def _wait_s(queue: Queue, people_ahead: int, default_s: float, desks: int) -> int:
    if people_ahead <= 0:
        return 0
    per = service_time_s(queue, default_s)
    return int(math.ceil(per * people_ahead / max(1, desks)))


def now_serving(tx: Tx, queue: Queue) -> dict[str, Any] | None:
    """The code most recently called in the queue and where to, or ``None``."""
    if not queue.now_serving_ticket_id:
        return None
    row = tx.one(
        "SELECT t.id, t.code, t.state, t.called_at, t.desk_id, d.name AS desk_name "
        "FROM tickets t LEFT JOIN desks d ON d.id = t.desk_id WHERE t.id = ?",
        (queue.now_serving_ticket_id,))
    if row is None:
        return None
    return {"code": row["code"], "desk_id": row["desk_id"], "desk_name": row["desk_name"],
            "called_at": row["called_at"]}


def queue_summary(tx: Tx, queue: Queue, default_s: float) -> dict[str, Any]:
    """The public view of a queue: counts, now serving and the wait for a newcomer."""
    waiting = waiting_count(tx, queue.id)
    return {
        "id": queue.id,
        "name": queue.name,
        "prefix": queue.prefix,
        "colour": queue.colour,
        "open": queue.is_open,
        "sort_order": queue.sort_order,
        "waiting": waiting,
        "now_serving": now_serving(tx, queue),
        "estimated_wait_s": estimated_wait_s(tx, queue, waiting, default_s),
        "service_time_s": round(service_time_s(queue, default_s), 1),
    }


def ticket_status(tx: Tx, ticket: Ticket, default_s: float,
                  known_position: int | None = None) -> dict[str, Any]:
    """What the ticket holder sees besides the ticket: position, wait, now serving, desk.

    ``known_position``: the ticket's position when the caller has it already
    (``position_at_tail`` in the join's transaction).
    """
    row = dict(tx.one(
        "SELECT q.*, (SELECT COUNT(*) FROM desk_queues WHERE queue_id = q.id) AS desks_ "
        "FROM queues q WHERE q.id = ?", (ticket.queue_id,)))
    desks = row.pop("desks_")
    queue = Queue.from_row(row)
    pos = known_position if known_position is not None else position(tx, ticket)
    desk_name = None
    if ticket.state == CALLED and ticket.desk_id:
        row = tx.one("SELECT name FROM desks WHERE id = ?", (ticket.desk_id,))
        desk_name = row["name"] if row else None
    return status_of(queue, pos, desks, now_serving(tx, queue), default_s, desk_name)


def status_of(queue: Queue, pos: int | None, desks: int, serving: dict[str, Any] | None,
              default_s: float, desk_name: str | None = None) -> dict[str, Any]:
    """``ticket_status`` from what the caller has read already (no statement): the
    ticket's queue, position, the desks serving the queue, its ``now_serving``."""
    return {
        "position": pos,
        "estimated_wait_s": (_wait_s(queue, pos - 1, default_s, desks)
                             if pos is not None else None),
        "now_serving": serving,
        "desk_name": desk_name,
        "queue_name": queue.name,
    }


def recent_calls(tx: Tx, queue_ids: list[str] | None, limit: int = 6) -> list[dict[str, Any]]:
    """The last calls (newest first) across the given queues (``None``: all).

    Each queue's newest calls are read from ``ix_interactions_queue`` and merged
    here: one ``queue_id IN (…)`` query would sort every call of the history.
    """
    sql = ("SELECT i.id, i.started_at, t.code, t.queue_id, t.state, i.desk_id, "
           "d.name AS desk_name FROM interactions i JOIN tickets t ON t.id = i.ticket_id "
           "LEFT JOIN desks d ON d.id = i.desk_id ")
    if not queue_ids:
        rows = tx.all(sql + "ORDER BY i.id DESC LIMIT ?", (limit,))
    else:
        rows = []
        for queue_id in dict.fromkeys(queue_ids):
            rows.extend(tx.all(sql + "WHERE i.queue_id = ? ORDER BY i.id DESC LIMIT ?",
                               (queue_id, limit)))
        rows.sort(key=lambda r: r["id"], reverse=True)
        del rows[limit:]
    return [{"code": r["code"], "queue_id": r["queue_id"], "desk_id": r["desk_id"],
             "desk_name": r["desk_name"], "called_at": r["started_at"]}
            for r in rows]
