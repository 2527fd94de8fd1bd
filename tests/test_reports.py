"""Reports: figures of a hand-built day at a clinic, the office's time zone, CSV exports,
the page (charts, languages, bad ranges) and who may see it."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import jonot_local.domain.tickets as ticket_domain
from jonot_local.domain import queues, report_rollup, reports, tickets, users
from jonot_local.pages import charts
from jonot_local.pages.reports import csv_cell, csv_text
from jonot_local.settings import Settings
from jonot_local.timeutil import to_iso

from .support import ADMIN, STAFF, build_app

ZONE = "Europe/Helsinki"  # UTC+2 in November
DAY1, DAY2 = date(2026, 11, 23), date(2026, 11, 24)

# General on day 1: ten tickets from 08:00 local, one every 7 minutes: (wait s, outcome,
# service s). Two no-shows; the others completed.
GENERAL = [(120, "complete", 300), (300, "complete", 420), (450, "complete", 250),
           (610, "skip", None), (900, "complete", 600), (1250, "complete", 380),
           (200, "complete", 500), (75, "skip", None), (1800, "complete", 710),
           (2400, "complete", 330)]
# Laboratory on day 1 from 13:00 local, every 10 minutes, all completed.
LAB = [(60, "complete", 180), (90, "complete", 240), (30, "complete", 200),
       (45, "complete", 150)]


def nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


class Clock:
    """The domain's clock, set by the test: every action happens at ``now``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        monkeypatch.setattr(ticket_domain, "utcnow_iso", lambda: to_iso(self.now))


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """A Helsinki wall-clock time in November (UTC+2) as UTC."""
    return (datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            + timedelta(minutes=minute) - timedelta(hours=2))


def life(store: Any, clock: Clock, queue_id: str, desk_id: str, joined: datetime,
         wait_s: float | None, outcome: str | None, service_s: float | None = None,
         name: str | None = None) -> str:
    """One ticket's life through the real domain functions, at the given times."""
    clock.now = joined
    with store.write() as tx:
        t = tickets.join(tx, queue_id, source="kiosk", name=name)
    if wait_s is None:
        if outcome == "cancel":
            clock.now = joined + timedelta(minutes=3)
            with store.write() as tx:
                tickets.cancel(tx, t.id, by="customer")
        return t.id
    clock.now = joined + timedelta(seconds=wait_s)
    with store.write() as tx:
        tickets.call(tx, t.id, desk_id)
    if outcome == "complete":
        clock.now += timedelta(seconds=service_s or 0)
        with store.write() as tx:
            tickets.complete(tx, t.id)
    elif outcome == "skip":
        clock.now += timedelta(seconds=60)
        with store.write() as tx:
            tickets.skip(tx, t.id)
    return t.id


@pytest.fixture
def clinic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """An app in Helsinki time with two days of tickets (see GENERAL and LAB)."""
    app = build_app(tmp_path / "data", time_zone=ZONE)
    store = app.extensions["jonot"].store
    with store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
        users.create_user(tx, STAFF[0], STAFF[1], role="staff")
        general = queues.create_queue(tx, name="General", prefix="A")
        lab = queues.create_queue(tx, name="Laboratory", prefix="L")
        room1 = queues.create_desk(tx, name="Room 1", queue_ids=[general.id])
        room2 = queues.create_desk(tx, name="Room 2", queue_ids=[general.id, lab.id])
    clock = Clock(monkeypatch)
    for i, (wait, outcome, service) in enumerate(GENERAL):
        desk = room1 if i % 2 == 0 else room2
        life(store, clock, general.id, desk.id, local(DAY1, 8, i * 7), wait, outcome, service)
    for i, (wait, outcome, service) in enumerate(LAB):
        life(store, clock, lab.id, room2.id, local(DAY1, 13, i * 10), wait, outcome, service)
    life(store, clock, general.id, room1.id, local(DAY1, 9, 30), None, "cancel")
    # 23:30 on day 1 and 00:30 on day 2 in Helsinki: both on 23 November in UTC.
    life(store, clock, general.id, room1.id, local(DAY1, 23, 30), 600, "complete", 240)
    life(store, clock, general.id, room1.id, local(DAY2, 0, 30), None, None)  # still waiting
    yield {"app": app, "store": store, "general": general, "lab": lab, "room1": room1,
           "room2": room2, "clock": clock}
    app.extensions["jonot"].hub.close()
    store.close()


def figures(store: Any, start: date = DAY1, end: date = DAY2) -> reports.Report:
    with store.read() as tx:
        return reports.report(tx, reports.DateRange(start, end))


# -- the figures -----------------------------------------------------------------------------

def test_tickets_per_day_and_hour_follow_the_offices_calendar(clinic):
    r = figures(clinic["store"])
    day1, day2 = r.days
    assert (day1.day, day1.tickets, day1.completed, day1.no_show, day1.canceled) == \
        (DAY1, 10 + 4 + 1 + 1, 13, 2, 1)
    assert (day2.day, day2.tickets, day2.not_finished) == (DAY2, 1, 1)
    assert r.tickets == 17
    assert r.hours[8] == 9 and r.hours[9] == 2  # 08:00 … 09:03, then 09:10 and the cancel
    assert r.hours[13] == 4 and r.hours[23] == 1 and r.hours[0] == 1
    assert sum(r.hours) == 17
    only_day2 = figures(clinic["store"], DAY2, DAY2)
    assert only_day2.tickets == 1 and only_day2.hours[0] == 1


def test_wait_service_and_no_show_per_queue(clinic):
    r = figures(clinic["store"])
    general, lab = r.queues
    assert (general.name, lab.name) == ("General", "Laboratory")
    waits = [w for w, _, _ in GENERAL] + [600]
    services = [s for _, o, s in GENERAL if o == "complete"] + [240]
    assert (general.tickets, general.completed, general.no_show, general.canceled) == \
        (13, 9, 2, 1)
    assert general.no_show_rate == pytest.approx(2 / 11)
    assert general.wait.count == len(waits) and general.service.count == len(services)
    # Exact to within the bucket: 10 s under 10 min, 30 s under an hour.
    assert general.wait.median_s == pytest.approx(nearest_rank(waits, 50), abs=10)
    assert general.wait.p90_s == pytest.approx(nearest_rank(waits, 90), abs=30)
    assert general.service.median_s == pytest.approx(nearest_rank(services, 50), abs=10)
    assert general.service.p90_s == pytest.approx(nearest_rank(services, 90), abs=30)
    assert lab.no_show_rate == 0
    assert lab.wait.median_s == pytest.approx(45, abs=10)  # 30, 45, 60, 90
    assert lab.service.p90_s == pytest.approx(240, abs=10)
    everyone = waits + [w for w, _, _ in LAB]
    assert r.total.wait.median_s == pytest.approx(nearest_rank(everyone, 50), abs=10)
    assert r.total.no_show_rate == pytest.approx(2 / 15)
    assert r.total.tickets == 17


def test_per_desk_counts_where_the_ticket_was_called(clinic):
    r = figures(clinic["store"])
    by_name = {d.name: d for d in r.desks}
    assert set(by_name) == {"Room 1", "Room 2"}  # the canceled waiting ticket has no desk
    room1, room2 = by_name["Room 1"], by_name["Room 2"]
    # Room 1: General 0, 2, 4, 6, 8 and the late one; Room 2: General 1, 3, 5, 7, 9 and lab.
    assert (room1.completed, room1.no_show) == (6, 0)
    assert (room2.completed, room2.no_show) == (7, 2)
    room1_waits = [GENERAL[i][0] for i in (0, 2, 4, 6, 8)] + [600]
    assert room1.wait.median_s == pytest.approx(nearest_rank(room1_waits, 50), abs=10)
    assert room2.no_show_rate == pytest.approx(2 / 9)


def rollup_tables(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the report count tables, in a stable order."""
    with store.read() as tx:
        return {t: [tuple(r) for r in tx.all(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4")]
                for t in report_rollup.ROLLUP_TABLES}


def test_the_triggers_keep_what_a_rebuild_counts(clinic):
    store = clinic["store"]
    kept = rollup_tables(store)
    with store.write() as tx:
        report_rollup.rebuild(tx)
    assert rollup_tables(store) == kept and kept["report_times"]


def test_a_ticket_inserted_already_ended_counts_as_a_rebuild_would(clinic):
    """A ticket row inserted already ended (not through a join) is counted as joined
    and as ended, as a rebuild counts it."""
    store = clinic["store"]
    before = rollup_tables(store)
    with store.write() as tx:
        tx.execute(
            "INSERT INTO tickets (id, queue_id, origin_queue_id, number, code, hash, state, "
            "source, desk_id, order_key, created_at, called_at, completed_at, updated_at) "
            "SELECT id || 'X', queue_id, origin_queue_id, number + 1000, code || 'X', "
            "hash || 'X', state, source, desk_id, order_key + 0.5, created_at, called_at, "
            "completed_at, updated_at FROM tickets WHERE state = 'COMPLETED'")
    kept = rollup_tables(store)
    assert kept != before
    assert sum(r[-1] for r in kept["report_ended"]) > sum(r[-1] for r in before["report_ended"])
    with store.write() as tx:
        report_rollup.rebuild(tx)
    assert rollup_tables(store) == kept


def test_a_new_time_zone_recounts_the_days(clinic):
    store = clinic["store"]
    with store.write() as tx:
        assert report_rollup.install_zone(tx, ZONE) is False  # unchanged: nothing to do
        assert report_rollup.install_zone(tx, "UTC") is True
    r = figures(store)
    assert [d.tickets for d in r.days] == [17, 0]  # 23:30 and 00:30 Helsinki: 23 Nov UTC
    assert r.hours[21] == 1 and r.hours[22] == 1 and r.hours[6] == 9
    with store.write() as tx:
        report_rollup.install_zone(tx, ZONE)
    assert [d.tickets for d in figures(store).days] == [16, 1]


def test_zone_offsets_follow_daylight_saving():
    offsets = dict(report_rollup.zone_offsets(ZONE))
    assert offsets["2026-03-29T01:00:00.000000Z"] == 180
    assert offsets["2026-10-25T01:00:00.000000Z"] == 120
    with pytest.raises(ValueError, match="not a time zone"):
        report_rollup.zone_for("Mars/Olympus")
    with pytest.raises(ValueError, match="JONOT_TIME_ZONE"):
        Settings.load({"time_zone": "Mars/Olympus"}, environ={})


def test_percentiles_of_a_histogram():
    assert reports.percentile({}, 50) is None
    values = [3, 14, 15, 92, 65, 35, 89, 79, 323, 846, 2643, 3832]
    hist: dict[int, int] = {}
    for v in values:
        hist[reports.bucket_of(v)] = hist.get(reports.bucket_of(v), 0) + 1
    for pct in (50, 90):
        exact = nearest_rank(values, pct)
        width = reports.bucket_width(reports.bucket_of(exact))
        assert reports.percentile(hist, pct) == pytest.approx(exact, abs=width)
    assert reports.bucket_of(-5) == 0 and reports.bucket_of(599.9) == 590
    assert reports.bucket_of(3599) == 3570 and reports.bucket_of(90_000) == reports.OVERFLOW


# -- the range ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("start", "end", "reason"), [
    ("2026-11-30", "2026-11-01", "end_before_start"),
    ("30.11.2026", "2026-12-01", "not_a_date"),
    ("2026-11-01", "tomorrow", "not_a_date"),
    ("2025-01-01", "2026-01-02", "too_long"),
    ("1999-12-31", "2000-01-01", "years"),
])
def test_a_range_that_cannot_be_reported_says_why(start, end, reason):
    with pytest.raises(reports.RangeError) as caught:
        reports.parse_range(start, end, DAY2)
    assert caught.value.reason == reason


def test_range_defaults():
    assert reports.parse_range(None, None, DAY2) == reports.DateRange(DAY2 - timedelta(6), DAY2)
    assert reports.parse_range("2026-11-01", "", DAY2).end == date(2026, 11, 7)
    assert reports.parse_range("2025-11-25", "2026-11-25", DAY2).days == 366


# -- CSV ---------------------------------------------------------------------------------------

def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe():
    for bad in ("=SUM(A1)", "+1", "-2+3", "@cmd", "\tx", "\rx"):
        assert csv_cell(bad) == "'" + bad
    assert csv_cell("Room = 3") == "Room = 3" and csv_cell(-1) == "-1" and csv_cell(None) == ""
    text = csv_text(["queue", "n"], [['Lab, "east"', 3], ["=cmd|' /C calc'!A0", 1]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["queue", "n"], ['Lab, "east"', "3"], ["'=cmd|' /C calc'!A0", "1"]]


def sign_in(client: Any, who: tuple[str, str] = ADMIN) -> Any:
    form = client.get("/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    r = client.post("/signin", data={"username": who[0], "password": who[1],
                                     "csrf_token": token.group(1)})
    assert r.status_code == 302
    return client


@pytest.fixture
def admin(clinic):
    return sign_in(clinic["app"].test_client())


def download(client: Any, name: str, start: date = DAY1, end: date = DAY2) -> list[dict[str, str]]:
    r = client.get(f"/admin/reports/{name}.csv?start={start}&end={end}")
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"] == \
        f'attachment; filename="jonot-{name}-{start}_{end}.csv"'
    return list(csv.DictReader(io.StringIO(r.get_data().decode("utf-8-sig"))))


def test_csv_exports_add_up_to_the_tickets_made(clinic, admin):
    days = download(admin, "days")
    assert [d["date"] for d in days] == ["2026-11-23", "2026-11-24"]
    assert sum(int(d["tickets"]) for d in days) == 17
    assert sum(int(d["completed"]) + int(d["no_shows"]) + int(d["canceled"])
               + int(d["not_finished"]) for d in days) == 17
    hours = download(admin, "hours")
    assert len(hours) == 24 and sum(int(h["tickets"]) for h in hours) == 17
    queue_rows = download(admin, "queues")
    assert sum(int(q["tickets"]) for q in queue_rows) == 17
    general = next(q for q in queue_rows if q["queue"] == "General")
    assert general["no_show_rate_pct"] == "18.2" and general["waits_counted"] == "11"
    desks = download(admin, "desks")
    assert sorted(d["desk"] for d in desks) == ["Room 1", "Room 2"]
    assert sum(int(d["completed"]) for d in desks) == 13


def test_a_queue_named_like_a_formula_is_exported_as_text(clinic, admin):
    with clinic["store"].write() as tx:
        queues.update_queue(tx, clinic["lab"].id, name='=HYPERLINK("http://x","Lab")')
    rows = download(admin, "queues")
    assert rows[1]["queue"] == "'=HYPERLINK(\"http://x\",\"Lab\")"


# -- the page ----------------------------------------------------------------------------------

def test_the_page_draws_every_chart_with_its_figures(clinic, admin):
    html = admin.get(f"/admin/reports?start={DAY1}&end={DAY2}").get_data(as_text=True)
    for chart in ("per-day", "per-hour", "no-show", "queue-wait", "queue-service",
                  "desk-wait", "desk-service"):
        svg = re.search(rf'<svg class="chart"[^>]*data-chart="{chart}".*?</svg>', html, re.S)
        assert svg, chart
        assert 'role="img"' in svg.group(0) and f'aria-labelledby="{chart}-t {chart}-d"' \
            in svg.group(0)
        assert re.search(rf'<title id="{chart}-t">[^<]+</title>', svg.group(0))
    assert 'data-stat="tickets">17<' in html
    assert "18.2%" in html  # General's no-show rate, in its table
    assert html.count("<table") >= 4 and "Show the figures" in html
    for name in ("days", "hours", "queues", "desks"):
        assert f"/admin/reports/{name}.csv?start=2026-11-23&amp;end=2026-11-24" in html


def test_the_page_in_finnish(clinic, admin):
    html = admin.get(f"/admin/reports?start={DAY1}&end={DAY2}&lang=fi").get_data(as_text=True)
    assert "Raportit" in html and "Jonotusaika" in html
    assert "18,2\xa0%" in html  # Finnish number format (with a no-break space)
    assert "maanantai 23. marraskuuta 2026" in html


def test_a_bad_range_shows_the_form_with_what_to_do(clinic, admin):
    r = admin.get("/admin/reports?start=2026-11-30&end=2026-11-01")
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "The end date is before the start date" in html and 'aria-invalid="true"' in html
    assert "<svg" not in html and "Traceback" not in html
    r = admin.get("/admin/reports?start=yesterday")
    assert r.status_code == 400 and "is not a date" in r.get_data(as_text=True)
    r = admin.get("/admin/reports/days.csv?start=2020-01-01&end=2026-01-01")
    assert r.status_code == 400 and "Choose a shorter range" in r.get_data(as_text=True)
    r = admin.get("/admin/reports?start=2026-11-30&end=2026-11-01&lang=fi")
    assert "Loppupäivä on ennen alkupäivää" in r.get_data(as_text=True)
    assert admin.get("/admin/reports/secrets.csv").status_code == 404


def test_presets_and_the_default_range(clinic, admin):
    html = admin.get("/admin/reports").get_data(as_text=True)
    assert "Last 7 days" in html and 'aria-current="true"' in html
    assert admin.get("/admin/reports?last=30").status_code == 200


def test_reports_are_for_admins(clinic):
    client = clinic["app"].test_client()
    r = client.get("/admin/reports")
    assert r.status_code == 302 and "/signin" in r.headers["Location"]
    assert client.get("/admin/reports/days.csv").status_code == 302
    sign_in(client, STAFF)
    assert client.get("/admin/reports").status_code == 403
    assert client.get("/admin/reports/days.csv").status_code == 403


def test_chart_colours_have_contrast_on_the_panel():
    def luminance(colour: str) -> float:
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    def contrast(a: str, b: str) -> float:
        hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    for colour in charts.SERIES_COLOURS:
        assert contrast(colour, charts.PANEL) >= 3.0, colour
    assert contrast(charts.TEXT, charts.PANEL) >= 4.5
    assert contrast(charts.MUTED, charts.PANEL) >= 4.5
