"""The reports page in Chromium: tickets made through the API (and a week of history
written to the server's database file by another process), the admin signs in, the
charts are drawn, and the CSV downloaded from the page adds up to the tickets made."""

from __future__ import annotations

import csv
import io
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ADMIN

pytestmark = pytest.mark.slow

LAPTOP = (1366, 768)


def _post(office: Any, path: str, body: dict[str, Any] | None = None) -> Any:
    r = requests.post(office.url + "/api/v1" + path, headers=office.staff, json=body or {},
                      timeout=10)
    r.raise_for_status()
    return r.json()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_history(office: Any, days: int = 6) -> int:
    """Finished tickets of the days before today, inserted into the live server's database
    by this process (the report triggers count them as they land). Returns how many."""
    rnd = random.Random(7)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = []
    number = 100_000
    for back in range(days, 0, -1):
        day = today - timedelta(days=back)
        for queue, per_day in ((office.queue, rnd.randint(40, 70)), (office.lab,
                                                                    rnd.randint(12, 25))):
            for _ in range(per_day):
                number += 1
                joined = day + timedelta(hours=rnd.choice([8, 8, 9, 9, 9, 10, 10, 11, 12, 13,
                                                           13, 14, 15]), minutes=rnd.randint(0, 59))
                called = joined + timedelta(seconds=rnd.randint(60, 2400))
                ended = called + timedelta(seconds=rnd.randint(150, 900))
                state = rnd.choices(["COMPLETED", "SKIPPED", "CANCELED"], [88, 8, 4])[0]
                rows.append((
                    f"HIST{number}", queue["id"], queue["id"], number,
                    f"{queue['prefix']}{number}", f"hist{number:018d}", state, "kiosk",
                    float(number), office.desk["id"] if state != "CANCELED" else None,
                    _iso(joined), _iso(called) if state != "CANCELED" else None,
                    _iso(ended) if state == "COMPLETED" else None,
                    _iso(ended) if state == "SKIPPED" else None,
                    _iso(joined + timedelta(minutes=5)) if state == "CANCELED" else None,
                    "customer" if state == "CANCELED" else None, _iso(ended)))
    conn = sqlite3.connect(office.server.data_dir / "jonot.sqlite3", timeout=10)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO tickets (id, queue_id, origin_queue_id, number, code, hash, state, "
                "source, order_key, desk_id, created_at, called_at, completed_at, skipped_at, "
                "canceled_at, canceled_by, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()
    return len(rows)


def _today_through_the_api(office: Any) -> int:
    """Tickets of today: served, a no-show, one canceled, two left waiting."""
    made = [office.join(office.queue) for _ in range(6)] + [office.join(office.lab)
                                                            for _ in range(2)]
    for _ in range(5):
        called = office.call_next()
        _post(office, f"/tickets/{called['id']}/{'skip' if called['number'] == 2 else 'complete'}")
    _post(office, f"/tickets/{made[-1]['id']}/cancel")
    return len(made)


def _csv_from(page: Any, link: str) -> list[dict[str, str]]:
    with page.expect_download() as info:
        page.click(link)
    download = info.value
    assert download.suggested_filename.startswith("jonot-")
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_the_manager_reads_the_week_and_downloads_it(open_page, office, artifacts):
    history = _write_history(office)
    today = _today_through_the_api(office)
    page, _ = open_page("/admin/reports", *LAPTOP, sound=False)
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    page.click("button[type=submit]")
    page.wait_for_selector("svg[data-chart=per-day]")
    assert "Reports" in page.title()
    for chart in ("per-day", "per-hour", "no-show", "queue-wait", "queue-service",
                  "desk-wait", "desk-service"):
        svg = page.locator(f"svg[data-chart={chart}]")
        assert svg.get_attribute("role") == "img"
        assert svg.bounding_box()["width"] > 300, chart
    assert page.locator("svg[data-chart=per-day] .col rect").count() >= 7
    assert page.locator("[data-stat=tickets]").inner_text() == f"{history + today:,}"
    page.screenshot(path=str(artifacts / "reports-1366x768.png"))
    page.screenshot(path=str(artifacts / "reports-1366x768-full.png"), full_page=True)

    days = _csv_from(page, "a.csv[href*='days.csv']")
    assert len(days) == 7
    assert sum(int(d["tickets"]) for d in days) == history + today
    assert int(days[-1]["tickets"]) == today and int(days[-1]["not_finished"]) == 2
    queues = _csv_from(page, "a.csv[href*='queues.csv']")
    assert sum(int(q["tickets"]) for q in queues) == history + today

    page.get_by_role("link", name="Today").click()
    page.wait_for_selector("[aria-current=true]")
    assert page.locator("[data-stat=tickets]").inner_text() == str(today)
    hours = _csv_from(page, "a.csv[href*='hours.csv']")
    assert sum(int(h["tickets"]) for h in hours) == today
    assert page.js_errors == []
