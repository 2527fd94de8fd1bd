"""UTC timestamps as ISO 8601 strings, the only time format stored."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def utcnow_iso() -> str:
    """The current UTC time as ``2026-11-23T08:30:00.123456Z`` (sorts as text)."""
    # What ``to_iso`` gives for a four-digit year, without strftime (twice a join).
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def to_iso(moment: datetime) -> str:
    """Format an aware datetime as UTC ISO 8601 with microseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC. Raises ``ValueError``."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
