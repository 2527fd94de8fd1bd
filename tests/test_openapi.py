"""The OpenAPI document is valid, names exactly the real routes, and the app keeps to it.

schemathesis drives every operation (positive and negative data, plus its
coverage cases) against a seeded office through the WSGI app, with an admin's
token, and again anonymously for the public operations.
"""

from __future__ import annotations

import re
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from jonot_local.api.openapi import build_document
from jonot_local.app import create_app
from jonot_local.domain import queues, tickets, users

from .support import ADMIN

METHODS = {"get", "post", "put", "patch", "delete"}
DOC = build_document()


def _flask_path(rule: str) -> str:
    """``/tickets/<ticket_id>/call`` → ``/tickets/{}/call`` (parameter names aside)."""
    return re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "{}", rule)


def _doc_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _app_routes(app: Any) -> set[tuple[str, str]]:
    return {(_flask_path(rule.rule), method.lower())
            for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
            for method in rule.methods if method.lower() in METHODS}


def _doc_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(_doc_path(path), method) for path, item in doc["paths"].items()
            for method in item if method in METHODS}


# -- the document ------------------------------------------------------------------------

def test_document_is_valid_openapi_3_1(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = r.json
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema and its JSON Schemas


# Pages for people under /api/v1, deliberately not operations of the JSON API.
PAGES = {("/api/v1/docs", "get")}


def test_every_route_is_documented_and_every_documented_route_exists(app):
    in_app, in_doc = _app_routes(app) - PAGES, _doc_routes(DOC)
    assert _app_routes(app) >= PAGES
    assert in_app - in_doc == set(), "routes missing from the OpenAPI document"
    assert in_doc - in_app == set(), "documented operations the app does not have"


def test_path_parameters_are_declared_for_every_operation():
    for path, item in DOC["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in [*item.get("parameters", []),
                                            *op.get("parameters", [])] if p["in"] == "path"}
            assert declared == names, (method, path)


def test_operations_say_who_may_call_them_and_protect_staff_ones():
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            role = op["x-jonot-role"]
            assert role in ("anyone", "holder", "staff", "admin"), (method, path)
            if role in ("staff", "admin"):
                assert op["security"] == [{"bearer": []}], (method, path)
                assert "401" in op["responses"], (method, path)
            if role == "admin":
                assert "403" in op["responses"], (method, path)
            assert op["operationId"]


def test_event_streams_are_documented_as_server_sent_events():
    for path in ("/api/v1/events", "/api/v1/tickets/by-hash/{hash}/events"):
        content = DOC["paths"][path]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]


def test_errors_are_documented_as_problem_json():
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for status, resp in op["responses"].items():
                if int(status) >= 400:
                    name = resp["$ref"].rsplit("/", 1)[1]
                    content = DOC["components"]["responses"][name]["content"]
                    assert list(content) == ["application/problem+json"], (method, path)


def test_enums_follow_the_domain():
    from jonot_local.domain.model import SOURCES, STATES
    from jonot_local.domain.queues import PICK_MODES

    schemas = DOC["components"]["schemas"]
    assert schemas["Ticket"]["properties"]["state"]["enum"] == list(STATES)
    assert schemas["Ticket"]["properties"]["source"]["enum"] == list(SOURCES)
    assert schemas["Desk"]["properties"]["pick_mode"]["enum"] == list(PICK_MODES)
    assert schemas["Ticket"]["properties"]["priority"]["enum"] == ["normal", "priority"]


# -- request bodies: the checks and the schemas come from one declaration --------------------

# Keywords that document the domain's content rules (checked there, with its messages).
_DOMAIN_RULES = {"minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems"}
CANDIDATES = [12345, 0, -5, 2**40, 1.5, "text", "", "kiosk", "normal", "oldest", True, False,
              None, [], ["x"], [1], {}, {"a": 1}]


def _type_part(schema: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in schema.items() if k not in _DOMAIN_RULES}
    if out.get("items") not in (None, {"type": "string"}):
        out.pop("items")  # list items are the domain's to check (labels, extra fields)
    return out


def test_request_schemas_are_the_declarations_and_refuse_what_they_refuse():
    import jsonschema

    from jonot_local.api.openapi import BODIES

    schemas = DOC["components"]["schemas"]
    for body in BODIES:
        assert schemas[body.__name__] == body.schema()
        for name, field in body.fields.items():
            schema = _type_part(field.json_schema())
            for value in CANDIDATES:
                valid = jsonschema.Draft202012Validator(schema).is_valid(value)
                accepted = field.problem(value) is None
                assert valid == accepted, (body.__name__, name, value)


def test_a_body_names_every_bad_field_and_unknown_ones_first():
    from jonot_local.api.tickets import JoinRequest
    from jonot_local.domain.errors import ValidationError

    with pytest.raises(ValidationError) as err:
        JoinRequest.parse({"labels": {}, "name": 1, "priority": "high"})
    assert [e["field"] for e in err.value.errors] == ["name", "priority", "labels"]
    with pytest.raises(ValidationError) as err:
        JoinRequest.parse({"name": 1, "nmae": "Aino"})
    assert err.value.errors == [{"field": "nmae", "message": "is not a known field"}]
    assert JoinRequest.parse({"name": None, "labels": []}) == {"name": None, "labels": []}


def test_every_ticket_action_has_its_operation():
    from jonot_local.domain.tickets import TRANSITIONS

    for name, action in TRANSITIONS.items():
        op = DOC["paths"][f"/api/v1/tickets/{{id}}/{name}"]["post"]
        assert op["summary"] == action.summary and op["x-jonot-role"] == "staff"
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + action.body.__name__)


# -- schemathesis ----------------------------------------------------------------------------

def _seed(app: Any) -> dict[str, list[str]]:
    """An office with queues, desks, a display and tickets in every state; returns the ids."""
    store = app.extensions["jonot"].store
    with store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
        a = queues.create_queue(tx, name="General", prefix="A")
        lab = queues.create_queue(tx, name="Laboratory", prefix="L")
        queues.create_queue(tx, name="Closed", prefix="C", is_open=False)
        room1 = queues.create_desk(tx, name="Room 1", queue_ids=[a.id])
        room2 = queues.create_desk(tx, name="Room 2", queue_ids=[a.id, lab.id],
                                   pick_mode="oldest")
        display = queues.create_display(tx, name="Lobby", queue_ids=[])
        made = [tickets.join(tx, q.id, source=src, name="Maija", labels=["VIP"],
                             extra=[{"title": "Reason", "value": "x"}])
                for q, src in ((a, "kiosk"), (a, "remote"), (lab, "desk"), (a, "kiosk"),
                               (lab, "kiosk"), (a, "remote"))]
        tickets.call(tx, made[1].id, room1.id)
        tickets.call(tx, made[2].id, room2.id)
        tickets.complete(tx, made[2].id)
        tickets.call(tx, made[3].id, room2.id)
        tickets.skip(tx, made[3].id)
        tickets.cancel(tx, made[4].id, by="customer")
    with store.read() as tx:
        all_queues = [q.id for q in queues.list_queues(tx)]
    return {"queue_id": all_queues, "desk_id": [room1.id, room2.id],
            "display_id": [display["id"]], "id": [t.id for t in made],
            "hash": [t.hash for t in made]}


KNOWN: dict[str, list[str]] = {}  # ids of the seeded office of this worker's contract app


@pytest.fixture(scope="module")
def contract_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One seeded office per module (and xdist worker), shared by the schemathesis items."""
    app = create_app({"data_dir": tmp_path_factory.mktemp("contract"),
                      "hash_lookup_floor_ms": 0, "hash_lookup_per_min": 1_000_000,
                      "hash_miss_per_min": 1_000_000, "join_per_min": 1_000_000,
                      "join_live_max": 1_000_000})
    KNOWN.clear()
    KNOWN.update(_seed(app))
    store = app.extensions["jonot"].store
    with store.write() as tx:
        admin = tx.one("SELECT id FROM users WHERE username = ?", (ADMIN[0],))["id"]
        token, _ = users.issue_token(tx, admin, 3600)
    app.extensions["contract_token"] = token
    yield app
    store.close()


schema = schemathesis.openapi.from_dict(DOC).exclude(tag="streams")


@schema.hook("flatmap_path_parameters")
def real_ids_too(ctx: Any, path_parameters: dict[str, Any]) -> Any:
    """Random ids only reach the 404 paths: mix in the seeded office's ids."""
    if not path_parameters:
        return st.just(path_parameters)
    return st.fixed_dictionaries({
        name: st.sampled_from([value, *KNOWN.get(name, [])])
        for name, value in path_parameters.items()})


CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    unsupported_method,
    allow_header_conformance,
]
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
PUBLIC = [op["operationId"] for item in DOC["paths"].values()
          for method, op in item.items()
          if method in METHODS and op["x-jonot-role"] in ("anyone", "holder")
          and "streams" not in op["tags"]]


@pytest.mark.slow
@schema.parametrize()
@SETTINGS
def test_api_keeps_to_its_document_as_admin(case: Any, contract_app: Any) -> None:
    token = contract_app.extensions["contract_token"]
    case.call_and_validate(app=contract_app, checks=CHECKS,
                           headers={"Authorization": f"Bearer {token}"})


public_schema = schema.include(operation_id=PUBLIC)


@pytest.mark.slow
@public_schema.parametrize()
@SETTINGS
def test_api_keeps_to_its_document_anonymously(case: Any, contract_app: Any) -> None:
    case.call_and_validate(app=contract_app, checks=CHECKS)
