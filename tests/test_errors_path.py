"""One error path: every exception class answers problem JSON under /api/, a friendly
HTML page elsewhere and a small HTML banner to htmx, never a traceback.

A test-only blueprint raising each kind of exception is mounted twice, under
``/api/probe`` and ``/probe``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, abort
from werkzeug.exceptions import TooManyRequests

from jonot_local.api.errors import ApiError
from jonot_local.domain import errors as de

from .support import build_app

SECRET = "secret internals /srv/jonot/db.py line 42"


def _raise(kind: str) -> Any:
    if kind == "domain":
        raise de.QueueClosed("The queue General is closed.", queue_id="q1")
    if kind == "validation":
        raise de.ValidationError.field("name", "must be at most 80 characters")
    if kind == "limited":
        raise de.RateLimited("Too many tries; wait a little.", retry_after=7.2)
    if kind == "api":
        raise ApiError(403, "forbidden", "This needs an admin account.")
    if kind == "http":
        abort(409)
    if kind == "http-described":
        abort(404, "No ticket has this number.")
    if kind == "busy":
        raise TooManyRequests(retry_after=30)
    if kind == "own-response":
        abort(Response("teapot", status=418, mimetype="text/plain"))
    if kind == "markup":
        raise de.ValidationError("<script>alert(1)</script> is not a name")
    raise RuntimeError(SECRET)


# kind -> (status, code, words a person should read on the page)
CASES = {
    "domain": (409, "queue_closed", "The queue General is closed."),
    "validation": (422, "validation_error", "must be at most 80 characters"),
    "limited": (429, "rate_limited", "Too many tries; wait a little."),
    "api": (403, "forbidden", "This needs an admin account."),
    "http": (409, "conflict", "conflict"),
    "http-described": (404, "not_found", "No ticket has this number."),
    "busy": (429, "rate_limited", "Too many tries"),
    "crash": (500, "internal_error", "Something went wrong"),
}


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app without accounts (nothing here signs in) with the probe mounted twice."""
    app = build_app(tmp_path_factory.mktemp("errors-path"))
    probe = Blueprint("probe", __name__)

    @probe.get("/<kind>")
    def fail(kind: str) -> Any:
        return _raise(kind)

    app.register_blueprint(probe, url_prefix="/api/probe", name="api_probe")
    app.register_blueprint(probe, url_prefix="/probe", name="page_probe")
    yield app
    app.extensions["jonot"].store.close()


def _no_internals(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text and SECRET not in text


@pytest.mark.parametrize("kind", CASES)
def test_api_requests_get_problem_json(probed, kind):
    status, code, _ = CASES[kind]
    r = probed.test_client().get(f"/api/probe/{kind}")
    assert (r.status_code, r.mimetype) == (status, "application/problem+json")
    body = r.json
    assert body["status"] == status and body["code"] == code and body["message"]
    _no_internals(r.get_data(as_text=True))
    if kind == "validation":
        assert body["errors"] == [{"field": "name", "message": "must be at most 80 characters"}]
    if kind == "domain":
        assert body["queue_id"] == "q1"
    if kind == "limited":
        assert r.headers["Retry-After"] == "8" and "retry_after" not in body
    if kind == "busy":
        assert r.headers["Retry-After"] == "30"


@pytest.mark.parametrize("kind", CASES)
def test_page_requests_get_a_friendly_page(probed, kind):
    status, _, words = CASES[kind]
    r = probed.test_client().get(f"/probe/{kind}")
    assert (r.status_code, r.mimetype) == (status, "text/html")
    text = r.get_data(as_text=True)
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert words in text and "{" not in text.split("<style>")[0]  # no raw JSON
    _no_internals(text)
    if kind == "limited":
        assert r.headers["Retry-After"] == "8"


@pytest.mark.parametrize("kind", CASES)
def test_htmx_requests_get_a_small_banner(probed, kind):
    status, code, words = CASES[kind]
    r = probed.test_client().get(f"/probe/{kind}", headers={"HX-Request": "true"})
    assert (r.status_code, r.mimetype) == (status, "text/html")
    text = r.get_data(as_text=True)
    assert "<html" not in text.lower() and len(text) < 1000
    assert 'role="alert"' in text and f'data-status="{status}"' in text
    assert f'data-code="{code}"' in text and str(status) in text and words in text
    _no_internals(text)


def test_the_api_answers_problem_json_even_to_htmx(probed):
    r = probed.test_client().get("/api/probe/domain", headers={"HX-Request": "true"})
    assert r.mimetype == "application/problem+json" and r.json["code"] == "queue_closed"


def test_a_view_that_aborts_with_its_own_response_keeps_it(probed):
    for path in ("/api/probe/own-response", "/probe/own-response"):
        r = probed.test_client().get(path)
        assert (r.status_code, r.get_data(as_text=True)) == (418, "teapot")


def test_page_text_is_escaped(probed):
    for headers in ({}, {"HX-Request": "true"}):
        text = probed.test_client().get("/probe/markup", headers=headers).get_data(as_text=True)
        assert "<script>alert" not in text and "&lt;script&gt;" in text


def test_a_crash_is_logged_with_its_traceback(probed, caplog):
    with caplog.at_level("ERROR", logger="jonot_local.api"):
        probed.test_client().get("/probe/crash")
    assert any(r.exc_info and SECRET in str(r.exc_info[1]) for r in caplog.records)


def test_bad_input_has_one_error_type():
    """An adapter cannot make a second kind of validation error."""
    with pytest.raises(TypeError, match="ValidationError"):
        ApiError(422, "validation_error", "name: is required")
    from jonot_local.api import common

    with pytest.raises(de.ValidationError) as err:
        common.field_type({"name": 5}, "name", str)
    assert err.value.errors == [{"field": "name", "message": "must be a string"}]
