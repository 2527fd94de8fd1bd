"""Plain records of the domain, built from database rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

WAITING, CALLED, COMPLETED, SKIPPED, CANCELED = (
    "WAITING", "CALLED", "COMPLETED", "SKIPPED", "CANCELED")
STATES = (WAITING, CALLED, COMPLETED, SKIPPED, CANCELED)
TERMINAL = frozenset({COMPLETED, SKIPPED, CANCELED})
SOURCES = ("kiosk", "desk", "remote", "appointment")
# The outcomes of a call are declared by the state machine: ``tickets.OUTCOMES``.


def format_code(prefix: str, number: int) -> str:
    """What people see: the prefix and the number padded to three digits (``A007``, ``A1042``)."""
    return f"{prefix}{number:03d}"


@dataclass(frozen=True)
class Ticket:
    id: str
    queue_id: str
    number: int
    code: str
    hash: str
    state: str
    source: str
    name: str | None
    phone: str | None
    extra: list[dict[str, str]]
    labels: list[dict[str, str]]
    notes: str
    priority: str
    order_key: float
    desk_id: str | None
    called_by: str | None
    recall_count: int
    created_at: str
    called_at: str | None
    completed_at: str | None
    skipped_at: str | None
    canceled_at: str | None
    canceled_by: str | None
    updated_at: str
    version: int
    origin_queue_id: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Ticket:
        data = dict(row)
        extra, labels = data["extra"], data["labels"]
        data["extra"] = [] if extra == "[]" else json.loads(extra)  # most tickets have none
        data["labels"] = [] if labels == "[]" else json.loads(labels)
        data["priority"] = "priority" if data["priority"] else "normal"
        return cls(**data)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        # Field by field: ``dataclasses.asdict`` deep-copies every value recursively,
        # about 30 µs a ticket, paid for every ticket of every response.
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["extra"] = [dict(item) for item in self.extra]
        data["labels"] = [dict(item) for item in self.labels]
        return data


@dataclass(frozen=True)
class Interaction:
    id: int
    ticket_id: str
    queue_id: str
    desk_id: str | None
    user_id: str | None
    started_at: str
    ended_at: str | None
    outcome: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Interaction:
        return cls(**dict(row))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Queue:
    id: str
    name: str
    prefix: str
    colour: str
    is_open: bool
    sort_order: int
    last_number: int
    avg_service_s: float | None
    now_serving_ticket_id: str | None
    created_at: str
    updated_at: str
    version: int

    @classmethod
    def from_row(cls, row: sqlite3.Row | dict[str, Any]) -> Queue:
        data = dict(row)
        data["is_open"] = bool(data["is_open"])
        return cls(**data)


@dataclass(frozen=True)
class Desk:
    id: str
    name: str
    pick_mode: str
    queue_ids: list[str] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
