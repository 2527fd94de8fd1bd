"""The OpenAPI 3.1 document of ``/api/v1``.

It describes what the code does, not an ideal: a test compares its paths and
methods with Flask's url_map both ways, and schemathesis checks the real
responses (bodies, status codes, headers) against it. Every operation carries
``x-jonot-role`` (``anyone``, ``holder``, ``staff`` or ``admin``) so tests can
walk the access rules from the document itself.

Derived, not written twice: the request body schemas come from the body
declarations (``jonot_local.bodies``, and the ``Body`` classes beside the
endpoints), the ticket actions' operations from the state machine's registry
(``tickets.TRANSITIONS``), the error codes from ``api.errors``. Response
schemas are written here.

Response objects are closed (``additionalProperties: false``) so that a field
the code starts returning must be documented here first; problem bodies stay
open, as RFC 9457 allows extension members (``state``, ``current_version`` …).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from .. import __version__
from ..bodies import Body, Empty, nullable
from ..domain.devices import KINDS as DEVICE_KINDS
from ..domain.listing import SORTS as TICKET_SORTS
from ..domain.model import SOURCES, STATES
from ..domain.queues import PICK_MODES
from ..domain.tickets import OUTCOMES, TRANSITIONS
from ..domain.users import ROLES
from ..ids import HASH_LENGTH
from . import errors as api_errors
from .auth_routes import TokenRequest
from .common import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET
from .desks import DeskCreate, DeskUpdate, DisplayCreate
from .devices import DeviceCreate, KioskOptions
from .printers import DeviceUpdate, PrinterTest
from .queues import QueueCreate, QueueUpdate
from .tickets import JoinRequest, TicketUpdate

JSON = "application/json"
PROBLEM = "application/problem+json"
SSE = "text/event-stream"



# -- small builders -------------------------------------------------------------------

def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Any], required: list[str] | tuple[str, ...] = (), *,
        closed: bool = True, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601"}
ID = {"type": "string", "description": "A ULID"}
DEVICE_OPTIONS = {"type": "object", "description": "A kiosk's options with their defaults "
                  "filled in (see KioskOptions); a display device: its display_id, if any; "
                  "other devices: {}"}
PAIRED_AT = {"type": ["string", "null"], "format": "date-time",
             "description": "When the device last opened its pairing link (null: not since "
                            "its credential was made)"}


# -- schemas ------------------------------------------------------------------------

def _printer_schemas() -> dict[str, Any]:
    state = {"type": "string", "enum": ["unknown", "ok", "failing"]}
    printer = obj({
        "uri": STR, "state": state,
        "last_ok_at": nullable(TIME), "last_error": nullable(STR),
        "last_error_kind": nullable({"type": "string", "enum": [
            "refused", "timeout", "reset", "no_paper", "unreachable", "usb"]}),
        "last_error_at": nullable(TIME), "failing_since": nullable(TIME),
        "printed": INT, "failed": INT, "queued": INT,
    }, ["uri", "state", "last_ok_at", "last_error", "printed", "failed", "queued"])
    return {
        "PrinterSummary": obj({
            "state": {"type": "string", "enum": ["off", "unknown", "ok", "failing"]},
            "printers": INT, "queue": INT, "running": BOOL,
        }, ["state", "printers", "queue", "running"],
            description="Receipt printing: the worst printer's state, the queue length"),
        "Printer": printer,
        "PrinterList": obj({
            "default": nullable(STR), "queue": INT, "running": BOOL,
            "items": {"type": "array", "items": ref("Printer")},
        }, ["default", "queue", "running", "items"]),
        "PrinterTestResult": obj({
            "uri": STR, "printed": BOOL, "error": nullable(STR), "state": ref("Printer"),
        }, ["uri", "printed", "error", "state"]),
    }


def _problem() -> dict[str, Any]:
    return obj({
        "type": {"type": "string", "format": "uri"},
        "title": STR,
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "code": {"type": "string", "description": "Stable machine code: "
                 + ", ".join(api_errors.error_codes())},
        "message": {"type": "string", "description": "For people: what went wrong and what "
                    "to do."},
        "detail": {"type": "string", "description": "Same as message (RFC 9457 name)."},
        "errors": {"type": "array", "items": ref("FieldError"),
                   "description": "Present for validation_error: one entry per bad field."},
    }, ["type", "title", "status", "code", "message", "detail"], closed=False,
        description="RFC 9457 problem details with a stable code. Extension members "
                    "(state, action, current_version, field, queue_id, desk_id) may appear.")


_TICKET_PUBLIC: dict[str, Any] = {
    "id": ID,
    "queue_id": ID,
    "number": {"type": "integer", "minimum": 1,
               "description": "Per queue, 1, 2, 3 … never reset or reused"},
    "code": {"type": "string", "description": "Prefix + number padded to 3 digits: A042"},
    "hash": {"type": "string", "minLength": HASH_LENGTH, "maxLength": HASH_LENGTH,
             "description": "The holder's bearer credential"},
    "state": {"type": "string", "enum": list(STATES)},
    "source": {"type": "string", "enum": list(SOURCES)},
    "labels": {"type": "array", "items": ref("Label")},
    "priority": {"type": "string", "enum": ["normal", "priority"]},
    "desk_id": nullable(ID),
    "recall_count": {"type": "integer", "minimum": 0},
    "created_at": TIME,
    "called_at": nullable(TIME),
    "completed_at": nullable(TIME),
    "skipped_at": nullable(TIME),
    "canceled_at": nullable(TIME),
    "canceled_by": nullable({"type": "string", "enum": ["customer", "staff"]}),
    "updated_at": TIME,
    "version": {"type": "integer", "minimum": 1,
                "description": "Grows on every change; send it back to edit safely"},
}
_TICKET_PRIVATE: dict[str, Any] = {
    "name": nullable(STR),
    "phone": nullable(STR),
    "notes": STR,
    "extra": {"type": "array", "items": ref("ExtraField")},
    "called_by": nullable({"type": "string", "description": "User id"}),
}
_TICKET_STATUS: dict[str, Any] = {
    "position": nullable({"type": "integer", "minimum": 1,
                          "description": "1 + tickets served before it; null unless WAITING"}),
    "estimated_wait_s": nullable({"type": "integer", "minimum": 0,
                                  "description": "About how long until it is called"}),
    "now_serving": nullable(ref("NowServing")),
    "desk_name": nullable({"type": "string", "description": "Where to go, once CALLED"}),
    "queue_name": STR,
}
_URL = {"url": {"type": "string", "format": "uri", "description": "The ticket page"},
        "cloud_url": nullable({"type": "string", "format": "uri",
                               "description": "The same ticket page on the cloud copy, "
                                              "reachable from anywhere (null: sync off)"})}


def _schemas() -> dict[str, dict[str, Any]]:
    pub, priv, stat = _TICKET_PUBLIC, _TICKET_PRIVATE, _TICKET_STATUS
    return {
        "Problem": _problem(),
        "FieldError": obj({"field": STR, "message": STR}, ["field", "message"]),
        "Label": obj({"value": STR, "color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
                      "public": {**BOOL, "description": "Shown to the ticket's holder too; "
                                 "false: staff only"}},
                     ["value", "color", "public"]),
        "ExtraField": obj({"title": STR, "value": STR}, ["title", "value"]),
        "NowServing": obj({
            "code": STR, "desk_id": nullable(ID), "desk_name": nullable(STR),
            "called_at": nullable(TIME),
        }, ["code", "desk_id", "desk_name", "called_at"],
            description="The code most recently called in a queue, and where to"),
        "Ticket": obj({**pub, **priv}, [*pub, *priv],
                      description="A ticket as staff see it (list items)"),
        "StaffTicket": obj({**pub, **priv, **stat}, [*pub, *priv, *stat],
                           description="A ticket as staff see it, with its position and wait"),
        "TicketDetail": obj(
            {**pub, **priv, **stat,
             "interactions": {"type": "array", "items": ref("Interaction")}},
            [*pub, *priv, *stat, "interactions"]),
        "HolderTicket": obj({**pub, **stat, **_URL}, [*pub, *stat, *_URL],
                            description="What the holder of the hash sees: no name, phone, "
                                        "notes, extra fields or staff ids"),
        "JoinedTicket": obj(
            {**pub, **priv, **stat, **_URL}, [*pub, *stat, *_URL],
            description="The new ticket. name, phone, notes, extra and called_by are "
                        "only returned to staff callers."),
        "Interaction": obj({
            "id": INT, "ticket_id": ID, "queue_id": ID, "desk_id": nullable(ID),
            "user_id": nullable(STR), "started_at": TIME, "ended_at": nullable(TIME),
            "outcome": nullable({"type": "string", "enum": list(OUTCOMES)}),
        }, ["id", "ticket_id", "queue_id", "desk_id", "user_id", "started_at", "ended_at",
            "outcome"], description="One call of a ticket and how it ended"),
        "Queue": obj({
            "id": ID, "name": STR, "prefix": {"type": "string", "pattern": "^[A-Z]{1,3}$"},
            "colour": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
            "open": BOOL, "sort_order": INT,
            "waiting": {"type": "integer", "minimum": 0},
            "now_serving": nullable(ref("NowServing")),
            "estimated_wait_s": {"type": "integer", "minimum": 0,
                                 "description": "For someone joining now"},
            "service_time_s": {"type": "number", "minimum": 0,
                               "description": "Learnt from recent services (median)"},
        }, ["id", "name", "prefix", "colour", "open", "sort_order", "waiting", "now_serving",
            "estimated_wait_s", "service_time_s"], description="A queue's public summary"),
        "Desk": obj({
            "id": ID, "name": STR, "pick_mode": {"type": "string", "enum": list(PICK_MODES)},
            "queue_ids": {"type": "array", "items": ID,
                          "description": "Served queues, in priority order"},
            "created_at": TIME, "updated_at": TIME,
        }, ["id", "name", "pick_mode", "queue_ids", "created_at", "updated_at"]),
        "Display": obj({
            "id": ID, "name": STR,
            "queue_ids": {"type": "array", "items": ID, "description": "Empty: every queue"},
            "language": nullable({"type": "string", "description": "Its page's and spoken "
                                  "announcements' language (null: the server's display "
                                  "language, else the TV browser's)"}),
            "created_at": TIME,
        }, ["id", "name", "queue_ids", "language", "created_at"],
            description="A display made with POST /displays, or a registered display device "
                        "(its options): GET /displays/{id}/state and /display/{id} take both"),
        "RecentCall": obj({
            "code": STR, "queue_id": ID, "desk_id": nullable(ID), "desk_name": nullable(STR),
            "called_at": TIME,
        }, ["code", "queue_id", "desk_id", "desk_name", "called_at"]),
        "DisplayState": obj({
            "display": ref("Display"),
            "queues": {"type": "array", "items": ref("Queue")},
            "recent_calls": {"type": "array", "items": ref("RecentCall"), "maxItems": 6,
                             "description": "Newest first"},
        }, ["display", "queues", "recent_calls"]),
        "User": obj({
            "id": ID, "username": STR, "display_name": STR,
            "role": {"type": "string", "enum": list(ROLES)}, "active": BOOL, "created_at": TIME,
            "language": {**nullable(STR), "description": "The account's own page language; "
                                                        "null: the browser's"},
        }, ["id", "username", "display_name", "role", "active", "created_at", "language"]),
        "Token": obj({
            "token": STR, "token_type": {"type": "string", "const": "Bearer"},
            "expires_at": TIME, "user": ref("User"),
        }, ["token", "token_type", "expires_at", "user"]),
        "Health": obj({
            "status": {"type": "string", "const": "ok"},
            "version": STR, "location_id": STR, "location_name": STR,
            "sync": obj({
                "state": {"type": "string",
                          "enum": ["off", "online", "offline", "frozen", "refused"],
                          "description": "frozen: the cloud stopped this office (a second "
                                         "install or copy uses its token); refused: the "
                                         "cloud refused its token (wrong or revoked)"},
                "last_push_ok_at": nullable(TIME),
                "backlog": {"type": "integer", "minimum": 0,
                            "description": "Outbox entries the cloud has not acknowledged"},
                "last_error": nullable({"type": "string", "description": "In words"}),
                "error_code": nullable({"type": "string", "description":
                                        "The cloud's stable code: unauthorized, revoked, "
                                        "forbidden, or frozen"}),
                "clock_skew_s": nullable({"type": "number", "description":
                                          "Cloud clock minus this office's, as the cloud "
                                          "answered (seconds)"}),
                "epoch_id": nullable(STR),
            }, ["state", "last_push_ok_at", "backlog", "last_error", "error_code",
                "clock_skew_s", "epoch_id"]),
            "discovery": obj({
                "state": {"type": "string", "enum": ["off", "announcing", "failed"]},
                "reason": nullable(STR), "name": nullable(STR), "host_name": nullable(STR),
                "addresses": {"type": "array", "items": STR},
            }, ["state", "reason", "name", "host_name", "addresses"], closed=False,
                description="The zeroconf announcement: instance name, mDNS host name "
                            "(jonot.local) and addresses, or why there is none"),
            "printer": ref("PrinterSummary"),
        }, ["status", "version", "location_id", "location_name", "sync", "discovery"]),
        **_printer_schemas(),
        "Device": obj({
            "id": ID, "kind": {"type": "string", "enum": list(DEVICE_KINDS)}, "name": STR,
            "printer": nullable({"type": "string", "description": "A kiosk's own receipt "
                                 "printer URI (null: the server's default)"}),
            "created_at": TIME, "revoked_at": nullable(TIME), "active": BOOL,
            "options": DEVICE_OPTIONS, "paired_at": PAIRED_AT,
        }, ["id", "kind", "name", "created_at", "revoked_at", "active", "options"],
            description="A registered kiosk, display or desk PC"),
        "RegisteredDevice": obj({
            "id": ID, "kind": {"type": "string", "enum": list(DEVICE_KINDS)}, "name": STR,
            "printer": nullable(STR),
            "created_at": TIME, "revoked_at": nullable(TIME), "active": BOOL,
            "options": DEVICE_OPTIONS, "paired_at": PAIRED_AT,
            "token": {"type": "string", "description": "The device credential, shown only "
                      "now: send it as the X-Jonot-Device header or jonot_device cookie"},
        }, ["id", "kind", "name", "created_at", "revoked_at", "active", "options", "token"]),
        "DeviceList": _list_of("Device"),
        "QueueList": _list_of("Queue"),
        "DeskList": _list_of("Desk"),
        "DisplayList": _list_of("Display"),
        "TicketList": _list_of("Ticket"),
        **_request_schemas(),
    }


def _list_of(item: str) -> dict[str, Any]:
    return obj({
        "items": {"type": "array", "items": ref(item)},
        "total": {"type": "integer", "minimum": 0, "description": "Matches across all pages"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        "offset": {"type": "integer", "minimum": 0},
    }, ["items", "total", "limit", "offset"])


# -- request bodies ---------------------------------------------------------------------
# Declared once as ``Body`` classes; their schemas are named after the class.

BODIES: tuple[type[Body], ...] = (
    TokenRequest, DeviceCreate, QueueCreate, QueueUpdate, DeskCreate, DeskUpdate,
    DisplayCreate, JoinRequest, TicketUpdate, DeviceUpdate, KioskOptions, PrinterTest,
    *dict.fromkeys(t.body for t in TRANSITIONS.values()), Empty,
)


def _request_schemas() -> dict[str, dict[str, Any]]:
    return {body.__name__: body.schema() for body in BODIES}


# -- responses ----------------------------------------------------------------------

def _problem_response(description: str, headers: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    resp: dict[str, Any] = {"description": description,
                            "content": {PROBLEM: {"schema": ref("Problem")}}}
    if headers:
        resp["headers"] = headers
    return resp


def _responses() -> dict[str, dict[str, Any]]:
    retry_after = {"Retry-After": {"required": True, "description": "Seconds to wait",
                                   "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return {
        "BadRequest": _problem_response(
            "bad_request: the body is missing, not JSON or not a JSON object"),
        "Unauthorized": _problem_response(
            "unauthorized: no token, a malformed Authorization header, or a token that is "
            "unknown or expired (or wrong credentials at /auth/token)",
            {"WWW-Authenticate": {"required": True, "schema": STR}}),
        "Forbidden": _problem_response(
            "forbidden: the account's role or an anonymous caller may not do this"),
        "NotFound": _problem_response("not_found: no such resource (or, for call-next, "
                                      "queue_empty: no ticket waits)"),
        "Conflict": _problem_response(
            "invalid_transition, version_conflict, queue_closed or conflict (a name or "
            "prefix in use)"),
        "PayloadTooLarge": _problem_response("payload_too_large: the body exceeds 256 KiB"),
        "UnsupportedMediaType": _problem_response(
            "unsupported_media_type: send the body as application/json"),
        "ValidationError": _problem_response(
            "validation_error: errors lists each bad field as {field, message}"),
        "RateLimited": _problem_response(
            "rate_limited: over a per-client budget (look-ups by hash, wrong passwords, "
            "sign-ins waiting for a password check, live streams per client or per ticket)",
            retry_after),
        "StreamsFull": _problem_response(
            "streams_full: no room for another live stream now", retry_after),
    }


def _resp(*names: str) -> dict[str, Any]:
    status = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403",
              "NotFound": "404", "Conflict": "409", "PayloadTooLarge": "413",
              "UnsupportedMediaType": "415", "ValidationError": "422", "RateLimited": "429",
              "StreamsFull": "503"}
    return {status[n]: {"$ref": f"#/components/responses/{n}"} for n in names}


BODY_ERRORS = ("BadRequest", "PayloadTooLarge", "UnsupportedMediaType", "ValidationError")


def _ok(schema: str, description: str, status: str = "200",
        headers: dict[str, Any] | None = None) -> dict[str, Any]:
    resp: dict[str, Any] = {"description": description,
                            "content": {JSON: {"schema": ref(schema)}}}
    if headers:
        resp["headers"] = headers
    return {status: resp}


def _body(schema: str | type[Body], required: bool = True) -> dict[str, Any]:
    name = schema if isinstance(schema, str) else schema.__name__
    return {"required": required, "content": {JSON: {"schema": ref(name)}}}


def _path_param(name: str, description: str, schema: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **more}


def _op(op_id: str, summary: str, tag: str, role: str, responses: dict[str, Any], *,
        params: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None
        ) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag],
                          "x-jonot-role": role}
    if role in ("staff", "admin"):
        op["security"] = [{"bearer": []}]
        responses = {**responses, **_resp("Unauthorized")}
        if role == "admin":
            responses.update(_resp("Forbidden"))
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    op["responses"] = dict(sorted(responses.items()))
    return op


def _paging() -> list[dict[str, Any]]:
    return [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                         "default": DEFAULT_LIMIT}, "Page size"),
        _query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                          "default": 0}, "Items to skip"),
    ]


def _csv(name: str, items: dict[str, Any], description: str) -> dict[str, Any]:
    return _query(name, {"type": "array", "items": items, "minItems": 1}, description,
                  style="form", explode=False)


# -- paths --------------------------------------------------------------------------

QUEUE_ID = _path_param("queue_id", "Queue id")
DESK_ID = _path_param("desk_id", "Desk id")
DISPLAY_ID = _path_param("display_id", "Display id")
TICKET_ID = _path_param("id", "Ticket id")
HASH = _path_param("hash", "The ticket's 22-character hash",
                   {"type": "string", "pattern": f"^[A-Za-z0-9_-]{{{HASH_LENGTH}}}$"})

def _paths() -> dict[str, dict[str, Any]]:
    p: dict[str, dict[str, Any]] = {}
    v = "/api/v1"
    body_errs = _resp(*BODY_ERRORS)

    p[f"{v}/health"] = {"get": _op(
        "health", "Health, version, location id and sync state", "meta", "anyone",
        _ok("Health", "The server is up"))}
    p[f"{v}/openapi.json"] = {"get": _op(
        "openapi", "This document", "meta", "anyone",
        {"200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {
            "type": "object"}}}}})}

    p[f"{v}/auth/token"] = {"post": _op(
        "issueToken", "Trade a username and password for a bearer token", "auth", "anyone",
        {**_ok("Token", "A new token", "201"), **body_errs,
         **_resp("Unauthorized", "RateLimited")},
        body=_body("TokenRequest"))}
    p[f"{v}/auth/me"] = {"get": _op(
        "me", "The account behind the token", "auth", "staff", _ok("User", "The account"))}

    p[f"{v}/queues"] = {
        "get": _op("listQueues", "Queues in kiosk order with waiting counts, now serving and "
                   "the wait for a newcomer", "queues", "anyone",
                   {**_ok("QueueList", "A page of queues"), **_resp("ValidationError")},
                   params=_paging()),
        "post": _op("createQueue", "Create a queue", "queues", "admin",
                    {**_ok("Queue", "The new queue", "201"), **body_errs, **_resp("Conflict")},
                    body=_body(QueueCreate)),
    }
    p[f"{v}/queues/{{queue_id}}"] = {
        "parameters": [QUEUE_ID],
        "get": _op("getQueue", "One queue's public summary", "queues", "anyone",
                   {**_ok("Queue", "The queue"), **_resp("NotFound")}),
        "patch": _op("updateQueue", "Rename, re-prefix, recolour, reorder, open or close a "
                     "queue", "queues", "admin",
                     {**_ok("Queue", "The queue now"), **body_errs,
                      **_resp("NotFound", "Conflict")},
                     body=_body(QueueUpdate)),
    }
    p[f"{v}/queues/{{queue_id}}/tickets"] = {
        "parameters": [QUEUE_ID],
        "post": _op(
            "join", "Take a number (anyone; staff may set priority, notes and source desk)",
            "tickets", "anyone",
            {**_ok("JoinedTicket", "The new ticket", "201", headers={"Location": {
                "required": True, "description": "The holder's look-up path",
                "schema": STR}}),
             **body_errs, **_resp("Unauthorized", "Forbidden", "NotFound", "Conflict",
                                  "RateLimited")},
            body=_body(JoinRequest, required=False)),
    }
    p[f"{v}/queues/{{queue_id}}/tickets"]["post"]["security"] = [{}, {"bearer": []}]

    p[f"{v}/devices"] = {
        "get": _op("listDevices", "Registered kiosks, displays and desk PCs", "devices",
                   "admin", {**_ok("DeviceList", "A page of devices"),
                             **_resp("ValidationError")}, params=_paging()),
        "post": _op("registerDevice", "Register a device; the answer holds its credential",
                    "devices", "admin",
                    {**_ok("RegisteredDevice", "The new device and its token", "201"),
                     **body_errs}, body=_body("DeviceCreate")),
    }
    p[f"{v}/devices/{{device_id}}/revoke"] = {
        "parameters": [_path_param("device_id", "Device id")],
        "post": _op("revokeDevice", "Stop a device's credential working", "devices", "admin",
                    {**_ok("Device", "The device, revoked"), **_resp("NotFound")}),
    }
    p[f"{v}/devices/{{device_id}}/renew"] = {
        "parameters": [_path_param("device_id", "Device id")],
        "post": _op("renewDevice", "A new credential (and pairing link) for a device; the "
                    "old one stops working", "devices", "admin",
                    {**_ok("RegisteredDevice", "The device and its new token"),
                     **_resp("NotFound", "ValidationError")}),
    }
    p[f"{v}/devices/{{device_id}}"] = {
        "parameters": [_path_param("device_id", "Device id")],
        "patch": _op("updateDevice", "Set a kiosk's own receipt printer and its options "
                     "(queues, priority button, language, printing, return time)",
                     "devices", "admin",
                     {**_ok("Device", "The device now"), **body_errs, **_resp("NotFound")},
                     body=_body("DeviceUpdate")),
    }
    p[f"{v}/printers"] = {"get": _op(
        "listPrinters", "Receipt printers and their state", "printers", "admin",
        _ok("PrinterList", "The default printer, each kiosk's own, the queue"))}
    p[f"{v}/printers/test"] = {"post": _op(
        "testPrinter", "Print a test page and wait (a few seconds at most) for the result",
        "printers", "admin",
        {**_ok("PrinterTestResult", "Whether it printed"), **body_errs},
        body=_body("PrinterTest", required=False))}
    p[f"{v}/desks"] = {
        "get": _op("listDesks", "Desks with their queues in priority order", "desks", "staff",
                   {**_ok("DeskList", "A page of desks"), **_resp("ValidationError")},
                   params=_paging()),
        "post": _op("createDesk", "Create a desk", "desks", "admin",
                    {**_ok("Desk", "The new desk", "201"), **body_errs, **_resp("Conflict")},
                    body=_body(DeskCreate)),
    }
    p[f"{v}/desks/{{desk_id}}"] = {
        "parameters": [DESK_ID],
        "get": _op("getDesk", "One desk", "desks", "staff",
                   {**_ok("Desk", "The desk"), **_resp("NotFound")}),
        "patch": _op("updateDesk", "Rename a desk, change its queues or pick mode", "desks",
                     "admin", {**_ok("Desk", "The desk now"), **body_errs,
                               **_resp("NotFound", "Conflict")},
                     body=_body(DeskUpdate)),
    }
    p[f"{v}/desks/{{desk_id}}/call-next"] = {
        "parameters": [DESK_ID],
        "post": _op("callNext", "Call the next waiting ticket for this desk (atomic)", "desks",
                    "staff", {**_ok("StaffTicket", "The called ticket"), **body_errs,
                              **_resp("NotFound")},
                    body=_body(Empty, required=False)),
    }

    p[f"{v}/displays"] = {
        "get": _op("listDisplays", "Displays", "displays", "anyone",
                   {**_ok("DisplayList", "A page of displays"), **_resp("ValidationError")},
                   params=_paging()),
        "post": _op("createDisplay", "Create a display (no queue ids: it shows every queue)",
                    "displays", "admin",
                    {**_ok("Display", "The new display", "201"), **body_errs},
                    body=_body(DisplayCreate)),
    }
    p[f"{v}/displays/{{display_id}}/state"] = {
        "parameters": [DISPLAY_ID],
        "get": _op("displayState", "What a display shows: now serving, latest calls, waiting "
                   "counts", "displays", "anyone",
                   {**_ok("DisplayState", "The display's state"), **_resp("NotFound")}),
    }

    p[f"{v}/tickets"] = {"get": _op(
        "listTickets", "Tickets, filtered, sorted and paged, with the total count", "tickets",
        "staff", {**_ok("TicketList", "A page of tickets"), **_resp("ValidationError")},
        params=[
            _csv("queue", {"type": "string"}, "Queue ids, comma-separated"),
            _csv("state", {"type": "string", "enum": list(STATES)},
                 "States, comma-separated (case-insensitive)"),
            _csv("source", {"type": "string", "enum": list(SOURCES)},
                 "Sources, comma-separated"),
            _query("created_after", {"type": "string", "format": "date-time"},
                   "Created at or after (ISO 8601; no zone: UTC)"),
            _query("created_before", {"type": "string", "format": "date-time"},
                   "Created before (ISO 8601; no zone: UTC)"),
            _query("sort", {"type": "string", "enum": list(TICKET_SORTS),
                            "default": "-created_at"},
                   "Order; '-' for descending; 'queue' is the serving order"),
            *_paging(),
        ])}
    p[f"{v}/tickets/{{id}}"] = {
        "parameters": [TICKET_ID],
        "get": _op("getTicket", "One ticket with its interactions", "tickets", "staff",
                   {**_ok("TicketDetail", "The ticket"), **_resp("NotFound")}),
        "patch": _op("updateTicket", "Edit name, phone, notes, labels, extra or priority",
                     "tickets", "staff",
                     {**_ok("StaffTicket", "The ticket now"), **body_errs,
                      **_resp("NotFound", "Conflict")},
                     body=_body(TicketUpdate)),
    }
    for action in TRANSITIONS.values():
        p[f"{v}/tickets/{{id}}/{action.name}"] = {
            "parameters": [TICKET_ID],
            "post": _op(f"ticket{action.name.capitalize()}", action.summary, "tickets",
                        "staff", {**_ok("StaffTicket", "The ticket now"), **body_errs,
                                  **_resp("NotFound", "Conflict")},
                        body=_body(action.body, required=bool(action.body.required_fields()))),
        }

    p[f"{v}/tickets/by-hash/{{hash}}"] = {
        "parameters": [HASH],
        "get": _op("getByHash", "The holder's view: state, position, estimated wait, now "
                   "serving, desk once called", "holder", "holder",
                   {**_ok("HolderTicket", "The ticket"), **_resp("NotFound", "RateLimited")}),
    }
    p[f"{v}/tickets/by-hash/{{hash}}/cancel"] = {
        "parameters": [HASH],
        "post": _op("cancelByHash", "The holder gives up their place", "holder", "holder",
                    {**_ok("HolderTicket", "The canceled ticket"),
                     **_resp("NotFound", "Conflict", "RateLimited")}),
    }
    p[f"{v}/tickets/by-hash/{{hash}}/events"] = {
        "parameters": [HASH],
        "get": _op("ticketEvents", "Live view of one ticket (Server-Sent Events): a ticket "
                   "event on connect and on every change, then end", "streams", "holder",
                   {**_stream_ok("ticket (the HolderTicket view), end"),
                    **_resp("NotFound", "RateLimited", "StreamsFull")}),
    }
    p[f"{v}/events"] = {"get": _op(
        "events", "The office's live changes for displays and desks (Server-Sent Events); "
        "no hashes or personal data", "streams", "anyone",
        {**_stream_ok("state (on connect), ticket, queue, desk"),
         **_resp("NotFound", "ValidationError", "RateLimited", "StreamsFull")},
        params=[
            _query("display", {"type": "string"}, "Only the queues of this display"),
            _csv("queue", {"type": "string"}, "Only these queue ids, comma-separated"),
            _query("last_event_id", {"type": "string"},
                   "Resume after this event id (as the Last-Event-ID header)"),
            _query("poll", {"type": "string", "enum": ["1", "true", "yes", "0", "false", "no"]},
                   "End the response after the first batch, for clients that poll"),
            {"name": "Last-Event-ID", "in": "header", "required": False,
             "schema": {"type": "string"}, "description": "Resume after this event id"},
        ])}
    return p


def _stream_ok(events: str) -> dict[str, Any]:
    return {"200": {"description": f"An event stream. Events: {events}. Heartbeat comments "
                                   "keep it open.",
                    "content": {SSE: {"schema": {"type": "string"}}}}}


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Jonot Local API",
            "version": __version__,
            "summary": "Take-a-number queues for one office",
            "description": (
                "JSON over HTTP. Errors are RFC 9457 problem details "
                "(application/problem+json) with a stable `code`. Staff and admin "
                "endpoints need `Authorization: Bearer <token>` from POST "
                "/api/v1/auth/token; `x-jonot-role` on each operation says who may call "
                "it. Look-ups by ticket hash are rate limited per client address."),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [{"name": n} for n in ("meta", "auth", "devices", "printers", "queues", "desks",
                                       "displays", "tickets", "holder", "streams")],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A token from POST /api/v1/auth/token"}},
        },
    }


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document())
