"""The reports' counts: the office's time zone in the database, and rebuilding the counts.

The counts themselves are kept by triggers (migration ``0010_report_rollup``),
in the transaction of every ticket change, keyed by the local day the ticket
was issued. Which day that is depends on the office's time zone: its UTC
offsets, from each change on, live in ``report_zone``. ``install_zone`` writes
them at start; when they differ from those stored (another zone, or new rules
in the time-zone data), every count is rebuilt from the tickets, once.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..db import Tx
from ..timeutil import to_iso

log = logging.getLogger("jonot_local.reports")

FIRST_YEAR = 2000  # offsets are computed for these years; before and after, the edge ones
LAST_YEAR = 2100
ROLLUP_TABLES = ("report_joined", "report_ended", "report_times")


def zone_for(name: str) -> tzinfo | None:
    """The time zone of this name (IANA, e.g. ``Europe/Helsinki``); ``""``: ``None``, the
    server machine's own. Raises ``ValueError`` for an unknown name."""
    if not name.strip():
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone name (e.g. Europe/Helsinki)") from None


def office_now(zone: tzinfo | None) -> datetime:
    """Now in the office's zone (``None``: the machine's local zone)."""
    return datetime.now(UTC).astimezone(zone) if zone else datetime.now(UTC).astimezone()


def _offset_min(moment: datetime, zone: tzinfo | None) -> int:
    local = moment.astimezone(zone) if zone else moment.astimezone()
    offset = local.utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


@functools.lru_cache(maxsize=16)
def _offsets_cached(name: str) -> tuple[tuple[str, int], ...]:
    zone = zone_for(name)
    moment = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
    end = datetime(LAST_YEAR, 1, 1, tzinfo=UTC)
    current = _offset_min(moment, zone)
    changes = [("0000-01-01T00:00:00.000000Z", current)]
    step = timedelta(days=7)  # no zone changes its offset twice within a week
    while moment < end:
        later = moment + step
        offset = _offset_min(later, zone)
        if offset != current:
            low, high = moment, later  # the change is in (low, high]: bisect to the second
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                if _offset_min(mid, zone) == current:
                    low = mid
                else:
                    high = mid
            changes.append((to_iso(high.replace(microsecond=0)), offset))
            current = offset
        moment = later
    return tuple(changes)


def zone_offsets(name: str) -> list[tuple[str, int]]:
    """``(from_utc, offset_min)`` of the zone ``name`` (``""``: the machine's), oldest first:
    the offset in minutes that applies from each UTC instant on."""
    if not name.strip():  # the machine's zone may change while the process runs: no cache
        return list(_offsets_cached.__wrapped__(""))
    return list(_offsets_cached(name.strip()))


def install_zone(tx: Tx, name: str) -> bool:
    """Make ``report_zone`` hold the offsets of ``name``; when they change, rebuild the
    counts. Returns whether it rebuilt them."""
    wanted = zone_offsets(name)
    stored = [(r["from_utc"], r["offset_min"])
              for r in tx.all("SELECT from_utc, offset_min FROM report_zone ORDER BY from_utc")]
    if stored == wanted:
        return False
    tx.execute("DELETE FROM report_zone")
    tx.conn.executemany("INSERT INTO report_zone (from_utc, offset_min) VALUES (?, ?)", wanted)
    rebuild(tx)
    return True


def rebuild(tx: Tx) -> dict[str, int]:
    """Recount every report table from the tickets (what the triggers keep, from scratch).

    Returns the rows of each table; logs how long it took (seconds at a million tickets).
    """
    t0 = time.perf_counter()
    for table in ROLLUP_TABLES:
        tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
    tx.execute("INSERT INTO report_joined (day, hour, queue_id, n) SELECT day, hour, "
               "origin_queue_id, COUNT(*) FROM report_facts GROUP BY day, hour, origin_queue_id")
    tx.execute("INSERT INTO report_ended (day, queue_id, desk_id, outcome, n) SELECT day, "
               "queue_id, desk_id, outcome, COUNT(*) FROM report_facts WHERE outcome IS NOT NULL "
               "GROUP BY day, queue_id, desk_id, outcome")
    for kind in ("wait", "service"):
        tx.execute(
            "INSERT INTO report_times (day, kind, queue_id, desk_id, bucket, n) "
            f"SELECT day, '{kind}', queue_id, desk_id, {kind}_bucket, COUNT(*) "  # noqa: S608
            f"FROM report_facts WHERE outcome IS NOT NULL AND {kind}_bucket IS NOT NULL "
            f"GROUP BY day, queue_id, desk_id, {kind}_bucket")
    rows = {table: tx.one(f"SELECT COUNT(*) AS n FROM {table}")["n"]  # noqa: S608
            for table in ROLLUP_TABLES}
    log.info("report counts rebuilt in %.1f s (%s)", time.perf_counter() - t0,
             ", ".join(f"{k}: {v}" for k, v in rows.items()))
    return rows
