"""The reports page: ``/admin/reports`` with charts, and ``/admin/reports/<name>.csv``.

Admins only. The range is two office-calendar days in the address
(``?start=2026-11-24&end=2026-11-30``), the last 7 days when none is given;
a range that cannot be reported re-shows the form with what to change (400),
never a traceback. Figures come from ``domain.reports`` in one read snapshot;
charts are inline SVG drawn from ``pages.charts`` geometry, each with its
figures as a table too. CSV exports are the same figures, UTF-8 (with a BOM,
for spreadsheets), English column names, ISO dates and plain numbers in every
language, and a leading apostrophe on any text cell a spreadsheet would run as
a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from babel import Locale
from babel.dates import format_date, format_skeleton
from babel.numbers import format_decimal, format_percent
from flask import abort, render_template, request
from flask_babel import get_locale, gettext
from werkzeug.wrappers import Response

from ..domain import reports
from ..domain.report_rollup import office_now, zone_for
from ..runtime import runtime
from . import blueprint, charts
from .session import current_staff, staff_page

PRESETS = (("today", 1), ("7", 7), ("30", 30))
CSV_NAMES = ("days", "hours", "queues", "desks")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# -- formatting in the visitor's language ------------------------------------------------

def _locale() -> str:
    return str(get_locale() or "en")


def fmt_int(value: float) -> str:
    return format_decimal(value, locale=_locale())


def fmt_pct(value: float | None, decimals: bool = True) -> str:
    """A share as a percentage in the locale's own form (``12.5%``, ``12,5 %``)."""
    if value is None:
        return "–"
    pattern = Locale.parse(_locale()).percent_formats[None].pattern
    if decimals:
        pattern = pattern.replace("#,##0", "#,##0.0", 1)
    return format_percent(value, pattern, locale=_locale())


def fmt_duration(seconds: float | None) -> str:
    """A duration as people read it: ``45 s``, ``4.5 min``, ``12 min``, ``1 h 05 min``."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return gettext("%(s)s s", s=fmt_int(round(seconds)))
    minutes = seconds / 60
    if minutes < 10:
        return gettext("%(m)s min", m=format_decimal(round(minutes, 1), "0.#",
                                                      locale=_locale()))
    if minutes < 60:
        return gettext("%(m)s min", m=fmt_int(round(minutes)))
    whole = round(minutes)
    return gettext("%(h)s h %(m)s min", h=whole // 60, m=f"{whole % 60:02d}")


def fmt_day(day: date, form: str = "medium") -> str:
    return format_date(day, form, locale=_locale())


def fmt_day_short(day: date) -> str:
    return format_skeleton("MMMd", day, locale=_locale())


def fmt_minutes_tick(minutes: float) -> str:
    return format_decimal(minutes, "0.#", locale=_locale())


# -- the range --------------------------------------------------------------------------

def office_today() -> date:
    return office_now(zone_for(runtime().settings.time_zone)).date()


def _range_problem(exc: reports.RangeError) -> str:
    """What to change, in the visitor's language."""
    start = exc.field_name == "start"
    if exc.reason == "not_a_date":
        return (gettext("The start date is not a date. Choose a day in the calendar, or type "
                        "it as 2026-11-30.") if start else
                gettext("The end date is not a date. Choose a day in the calendar, or type "
                        "it as 2026-11-30."))
    if exc.reason == "years":
        return (gettext("The start date must be between the years 2000 and 2099.") if start
                else gettext("The end date must be between the years 2000 and 2099."))
    if exc.reason == "end_before_start":
        return gettext("The end date is before the start date. Choose an end date on or "
                       "after the start date.")
    return gettext("That is more than %(n)s days. Choose a shorter range (a year at most), "
                   "or export the year in parts.", n=reports.MAX_DAYS)


def _requested_range(today: date) -> reports.DateRange:
    """The range in the address; a preset (``?last=7``) wins over start and end."""
    preset = request.args.get("last", "")
    for key, days in PRESETS:
        if preset == key:
            return reports.last_days(today, days)
    return reports.parse_range(request.args.get("start"), request.args.get("end"), today)


# -- the page ---------------------------------------------------------------------------

@blueprint.get("/admin/reports")
@staff_page("admin")
def admin_reports() -> Any:
    """The reports of a date range: summary figures, charts, tables, CSV links."""
    today = office_today()
    context = _page_context(today)
    try:
        rng = _requested_range(today)
    except reports.RangeError as exc:
        return _problem_page(context, exc)
    with runtime().store.read() as tx:
        figures = reports.report(tx, rng)
    context.update(rng=rng, report=figures, start_text=rng.start.isoformat(),
                   end_text=rng.end.isoformat(), problem=None, problem_field=None,
                   query={"start": rng.start.isoformat(), "end": rng.end.isoformat()},
                   chosen=next((key for key, r in context["presets"] if r == rng), None),
                   earlier=shift_range(rng, -1), later=shift_range(rng, 1),
                   charts=_charts(figures), hours_shown=_hours_shown(figures.hours))
    return render_template("pages/reports/reports.html", **context)


def _page_context(today: date) -> dict[str, Any]:
    from ..domain.location import get_location
    from .admin.common import SECTIONS, reports_url, section_titles

    with runtime().store.read() as tx:
        clinic_name = get_location(tx)["name"]
    return {
        "staff": current_staff(), "today": today,
        "section": "reports", "sections": SECTIONS, "titles": section_titles(),
        "reports_url": reports_url(), "clinic_name": clinic_name,
        "presets": [(key, reports.last_days(today, days)) for key, days in PRESETS],
        "start_text": request.args.get("start", ""), "end_text": request.args.get("end", ""),
        "max_days": reports.MAX_DAYS, "fmt_int": fmt_int, "fmt_pct": fmt_pct,
        "fmt_duration": fmt_duration, "fmt_day": fmt_day, "rng": None,
    }


def _problem_page(context: dict[str, Any], exc: reports.RangeError) -> tuple[str, int]:
    """The form again, saying what to change (400)."""
    context.update(problem=_range_problem(exc), problem_field=exc.field_name)
    return render_template("pages/reports/reports.html", **context), 400


def _hours_shown(hours: Sequence[int]) -> range:
    """The hours of the day worth a column: from the first to the last busy one
    (at least 8 hours; 8–16 when nothing happened)."""
    busy = [h for h, n in enumerate(hours) if n]
    if not busy:
        return range(8, 17)
    first, last = busy[0], busy[-1]
    while last - first < 7:
        first, last = max(0, first - 1), min(23, last + 1)
    return range(first, last + 1)


def _charts(figures: reports.Report) -> dict[str, Any]:
    days = figures.days
    day_series = [
        (gettext("Completed"), charts.BLUE, [d.completed for d in days]),
        (gettext("No-show"), charts.AMBER, [d.no_show for d in days]),
        (gettext("Canceled"), charts.SLATE, [d.canceled for d in days]),
        (gettext("Not finished"), charts.TEAL, [d.not_finished for d in days]),
    ]
    hours = _hours_shown(figures.hours)
    per_day = charts.column_chart(
        [(fmt_day_short(d.day), fmt_day(d.day, "full")) for d in days], day_series, fmt_int)
    per_hour = charts.column_chart(
        [(f"{h:02d}", gettext("%(a)s–%(b)s", a=f"{h:02d}:00", b=f"{(h + 1) % 24:02d}:00"))
         for h in hours],
        [(gettext("Tickets"), charts.BLUE, [figures.hours[h] for h in hours])],
        fmt_int, width=600, height=300)

    def times(groups: Iterable[reports.GroupRow], kind: str) -> charts.RangeChart:
        rows = []
        for g in groups:
            t: reports.Times = getattr(g, kind)
            if not t.count:
                continue
            rows.append((g.name, _minutes(t.median_s), _minutes(t.p90_s),
                         f"{fmt_duration(t.median_s)} · {fmt_duration(t.p90_s)}"))
        return charts.range_chart(rows, fmt_minutes_tick, median_name=gettext("median"),
                                  p90_name=gettext("90th percentile"))

    no_show_rows = [(g.name, g.no_show_rate, fmt_pct(g.no_show_rate))
                    for g in figures.queues if g.no_show_rate is not None]
    no_show = charts.bar_chart(
        no_show_rows, lambda v: fmt_pct(v, decimals=abs(v * 100 - round(v * 100)) > 1e-9),
        top_value=max([0.1, *(v or 0 for _, v, _ in no_show_rows)]))
    return {
        "per_day": per_day, "per_hour": per_hour,
        "queue_wait": times(figures.queues, "wait"),
        "queue_service": times(figures.queues, "service"),
        "desk_wait": times(figures.desks, "wait"),
        "desk_service": times(figures.desks, "service"),
        "no_show": no_show,
    }


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


# -- CSV exports --------------------------------------------------------------------------

def csv_cell(value: Any) -> str:
    """A cell's text: numbers plainly, ``None`` empty, and text a spreadsheet would read
    as a formula (``= + - @``, tab, CR first) behind an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.1f}" if not value.is_integer() else str(int(value))
        return text
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with a header row, every cell through ``csv_cell``, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def _seconds(value: float | None) -> int | None:
    return None if value is None else round(value)


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


_GROUP_HEADER = ["completed", "no_shows", "canceled", "no_show_rate_pct", "waits_counted",
                 "wait_median_s", "wait_p90_s", "services_counted", "service_median_s",
                 "service_p90_s"]


def _group_cells(g: reports.GroupRow) -> list[Any]:
    return [g.completed, g.no_show, g.canceled, _rate(g.no_show_rate), g.wait.count,
            _seconds(g.wait.median_s), _seconds(g.wait.p90_s), g.service.count,
            _seconds(g.service.median_s), _seconds(g.service.p90_s)]


CSV_TABLES: dict[str, Callable[[reports.Report], tuple[list[str], list[list[Any]]]]] = {
    "days": lambda r: (["date", "tickets", "completed", "no_shows", "canceled",
                        "not_finished"],
                       [[d.day.isoformat(), d.tickets, d.completed, d.no_show, d.canceled,
                         d.not_finished] for d in r.days]),
    "hours": lambda r: (["hour", "tickets"],
                        [[f"{h:02d}:00", n] for h, n in enumerate(r.hours)]),
    "queues": lambda r: (["queue", "tickets", *_GROUP_HEADER],
                         [[g.name, g.tickets, *_group_cells(g)] for g in r.queues]),
    "desks": lambda r: (["desk", *_GROUP_HEADER],
                        [[g.name, *_group_cells(g)] for g in r.desks]),
}


@blueprint.get("/admin/reports/<name>.csv")
@staff_page("admin")
def admin_report_csv(name: str) -> Any:
    """One report of the range as a CSV download."""
    if name not in CSV_TABLES:
        abort(404)
    today = office_today()
    try:
        rng = _requested_range(today)
    except reports.RangeError as exc:
        return _problem_page(_page_context(today), exc)
    with runtime().store.read() as tx:
        figures = reports.report(tx, rng)
    header, rows = CSV_TABLES[name](figures)
    body = "\ufeff" + csv_text(header, rows)
    filename = f"jonot-{name}-{rng.start.isoformat()}_{rng.end.isoformat()}.csv"
    return Response(body.encode("utf-8"), 200, {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    })


def shift_range(rng: reports.DateRange, direction: int) -> reports.DateRange:
    """The range of the same length just before (-1) or after (+1)."""
    step = timedelta(days=rng.days * direction)
    return reports.DateRange(rng.start + step, rng.end + step)
