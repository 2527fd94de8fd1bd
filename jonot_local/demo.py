"""Demo data for a first look: a few clinic queues, desks, a display and an admin login."""

from __future__ import annotations

from .db import Store


def load_demo(store: Store) -> tuple[str, str] | None:
    """Fill an empty database; returns the demo login, or ``None`` if it was not empty."""
    return None
