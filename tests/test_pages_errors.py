"""Browsers get a friendly HTML page for errors outside the API, never a traceback."""

from __future__ import annotations


def test_unknown_page_is_a_friendly_404(client):
    r = client.get("/no-such-page")
    assert r.status_code == 404 and r.mimetype == "text/html"
    text = r.get_data(as_text=True)
    assert "This page does not exist" in text and "Check the address" in text
    assert "Traceback" not in text and "werkzeug" not in text.lower()


def test_crash_on_a_page_is_a_friendly_500(app):
    @app.get("/boom-page")
    def boom() -> str:
        raise RuntimeError("secret internals /srv/jonot/db.py line 42")

    r = app.test_client().get("/boom-page")
    assert r.status_code == 500 and r.mimetype == "text/html"
    text = r.get_data(as_text=True)
    assert "Something went wrong" in text and "Nothing was changed" in text
    assert "secret internals" not in text and "Traceback" not in text


def test_serve_lists_only_pages_that_exist(app):
    from jonot_local.api.errors import available_pages

    # the listed URLs must all answer
    assert available_pages(app) == [("Kiosk", "/kiosk"), ("Display", "/display"),
                                    ("Desk", "/desk"), ("Admin", "/admin")]
