"""Bad input to every endpoint gets the one problem+json shape, never HTML or a traceback.

The operations are read from the OpenAPI document, so an endpoint added there
is covered here without editing this file.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from jonot_local.api.openapi import build_document

DOC = build_document()
METHODS = ("get", "post", "put", "patch", "delete")
PROBLEM = "application/problem+json"
_schemas = DOC["components"]["schemas"]
PROBLEM_SCHEMA = {**_schemas["Problem"], "properties": {
    **_schemas["Problem"]["properties"],
    "errors": {"type": "array", "items": _schemas["FieldError"]}}}


def operations(with_body: bool | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            if with_body is not None and ("requestBody" in op) != with_body:
                continue
            out.append((method, path, op))
    return out


def op_id(value: Any) -> str:
    return value["operationId"] if isinstance(value, dict) else str(value)


def assert_problem(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is problem JSON with this status (and code), and no traceback."""
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.mimetype == PROBLEM, r.mimetype
    body = r.json
    assert body["status"] == status
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["code"] == code, body
    jsonschema.validate(body, PROBLEM_SCHEMA)
    text = r.get_data(as_text=True)
    assert "Traceback" not in text and "File \"" not in text
    return body


# One office for the whole module (conftest's shared world): these requests are refused
# and change nothing.
pytestmark = pytest.mark.shared_world(hash_miss_per_min=100_000)


@pytest.fixture(scope="module")
def ids(world: Any) -> dict[str, Any]:
    """Real ids for every path parameter: a waiting ticket of queue A among them."""
    client = world.app.test_client()

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = client.post(path, json=body, headers=world.admin)
        assert r.status_code == 201, r.json
        return r.json

    a = post("/api/v1/queues", {"name": "General", "prefix": "A"})
    lab = post("/api/v1/queues", {"name": "Laboratory", "prefix": "L"})
    room1 = post("/api/v1/desks", {"name": "Room 1", "queue_ids": [a["id"]]})
    display = post("/api/v1/displays", {"name": "Lobby"})
    ticket = post(f"/api/v1/queues/{a['id']}/tickets", {})
    device = post("/api/v1/devices", {"kind": "kiosk", "name": "Lobby kiosk"})
    return {"queue_id": a["id"], "desk_id": room1["id"], "id": ticket["id"],
            "hash": ticket["hash"], "display_id": display["id"], "lab": lab["id"],
            "device_id": device["id"], "version": ticket["version"]}


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], path)


def valid_body(op: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """A body that passes validation for the operation (so one bad field stands out)."""
    return {
        "issueToken": {"username": "admin", "password": "admin-password"},
        "createQueue": {"name": "Pharmacy", "prefix": "P"},
        "createDesk": {"name": "Room 9", "queue_ids": [ids["queue_id"]]},
        "createDisplay": {"name": "Hall"},
        "registerDevice": {"kind": "display", "name": "Hall TV"},
        "updateDevice": {"printer": None},
        "updateTicket": {"version": ids["version"]},
        "ticketCall": {"desk_id": ids["desk_id"]},
        "ticketTransfer": {"queue_id": ids["lab"]},
        "ticketReorder": {"after": None},
    }.get(op["operationId"], {})


def body_schema(op: dict[str, Any]) -> dict[str, Any]:
    name = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    return DOC["components"]["schemas"][name]


BODY_OPS = operations(with_body=True)
ALL_OPS = operations()


# -- bodies -------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,op", BODY_OPS, ids=op_id)
def test_malformed_json_is_400(client, admin_headers, ids, method, path, op):
    r = client.open(fill(path, ids), method=method.upper(), data=b'{"name": "x",',
                    content_type="application/json", headers=admin_headers)
    assert_problem(r, 400, "bad_request")


@pytest.mark.parametrize("method,path,op", BODY_OPS, ids=op_id)
@pytest.mark.parametrize("payload", [b"[]", b"null", b'"text"', b"42", b"\xff\xfe{",
                                     b'{"name": "\\ud800"}', b"[" * 5000 + b"]" * 5000],
                         ids=["array", "null", "string", "number", "not-utf8", "surrogate",
                              "deep"])
def test_a_body_that_is_not_a_json_object_is_400(client, admin_headers, ids, method, path,
                                                 op, payload):
    r = client.open(fill(path, ids), method=method.upper(), data=payload,
                    content_type="application/json", headers=admin_headers)
    assert_problem(r, 400, "bad_request")


@pytest.mark.parametrize("method,path,op", BODY_OPS, ids=op_id)
@pytest.mark.parametrize("content_type,payload", [
    ("text/plain", b'{"name": "x"}'),
    ("application/x-www-form-urlencoded", b"name=x&prefix=B"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data; "
                                         b'name="name"\r\n\r\nx\r\n--zz--\r\n'),
], ids=["text", "form", "multipart"])
def test_a_body_that_is_not_json_is_415(client, admin_headers, ids, method, path, op,
                                        content_type, payload):
    r = client.open(fill(path, ids), method=method.upper(), data=payload,
                    content_type=content_type, headers=admin_headers)
    assert_problem(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("method,path,op", BODY_OPS, ids=op_id)
def test_a_body_over_the_limit_is_413(client, admin_headers, ids, method, path, op):
    big = json.dumps({"name": "x" * (300 * 1024)})
    r = client.open(fill(path, ids), method=method.upper(), data=big,
                    content_type="application/json", headers=admin_headers)
    assert_problem(r, 413, "payload_too_large")


@pytest.mark.parametrize("method,path,op", BODY_OPS, ids=op_id)
def test_unknown_fields_are_named_in_a_422(client, admin_headers, ids, method, path, op):
    body = {**valid_body(op, ids), "frobnicate": 1}
    r = client.open(fill(path, ids), method=method.upper(), json=body, headers=admin_headers)
    problem = assert_problem(r, 422, "validation_error")
    assert problem["errors"] == [{"field": "frobnicate", "message": "is not a known field"}]


def _wrong_value(schema: dict[str, Any]) -> Any:
    """A value of a type the property's schema does not accept."""
    for candidate in (12345, "text", True, [1], {"a": 1}, 1.5):
        try:
            jsonschema.validate(candidate, schema)
        except jsonschema.ValidationError:
            return candidate
    raise AssertionError(f"every candidate fits {schema}")


WRONG_TYPES = [
    pytest.param(method, path, op, prop, id=f"{op['operationId']}.{prop}")
    for method, path, op in BODY_OPS
    for prop in body_schema(op)["properties"]
]


@pytest.mark.parametrize("method,path,op,prop", WRONG_TYPES)
def test_a_field_of_the_wrong_type_is_named_in_a_422(client, admin_headers, ids, method, path,
                                                     op, prop):
    wrong = _wrong_value(body_schema(op)["properties"][prop])
    body = {**valid_body(op, ids), prop: wrong}
    r = client.open(fill(path, ids), method=method.upper(), json=body, headers=admin_headers)
    problem = assert_problem(r, 422, "validation_error")
    fields = [e["field"] for e in problem["errors"]]
    assert any(f == prop or f.startswith(prop + "[") for f in fields), (wrong, problem)
    assert all(set(e) == {"field", "message"} for e in problem["errors"])


@pytest.mark.parametrize("method,path,op",
                         [o for o in BODY_OPS if body_schema(o[2]).get("required")],
                         ids=op_id)
def test_missing_required_fields_are_a_422(client, admin_headers, ids, method, path, op):
    r = client.open(fill(path, ids), method=method.upper(), json={}, headers=admin_headers)
    problem = assert_problem(r, 422, "validation_error")
    required = body_schema(op)["required"]
    assert problem["errors"] and problem["errors"][0]["field"] in required


# -- ids, paths, methods ----------------------------------------------------------------

UNKNOWN = {"queue_id": "01UNKNOWNQUEUE0000000000000", "desk_id": "01UNKNOWNDESK00000000000000",
           "id": "01UNKNOWNTICKET0000000000000", "display_id": "01UNKNOWNDISPLAY00000000000",
           "device_id": "01UNKNOWNDEVICE000000000000", "hash": "AAAAAAAAAAAAAAAAAAAAAA"}
ID_OPS = [o for o in ALL_OPS if "{" in o[1]]


@pytest.mark.parametrize("method,path,op", ID_OPS, ids=op_id)
def test_unknown_ids_are_404_not_found(client, admin_headers, ids, method, path, op):
    body = valid_body(op, ids) if "requestBody" in op else None
    if op["operationId"] == "updateTicket":
        body = {"version": 1}
    r = client.open(fill(path, UNKNOWN), method=method.upper(), json=body,
                    headers=admin_headers)
    assert_problem(r, 404, "not_found")


@pytest.mark.parametrize("path", list(DOC["paths"]))
def test_an_undocumented_method_is_405_with_allow(client, admin_headers, ids, path):
    documented = {m.upper() for m in DOC["paths"][path] if m in METHODS}
    method = next(m for m in ("DELETE", "PUT", "PATCH", "POST") if m not in documented)
    r = client.open(fill(path, ids), method=method, headers=admin_headers)
    assert_problem(r, 405, "method_not_allowed")
    allowed = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allowed - {"HEAD", "OPTIONS"} == documented


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/queues/x/y/z", "/api/v2/queues",
                                  "/api/", "/api/v1/tickets/by-hash/"])
def test_unknown_api_paths_are_problem_404(client, path):
    r = client.get(path, headers={"Accept": "text/html"})
    assert_problem(r, 404, "not_found")


# -- query parameters --------------------------------------------------------------------

@pytest.mark.parametrize("query,field", [
    ("limit=0", "limit"), ("limit=501", "limit"), ("limit=abc", "limit"), ("limit=1.5", "limit"),
    ("limit=%D9%A3", "limit"), ("offset=-1", "offset"), ("offset=" + "9" * 30, "offset"),
    ("state=bogus", "state"), ("source=fax", "source"), ("sort=name", "sort"),
    ("created_after=yesterday", "created_after"),
    ("created_before=9999-12-31T23:59:59-01:00", "created_before"),
    ("queue=" + ",".join(f"q{i}" for i in range(101)), "queue"),
])
def test_bad_list_parameters_are_a_422(client, admin_headers, query, field):
    r = client.get(f"/api/v1/tickets?{query}", headers=admin_headers)
    problem = assert_problem(r, 422, "validation_error")
    assert problem["errors"][0]["field"] == field


@pytest.mark.parametrize("path", ["/api/v1/queues", "/api/v1/desks", "/api/v1/displays"])
def test_every_list_bounds_its_limit(client, admin_headers, path):
    r = client.get(f"{path}?limit=501", headers=admin_headers)
    assert_problem(r, 422, "validation_error")


# -- crashes ------------------------------------------------------------------------------

CRASHES = [
    ("jonot_local.domain.queues.list_queues", "GET", "/api/v1/queues", None),
    ("jonot_local.domain.tickets.issue", "POST", "/api/v1/queues/{queue_id}/tickets", {}),
    ("jonot_local.domain.tickets.call_next", "POST", "/api/v1/desks/{desk_id}/call-next", None),
    ("jonot_local.domain.tickets.find_by_hash", "GET", "/api/v1/tickets/by-hash/{hash}", None),
    ("jonot_local.domain.listing.list_tickets", "GET", "/api/v1/tickets", None),
    ("jonot_local.domain.users.open_session", "POST", "/api/v1/auth/token",
     {"username": "admin", "password": "admin-password"}),
]


@pytest.mark.parametrize("target,method,path,body", CRASHES, ids=[c[0] for c in CRASHES])
def test_an_unexpected_exception_is_a_500_problem_without_details(
        client, admin_headers, ids, monkeypatch, caplog, target, method, path, body):
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret-internal-detail /etc/passwd")

    monkeypatch.setattr(target, boom)
    r = client.open(fill(path, ids), method=method, json=body, headers=admin_headers)
    problem = assert_problem(r, 500, "internal_error")
    assert "secret-internal-detail" not in r.get_data(as_text=True)
    assert "RuntimeError" not in r.get_data(as_text=True)
    assert problem["message"]
    assert any("unexpected error" in rec.getMessage() for rec in caplog.records)


# -- never HTML ------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,op", ALL_OPS, ids=op_id)
def test_no_api_answer_is_html(client, ids, method, path, op):
    """Anonymous, garbage headers and query: whatever the status, the body is JSON."""
    headers = {"Accept": "text/html", "Authorization": "Basic Zm9vOmJhcg=="}
    query = "?limit=-5&state=%00"
    if "events" in path:  # a stream would stay open: check only its refusals
        headers.pop("Authorization")
        path = path.replace("{hash}", UNKNOWN["hash"])
        query = "?display=nope"
    r = client.open(fill(path, ids) + query, method=method.upper(),
                    headers=headers, data=b"<html>", content_type="text/html")
    assert r.mimetype in ("application/json", PROBLEM), (r.status_code, r.mimetype)
    assert "<html" not in r.get_data(as_text=True).lower()


def test_a_body_is_read_alike_below_and_above_the_small_body_size(client, admin_headers, ids):
    """A body of up to ``SMALL_BODY`` bytes is read straight from the server's buffer, a
    bigger one through werkzeug's stream: both give the same ticket, as does ``{}``
    written with a space and a JSON type with a charset."""
    from jonot_local.api.common import SMALL_BODY

    path = f"/api/v1/queues/{ids['queue_id']}/tickets"
    small = json.dumps({"name": "Ann Small"})
    big = small[:-1] + " " * (SMALL_BODY + 10) + "}"
    assert len(small) < SMALL_BODY < len(big)
    for body, content_type in ((small, "application/json"), (big, "application/json"),
                               (small, "application/json; charset=utf-8")):
        r = client.post(path, data=body, headers={**admin_headers, "Content-Type": content_type})
        assert r.status_code == 201, r.json
        assert r.json["name"] == "Ann Small"
    for body in ("{}", "{ }"):
        r = client.post(path, data=body, headers={**admin_headers,
                                                  "Content-Type": "application/json"})
        assert r.status_code == 201 and r.json["name"] is None
    r = client.post(path, data=small, headers={**admin_headers, "Content-Type": "text/plain"})
    assert_problem(r, 415, "unsupported_media_type")
