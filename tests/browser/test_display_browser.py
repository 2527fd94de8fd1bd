"""The TV display in Chromium: live calls, announcements in order, a server restart."""

from __future__ import annotations

import re

import pytest

from tests.support import UNLIMITED_JOINS, LiveServer

pytestmark = pytest.mark.slow


def _live(page) -> None:
    page.wait_for_selector("html[data-stream=live]", timeout=10_000)


def _log(page) -> list[dict]:
    return page.evaluate("window.__jonotAnnouncements.slice()")


def test_display_shows_a_call_with_the_desk_and_announces_it(open_page, office, artifacts):
    page, _ = open_page(f"/display/{office.display['id']}", 1920, 1080)
    _live(page)
    page.evaluate("window.__notReloaded = true")
    ticket = office.join()
    called = office.call_next()
    hero = page.locator("#hero")
    hero.filter(has_text=ticket["code"]).wait_for(timeout=5000)
    assert "Room 3" in hero.inner_text()
    page.wait_for_function("window.__jonotAnnouncements.length >= 1", timeout=5000)
    entry = _log(page)[-1]
    assert entry["code"] == ticket["code"] and entry["desk"] == "Room 3"
    number = str(int(ticket["code"][1:]))
    assert entry["text"] == f"A {number}, Room 3"  # "A 1, Room 3": never "zero zero one"
    assert page.evaluate("window.__notReloaded") is True
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "display-1920x1080.png"))
    office.recall(called["id"])  # a recall is announced again
    page.wait_for_function("window.__jonotAnnouncements.length >= 2", timeout=5000)
    again = _log(page)[-1]
    assert again["code"] == ticket["code"] and again["recall"] is True
    assert page.locator("#recent").filter(has_text=ticket["code"]).count() == 0  # listed once
    page.set_viewport_size({"width": 3840, "height": 2160})
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "display-3840x2160.png"))
    assert page.js_errors == []


def test_a_busy_morning_keeps_everything_bounded(open_page, office):
    page, _ = open_page("/display", 1280, 720)
    _live(page)
    for _ in range(30):
        office.join()
        office.call_next()
    page.wait_for_function("window.__jonotAnnouncements.length >= 20", timeout=10_000)
    page.wait_for_timeout(500)
    assert page.evaluate("window.__jonotAnnouncements.length") == 20
    assert page.locator("#recent li").count() == 5
    assert page.js_errors == []


def test_two_quick_calls_are_both_shown_and_announced_in_order(open_page, office, artifacts):
    page, _ = open_page("/display", 1920, 1080)
    _live(page)
    first, second = office.join(), office.join()
    office.join(office.lab)
    office.call_next()
    office.call_next()
    # both at once: the first large (it keeps the place for its dwell), the second listed
    page.locator("#recent").filter(has_text=second["code"]).wait_for(timeout=5000)
    assert first["code"] in page.locator("#hero").inner_text()
    page.wait_for_function("window.__jonotAnnouncements.length >= 2", timeout=5000)
    assert [e["code"] for e in _log(page)[-2:]] == [first["code"], second["code"]]
    # the second takes the large place after the first's dwell, and is announced after it
    page.locator("#hero").filter(has_text=second["code"]).wait_for(timeout=10_000)
    page.wait_for_function(
        "window.__jonotAnnouncements.every(e => e.state !== 'queued' && e.state !== 'playing')",
        timeout=15_000)
    assert page.locator("#queues").filter(has_text="Laboratory").count() == 1
    page.set_viewport_size({"width": 1080, "height": 1920})
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "display-portrait-1080x1920.png"))


def test_sound_prompt_is_offered_and_remembered(open_page, office):
    page, _ = open_page("/display", 1920, 1080, sound=False)
    prompt = page.locator("#sound")
    prompt.wait_for(state="visible", timeout=5000)
    prompt.click()
    assert prompt.is_hidden()
    assert page.evaluate("localStorage.getItem('jonot.sound')") == "on"
    page.reload()
    _live(page)
    page.wait_for_timeout(500)
    assert page.locator("#sound").is_hidden()


def _overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (1080, 1920)],
                         ids=["720p", "1080p", "portrait"])
def test_sound_prompt_covers_no_part_of_the_board(open_page, office, artifacts, size):
    page, _ = open_page("/display", *size, sound=False)
    prompt = page.locator("#sound")
    prompt.wait_for(state="visible", timeout=5000)
    box = prompt.bounding_box()
    assert box is not None
    width, height = size
    assert box["x"] >= 0 and box["y"] >= 0
    assert box["x"] + box["width"] <= width and box["y"] + box["height"] <= height
    for part in ("section.now", "section.recent", "section.queues", "header, .bar"):
        other = page.locator(part).first.bounding_box()
        assert other is not None, part
        assert not _overlap(box, other), f"the sound prompt covers {part} at {width}x{height}"
    page.screenshot(path=str(artifacts / f"display-sound-prompt-{width}x{height}.png"))
    prompt.click()
    page.wait_for_timeout(200)
    # With sound on, the board takes the prompt's room back.
    board = page.locator("#board").bounding_box()
    assert board is not None and board["y"] + board["height"] >= height - 2


def test_finnish_display_has_no_english(open_page, office):
    from tests.test_pages_i18n import _english_fragments

    office.join()
    office.call_next()
    page, _ = open_page("/display?lang=fi", 1920, 1080)
    _live(page)
    text = page.inner_text("body").lower()  # as shown: some labels are upper-cased by CSS
    assert "nyt vuorossa" in text
    assert [e for e in _english_fragments() if e.lower() in text] == []
    texts = page.evaluate("JSON.parse(document.getElementById('jonot-config').textContent).texts")
    assert texts["say"] == "{code}, {desk}" and "odottaa" in texts["waiting_other"]


def test_display_recovers_from_a_server_restart(browser, tmp_path, artifacts):
    from tests.browser.conftest import Guard, Office
    from tests.support import seed_accounts

    data_dir = tmp_path / "data"
    seed_accounts(data_dir)
    server = LiveServer(data_dir, env=UNLIMITED_JOINS).start()
    try:
        office = Office(server)
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        guard = Guard(server.url)
        context.route("**/*", guard)
        page = context.new_page()
        page.goto(f"{server.url}/display/{office.display['id']}")
        _live(page)
        page.evaluate("window.__notReloaded = true")
        server.stop()
        page.wait_for_selector("#conn", state="visible", timeout=10_000)
        assert re.search(r"Reconnecting", page.inner_text("#conn"))
        server = LiveServer(data_dir, env=UNLIMITED_JOINS)
        server.port = int(office.url.rsplit(":", 1)[1])
        server.start()
        _live(page)
        ticket = office.join()
        office.call_next()
        page.locator("#hero").filter(has_text=ticket["code"]).wait_for(timeout=10_000)
        assert page.locator("#conn").is_hidden()
        assert page.evaluate("window.__notReloaded") is True
        assert guard.foreign == []
        context.close()
    finally:
        server.stop()


def test_display_without_eventsource_polls(browser, office):
    from tests.browser.conftest import Guard

    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script("delete window.EventSource")
    guard = Guard(office.url)
    context.route("**/*", guard)
    page = context.new_page()
    page.goto(office.url + "/display")
    _live(page)
    assert page.evaluate("typeof window.EventSource") == "undefined"
    ticket = office.join()
    office.call_next()
    page.locator("#hero").filter(has_text=ticket["code"]).wait_for(timeout=15_000)
    assert any("poll=1" in u for u in guard.seen) and guard.foreign == []
    context.close()


def test_without_a_browser_voice_the_server_speaks_in_the_display_language(open_page, office):
    """Headless Chromium has no speech voices (like many TVs): the display plays the WAV the
    server made with espeak-ng, in the display's own language (a display device set to fi)."""
    import shutil

    import requests

    from tests.support import token

    assert shutil.which("espeak-ng"), "espeak-ng missing: run tests/browser/ensure_chromium.sh"
    admin = token(office.url)
    device = requests.post(office.url + "/api/v1/devices", headers=admin, timeout=10,
                           json={"kind": "display", "name": "Aula TV"}).json()
    requests.patch(f"{office.url}/api/v1/devices/{device['id']}", headers=admin, timeout=10,
                   json={"options": {"language": "fi"}}).raise_for_status()
    answers: list[tuple[str, int, str]] = []

    def listen(page) -> None:
        page.on("response", lambda r: answers.append(
            (r.url, r.status, r.headers.get("content-type", ""))) if "/display/speech/" in r.url
            else None)

    page, _ = open_page(f"/display/{device['id']}", 1280, 720, before=listen)
    _live(page)
    voices = page.evaluate("window.speechSynthesis ? speechSynthesis.getVoices().length : 0")
    if voices:  # a Chromium with voices (speech-dispatcher): act as a TV without any
        page.evaluate("speechSynthesis.getVoices = function () { return []; }")
    ticket = office.join()
    office.call_next()
    page.wait_for_function(
        "window.__jonotAnnouncements.some(e => e.state === 'server' || e.state === 'chime')",
        timeout=15_000)
    entry = _log(page)[-1]
    assert entry["code"] == ticket["code"] and entry["state"] == "server", entry
    assert entry["text"] == f"A {int(ticket['code'][1:])}, Room 3"
    assert answers, "the display never asked the server for the announcement"
    url, status, kind = answers[-1]
    assert url.endswith(f"/display/speech/{ticket['code']}.wav?lang=fi")
    assert status == 200 and kind.startswith("audio/wav")
    assert page.js_errors == []
