"""The office this installation serves."""

from __future__ import annotations

from typing import Any

from ..db import Tx
from .text import clean_name

MAX_NAME = 80


def get_location(tx: Tx) -> dict[str, Any]:
    """The location row: id (globally unique, made at first start), name, created_at."""
    return dict(tx.one("SELECT id, name, created_at FROM location LIMIT 1"))


def rename_location(tx: Tx, name: Any) -> str:
    """Set the office name shown on pages, receipts and the LAN announcement; returns it
    cleaned. Raises ``ValidationError`` for an empty or over-long name."""
    name = clean_name("name", name, MAX_NAME)
    tx.execute("UPDATE location SET name = ?", (name,))
    tx.emit({"kind": "location", "action": "updated"})
    return name
