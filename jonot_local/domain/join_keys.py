"""Who holds which live anonymous tickets: the durable half of the join budget.

``join_keys`` has one row per live (WAITING or CALLED) anonymous ticket with
the hashed key of the client that took it (and, behind a proxy, of its
address). A trigger deletes the row when the ticket ends, so the table only
ever holds live tickets; triggers keep ``join_key_counts`` (live tickets per
key) in step, so checking a budget is one primary-key read whatever the cap or
the size of the history. Rows are written in the join's own
transaction, so counts are exact under concurrency and survive a restart.
"""

from __future__ import annotations

from ..db import Tx


def claim(tx: Tx, ticket_id: str, client_key: str, client_max: int,
          address_key: str | None = None, address_max: int = 0) -> bool:
    """Record ``ticket_id`` as held by ``client_key`` (and ``address_key``) if within the caps.

    One statement: the row is written only while the client holds fewer than
    ``client_max`` live tickets and, when ``address_key`` is given, the address
    fewer than ``address_max``. Returns ``False`` (nothing written) when over.
    """
    cur = tx.execute(
        "INSERT INTO join_keys (ticket_id, client_key, address_key) SELECT ?1, ?2, ?3 "
        "WHERE COALESCE((SELECT live FROM join_key_counts WHERE key = ?2), 0) < ?4 "
        "AND (?3 IS NULL OR COALESCE((SELECT live FROM join_key_counts WHERE key = ?3), 0) < ?5)",
        (ticket_id, client_key, address_key, client_max, address_max))
    return cur.rowcount == 1


def live_codes(tx: Tx, client_key: str) -> list[str]:
    """The codes of the live tickets a client holds, oldest first.

    Only for a refused join: it reads every live anonymous ticket's key (no index).
    """
    rows = tx.all("SELECT t.code FROM join_keys k JOIN tickets t ON t.id = k.ticket_id "
                  "WHERE k.client_key = ? ORDER BY t.created_at, t.id", (client_key,))
    return [r["code"] for r in rows]


def live_count(tx: Tx, key: str) -> int:
    """How many live tickets are held under one (hashed) client or address key."""
    row = tx.one("SELECT live FROM join_key_counts WHERE key = ?", (key,))
    return int(row["live"]) if row else 0
