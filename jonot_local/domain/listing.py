"""Staff ticket lists: filters, order and paging over the tickets table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..db import Tx
from .errors import ValidationError
from .model import SOURCES, STATES, Ticket

# Public sort keys ('-' for descending) and their ORDER BY; ties broken by id.
SORTS: dict[str, str] = {
    "created_at": "created_at", "-created_at": "created_at DESC",
    "number": "number", "-number": "number DESC",
    "updated_at": "updated_at", "-updated_at": "updated_at DESC",
    "called_at": "called_at", "-called_at": "called_at DESC",
    "queue": "priority DESC, order_key",
}
MAX_FILTER_VALUES = 100


@dataclass(frozen=True)
class TicketFilter:
    """Which tickets to list; an empty tuple or ``None`` does not filter.

    ``created_after`` (inclusive) and ``created_before`` (exclusive) are UTC
    timestamps in the stored ISO 8601 form.
    """

    queue_ids: Sequence[str] = ()
    states: Sequence[str] = ()
    sources: Sequence[str] = ()
    created_after: str | None = None
    created_before: str | None = None


def list_tickets(tx: Tx, flt: TicketFilter, *, sort: str = "-created_at", limit: int = 50,
                 offset: int = 0) -> tuple[int, list[Ticket]]:
    """``(total matching, one page of tickets)``. Raises ``ValidationError`` for bad input."""
    if sort not in SORTS:
        raise ValidationError.field("sort", f"must be one of {', '.join(SORTS)}")
    where: list[str] = []
    params: list[object] = []
    for name, column, values, allowed in (
            ("queue", "queue_id", flt.queue_ids, None),
            ("state", "state", flt.states, STATES),
            ("source", "source", flt.sources, SOURCES)):
        if not values:
            continue
        if len(values) > MAX_FILTER_VALUES:
            raise ValidationError.field(name, f"at most {MAX_FILTER_VALUES} values")
        if allowed is not None and any(v not in allowed for v in values):
            raise ValidationError.field(name, f"must be among {', '.join(allowed)}")
        where.append(f"{column} IN ({','.join('?' * len(values))})")
        params.extend(values)
    if flt.created_after:
        where.append("created_at >= ?")
        params.append(flt.created_after)
    if flt.created_before:
        where.append("created_at < ?")
        params.append(flt.created_before)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    total = tx.one(f"SELECT COUNT(*) AS n FROM tickets {clause}", params)["n"]
    rows = tx.all(f"SELECT * FROM tickets {clause} ORDER BY {SORTS[sort]}, id LIMIT ? OFFSET ?",
                  [*params, limit, offset])
    return total, [Ticket.from_row(r) for r in rows]
