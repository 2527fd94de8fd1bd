"""Offices registered in the cloud: their tokens (hashed at rest), listing, revoking."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from jonot_local.ids import new_ulid
from jonot_local.timeutil import utcnow_iso as now_iso

from .store import CloudStore, Tx


class UnknownOffice(LookupError):
    """No office has this id."""


def token_hash(token: str) -> str:
    """What the cloud keeps of an office token: SHA-256, hex (tokens are random, 256 bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_office(store: CloudStore, name: str) -> tuple[str, str]:
    """Register an office; its id and its token (shown once, never stored in clear)."""
    name = " ".join(name.split())
    if not name or len(name) > 120:
        raise ValueError("the office name must be 1 to 120 characters")
    office_id = new_ulid()
    token = "jo_" + secrets.token_urlsafe(32)
    with store.write() as tx:
        tx.execute("INSERT INTO office (office_id, name, token_hash, created_at) "
                   "VALUES (?, ?, ?, ?)", (office_id, name, token_hash(token), now_iso()))
    return office_id, token


def list_offices(store: CloudStore) -> list[dict[str, Any]]:
    """Every office with its sync state (no token hashes)."""
    with store.read() as tx:
        rows = tx.all(
            "SELECT o.office_id, o.name, o.status, o.created_at, o.revoked_at, o.last_push_at,"
            " o.clock_skew_s, o.alert, o.epoch_id, o.install_id, e.acked_seq "
            "FROM office o LEFT JOIN office_epoch e "
            "ON e.office_id = o.office_id AND e.epoch_id = o.epoch_id ORDER BY o.created_at")
    return rows


def revoke_office(store: CloudStore, office_id: str) -> None:
    """Refuse the office's token from now on (its data stays, for the record)."""
    with store.write(lock_office=office_id) as tx:
        office = tx.lock_office(office_id)
        if office is None:
            raise UnknownOffice(office_id)
        tx.execute("UPDATE office SET status = 'revoked', revoked_at = ? WHERE office_id = ?",
                   (now_iso(), office_id))
        tx.wake(office_id)


def reenrol_office(store: CloudStore, office_id: str) -> str:
    """A new token for the office; the old one stops working and a freeze is lifted.

    The next install to push with the new token becomes the office's install;
    its data (tickets, queues, cursors) stays the office's.
    """
    token = "jo_" + secrets.token_urlsafe(32)
    with store.write(lock_office=office_id) as tx:
        office = tx.lock_office(office_id)
        if office is None:
            raise UnknownOffice(office_id)
        tx.execute("UPDATE office SET token_hash = ?, status = 'active', alert = NULL, "
                   "install_id = NULL, revoked_at = NULL WHERE office_id = ?",
                   (token_hash(token), office_id))
        tx.execute("DELETE FROM office_install WHERE office_id = ?", (office_id,))
        # A history another copy took over from may be the one chosen now: it starts a
        # new epoch (a full snapshot) instead of being refused as a copy again.
        tx.execute("UPDATE office_epoch SET status = 'forked' WHERE office_id = ? "
                   "AND status = 'continued'", (office_id,))
        tx.wake(office_id)
    return token


def office_for_token(tx: Tx, token: str) -> dict[str, Any] | None:
    """The office a bearer token belongs to (``None``: unknown); a revoked office too,
    with ``status`` ``revoked``, so that the refusal can say so."""
    if not token or len(token) > 200:
        return None
    return tx.one("SELECT * FROM office WHERE token_hash = ?", (token_hash(token),))
