"""The office this installation serves."""

from __future__ import annotations

from typing import Any

from ..db import Tx


def get_location(tx: Tx) -> dict[str, Any]:
    """The location row: id (globally unique, made at first start), name, created_at."""
    return dict(tx.one("SELECT id, name, created_at FROM location LIMIT 1"))


def rename_location(tx: Tx, name: str) -> None:
    """Set the office name shown on pages and receipts."""
    tx.execute("UPDATE location SET name = ?", (name,))
    tx.emit({"kind": "location", "action": "updated"})
