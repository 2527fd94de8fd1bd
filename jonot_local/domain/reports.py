"""Reports: tickets per day and per hour, wait and service times per queue and desk, no-shows.

Plain functions over a transaction and a ``DateRange`` of the office's calendar
days (both ends included), returning plain data. They read the counts kept by
the report triggers (``report_rollup``), never the tickets themselves, so a
year's report at a million tickets reads a few thousand rows.

What is counted, always of the tickets *issued* in the range:

- tickets: every ticket issued, in the queue that issued it, by the local day
  and hour it was issued;
- wait: from joining to being called (the last call), of the tickets that were
  called and have ended (served, no-show, or canceled after the call);
- service: from the call to done, of the completed tickets;
- no-show rate: no-shows / (completed + no-shows);
- per queue and desk, the times and outcomes count where the ticket ended (a
  transferred ticket counts in the queue that served it).

Medians and 90th percentiles come from histograms (see ``BUCKETS``): they are
exact to within one bucket, 10 s under 10 min, 30 s under an hour, 2 min under
4 h, 10 min under a day; waits of a day or more count as one day.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ..db import Tx
from .errors import ValidationError

MAX_DAYS = 366
# (below this many seconds, buckets this wide); the last bucket (a day) has no width.
BUCKETS = ((600, 10), (3600, 30), (14_400, 120), (86_400, 600))
OVERFLOW = 86_400
OUTCOMES = ("completed", "no_show", "canceled")


# -- the range -----------------------------------------------------------------------

@dataclass(frozen=True)
class DateRange:
    """Calendar days of the office, ``start`` to ``end`` inclusive."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def each_day(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def keys(self) -> tuple[str, str]:
        """The first and last day as the rollup stores them (``YYYY-MM-DD``)."""
        return self.start.isoformat(), self.end.isoformat()


class RangeError(ValidationError):
    """A date range that cannot be reported: ``reason`` is ``not_a_date``, ``years``,
    ``end_before_start`` or ``too_long`` (pages say it in the visitor's language)."""

    def __init__(self, field_name: str, reason: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}", [{"field": field_name, "message": message}])
        self.field_name = field_name
        self.reason = reason


def last_days(today: date, days: int) -> DateRange:
    """The ``days`` days ending today."""
    return DateRange(today - timedelta(days=days - 1), today)


def parse_range(start: str | None, end: str | None, today: date,
                default_days: int = 7) -> DateRange:
    """The range of two ``YYYY-MM-DD`` texts; a missing one is filled in (the last
    ``default_days`` days, or a range that ends today / starts ``default_days`` earlier).

    Raises ``RangeError`` (field ``start`` or ``end``) saying what to change.
    """
    first = _parse_day("start", start)
    last = _parse_day("end", end)
    if first is None and last is None:
        return last_days(today, default_days)
    if first is None:
        assert last is not None
        first = last - timedelta(days=default_days - 1)
    if last is None:
        last = min(today, first + timedelta(days=default_days - 1))
        last = max(last, first)
    if last < first:
        raise RangeError("end", "end_before_start", "is before the start date: choose an "
                         "end date on or after the start date")
    if (last - first).days + 1 > MAX_DAYS:
        raise RangeError("end", "too_long", f"makes a range of more than {MAX_DAYS} days: "
                         f"choose a range of at most {MAX_DAYS} days")
    return DateRange(first, last)


def _parse_day(name: str, text: str | None) -> date | None:
    if text is None or not text.strip():
        return None
    try:
        found = date.fromisoformat(text.strip())
    except ValueError:
        raise RangeError(name, "not_a_date", "is not a date: use the form 2026-11-30") from None
    if not 2000 <= found.year <= 2099:
        raise RangeError(name, "years", "must be a date between the years 2000 and 2099")
    return found


# -- percentiles from histograms ------------------------------------------------------

def bucket_of(seconds: float) -> int:
    """The histogram bucket (its lower bound, seconds) of a duration; what the view computes."""
    s = max(0.0, seconds)
    for below, width in BUCKETS:
        if s < below:
            return int(s // width) * width
    return OVERFLOW


def bucket_width(bucket: int) -> int:
    """How wide the bucket starting at ``bucket`` is (0 for the last one)."""
    for below, width in BUCKETS:
        if bucket < below:
            return width
    return 0


def percentile(histogram: dict[int, int], pct: float) -> float | None:
    """The ``pct`` percentile (nearest rank) of the durations counted in ``histogram``
    (bucket → count), placed within its bucket as if its values were evenly spread.
    ``None`` when nothing was counted."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(pct / 100.0 * total))
    before = 0
    for bucket in sorted(histogram):
        n = histogram[bucket]
        if before + n >= rank:
            return bucket + bucket_width(bucket) * (rank - before - 0.5) / n
        before += n
    raise AssertionError("unreachable")


@dataclass
class Times:
    """A distribution of durations: how many, median and 90th percentile (seconds)."""

    count: int = 0
    median_s: float | None = None
    p90_s: float | None = None

    @classmethod
    def of(cls, histogram: dict[int, int]) -> Times:
        return cls(sum(histogram.values()), percentile(histogram, 50), percentile(histogram, 90))


# -- the figures ---------------------------------------------------------------------------

@dataclass
class DayRow:
    day: date
    tickets: int = 0
    completed: int = 0
    no_show: int = 0
    canceled: int = 0

    @property
    def not_finished(self) -> int:
        """Issued and not ended yet (waiting or called now)."""
        return max(0, self.tickets - self.completed - self.no_show - self.canceled)


@dataclass
class GroupRow:
    """A queue's or a desk's figures over the range."""

    id: str
    name: str
    tickets: int = 0  # issued (queues only; 0 for desks)
    completed: int = 0
    no_show: int = 0
    canceled: int = 0
    wait: Times = field(default_factory=Times)
    service: Times = field(default_factory=Times)

    @property
    def no_show_rate(self) -> float | None:
        """No-shows / (completed + no-shows); ``None`` when nobody was called to the end."""
        called = self.completed + self.no_show
        return self.no_show / called if called else None


@dataclass
class Report:
    range: DateRange
    days: list[DayRow]
    hours: list[int]  # tickets issued in each hour of the day, 0–23
    queues: list[GroupRow]
    desks: list[GroupRow]
    total: GroupRow  # every queue together

    @property
    def tickets(self) -> int:
        return sum(d.tickets for d in self.days)


def tickets_per_day(tx: Tx, rng: DateRange) -> list[DayRow]:
    """Every day of the range (zeros included): tickets issued and how they ended."""
    first, last = rng.keys()
    rows = {d.isoformat(): DayRow(d) for d in rng.each_day()}
    for r in tx.all("SELECT day, SUM(n) AS n FROM report_joined WHERE day BETWEEN ? AND ? "
                    "GROUP BY day", (first, last)):
        rows[r["day"]].tickets = r["n"]
    for r in tx.all("SELECT day, outcome, SUM(n) AS n FROM report_ended "
                    "WHERE day BETWEEN ? AND ? GROUP BY day, outcome", (first, last)):
        setattr(rows[r["day"]], r["outcome"], r["n"])
    return list(rows.values())


def tickets_per_hour(tx: Tx, rng: DateRange) -> list[int]:
    """Tickets issued in each hour of the day (0–23, office time), over the range."""
    hours = [0] * 24
    for r in tx.all("SELECT hour, SUM(n) AS n FROM report_joined WHERE day BETWEEN ? AND ? "
                    "GROUP BY hour", (*rng.keys(),)):
        hours[r["hour"]] = r["n"]
    return hours


def per_queue(tx: Tx, rng: DateRange) -> tuple[list[GroupRow], GroupRow]:
    """Each queue with tickets in the range (in the queues' order), and all together."""
    first, last = rng.keys()
    names = {r["id"]: r["name"] for r in tx.all(
        "SELECT id, name FROM queues ORDER BY sort_order, created_at, id")}
    rows: dict[str, GroupRow] = {}

    def row(queue_id: str) -> GroupRow:
        if queue_id not in rows:
            rows[queue_id] = GroupRow(queue_id, names.get(queue_id, queue_id))
        return rows[queue_id]

    for r in tx.all("SELECT queue_id, SUM(n) AS n FROM report_joined WHERE day BETWEEN ? AND ? "
                    "GROUP BY queue_id", (first, last)):
        row(r["queue_id"]).tickets = r["n"]
    _outcomes(tx, rng, "queue_id", row)
    histograms = _times(tx, rng, "queue_id", row)
    total = GroupRow("", "")
    total.tickets = sum(r.tickets for r in rows.values())
    for name in OUTCOMES:
        setattr(total, name, sum(getattr(r, name) for r in rows.values()))
    for kind, groups in histograms.items():
        merged: dict[int, int] = defaultdict(int)
        for histogram in groups.values():
            for bucket, n in histogram.items():
                merged[bucket] += n
        setattr(total, kind, Times.of(merged))
    order = {queue_id: i for i, queue_id in enumerate(names)}
    return sorted(rows.values(), key=lambda g: (order.get(g.id, len(order)), g.name)), total


def per_desk(tx: Tx, rng: DateRange) -> list[GroupRow]:
    """Each desk that called a ticket issued in the range, by name."""
    names = {r["id"]: r["name"] for r in tx.all("SELECT id, name FROM desks")}
    rows: dict[str, GroupRow] = {}

    def row(desk_id: str) -> GroupRow:
        if desk_id not in rows:
            rows[desk_id] = GroupRow(desk_id, names.get(desk_id, desk_id))
        return rows[desk_id]

    _outcomes(tx, rng, "desk_id", row, skip_empty=True)
    _times(tx, rng, "desk_id", row, skip_empty=True)
    return sorted(rows.values(), key=lambda g: (g.name.casefold(), g.id))


def report(tx: Tx, rng: DateRange) -> Report:
    """Every figure of the range, from one read snapshot."""
    queues, total = per_queue(tx, rng)
    return Report(rng, tickets_per_day(tx, rng), tickets_per_hour(tx, rng), queues,
                  per_desk(tx, rng), total)


# -- internals --------------------------------------------------------------------------

_GROUP_COLUMNS = ("queue_id", "desk_id")


def _outcomes(tx: Tx, rng: DateRange, column: str, row: Any, skip_empty: bool = False) -> None:
    assert column in _GROUP_COLUMNS
    for r in tx.all(f"SELECT {column} AS g, outcome, SUM(n) AS n FROM report_ended "  # noqa: S608
                    f"WHERE day BETWEEN ? AND ? GROUP BY {column}, outcome", (*rng.keys(),)):
        if skip_empty and not r["g"]:
            continue  # never called: no desk
        setattr(row(r["g"]), r["outcome"], r["n"])


def _times(tx: Tx, rng: DateRange, column: str, row: Any,
           skip_empty: bool = False) -> dict[str, dict[str, dict[int, int]]]:
    """Set each group's wait and service times; returns the histograms (kind → group →
    bucket → count)."""
    out: dict[str, dict[str, dict[int, int]]] = {}
    for kind in ("wait", "service"):
        found: dict[str, dict[int, int]] = defaultdict(dict)
        for r in _histograms(tx, rng, column, kind):
            if skip_empty and not r["g"]:
                continue
            found[r["g"]][r["bucket"]] = r["n"]
        for group, histogram in found.items():
            setattr(row(group), kind, Times.of(histogram))
        out[kind] = found
    return out


def _histograms(tx: Tx, rng: DateRange, column: str, kind: str) -> Iterable[Any]:
    """Rows (g, bucket, n) of the ``kind`` histogram per ``column``."""
    assert column in _GROUP_COLUMNS
    return tx.all(f"SELECT {column} AS g, bucket, SUM(n) AS n FROM report_times "  # noqa: S608
                  f"WHERE day BETWEEN ? AND ? AND kind = ? GROUP BY {column}, bucket",
                  (*rng.keys(), kind))
