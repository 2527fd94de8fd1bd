"""Every (state, action) pair of the ticket state machine (SPEC §3), allowed or refused.

Allowed moves must reach the right state with ``version`` + 1, the right
timestamps and one interaction row per call (with its outcome and who acted);
refused moves raise ``InvalidTransition`` (HTTP 409 ``invalid_transition``) and
change nothing at all. A stale ``version`` is a ``VersionConflict`` (HTTP 409
``version_conflict``). The same table is run at the domain level and through
the HTTP API.

The table of allowed moves and outcomes comes from the state machine's registry
(``tickets.TRANSITIONS``); this module says how to apply each action and what
it may change, and a test fails when an action of the registry has no rows here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from jonot_local.domain import tickets
from jonot_local.domain.errors import InvalidTransition, VersionConflict
from jonot_local.domain.model import CALLED, CANCELED, COMPLETED, SKIPPED, STATES, WAITING

from .support import STAFF

# -- one app for the module (conftest's shared world), a fresh office for each test ---------
# Each test works on its own queues and desks, so sharing the database keeps the
# table fast (an app with accounts costs about half a second) without coupling tests.

pytestmark = pytest.mark.shared_world(hash_lookup_per_min=100_000)

# -- start states: how to bring a fresh ticket there ---------------------------------------

# name -> (state, steps applied after the join)
STARTS: dict[str, tuple[str, list[str]]] = {
    "waiting": (WAITING, []),
    "waiting_returned": (WAITING, ["call", "return"]),
    "waiting_transferred": (WAITING, ["call", "transfer"]),
    "called": (CALLED, ["call"]),
    "called_recalled": (CALLED, ["call", "recall"]),
    "called_again": (CALLED, ["call", "return", "call"]),
    "completed": (COMPLETED, ["call", "complete"]),
    "skipped": (SKIPPED, ["call", "skip"]),
    "canceled_waiting_customer": (CANCELED, ["cancel_customer"]),
    "canceled_called_staff": (CANCELED, ["call", "cancel_staff"]),
}

# The table's actions -> the registered action each one runs (cancel has two callers).
ACTIONS: dict[str, str] = {
    "call": "call", "recall": "recall", "complete": "complete", "skip": "skip",
    "cancel_customer": "cancel", "cancel_staff": "cancel", "return": "return",
    "transfer": "transfer", "reorder": "reorder",
}

# (state, action) -> state reached, from the registry; every other pair is refused.
ALLOWED: dict[tuple[str, str], str] = {
    (state, action): target
    for action, name in ACTIONS.items()
    for (state, registered), target in tickets.TRANSITIONS.allowed().items()
    if registered == name
}

# Columns each allowed action may change (besides version and updated_at).
MAY_CHANGE: dict[str, set[str]] = {
    "call": {"state", "desk_id", "called_by", "called_at", "recall_count"},
    "recall": {"recall_count"},
    "complete": {"state", "completed_at"},
    "skip": {"state", "skipped_at"},
    "cancel_customer": {"state", "canceled_at", "canceled_by"},
    "cancel_staff": {"state", "canceled_at", "canceled_by"},
    "return": {"state"},
    "transfer": {"state", "queue_id", "order_key"},
    "reorder": {"order_key"},
}

OUTCOME = {action: tickets.TRANSITIONS[name].outcome for action, name in ACTIONS.items()}

CASES = [(start, action) for start in STARTS for action in ACTIONS]


def _case_id(case: tuple[str, str]) -> str:
    start, action = case
    verdict = "ok" if (STARTS[start][0], action) in ALLOWED else "refused"
    return f"{start}-{action}-{verdict}"


# -- helpers -------------------------------------------------------------------------------

def staff_id(store: Any) -> str:
    with store.read() as tx:
        return tx.one("SELECT id FROM users WHERE username = ?", (STAFF[0],))["id"]


def other_queue(office: dict[str, Any], queue_id: str) -> str:
    return office["lab"].id if queue_id == office["a"].id else office["a"].id


def domain_apply(tx: Any, action: str, ticket: tickets.Ticket, office: dict[str, Any],
                 user_id: str, version: int | None = None) -> tickets.Ticket:
    """Run one action of the table through the domain."""
    tid = ticket.id
    if action == "call":
        return tickets.call(tx, tid, office["room2"].id, user_id=user_id, version=version)
    if action == "recall":
        return tickets.recall(tx, tid, version=version)
    if action == "complete":
        return tickets.complete(tx, tid, user_id=user_id, version=version)
    if action == "skip":
        return tickets.skip(tx, tid, user_id=user_id, version=version)
    if action == "cancel_customer":
        return tickets.cancel(tx, tid, by="customer", version=version)
    if action == "cancel_staff":
        return tickets.cancel(tx, tid, by="staff", user_id=user_id, version=version)
    if action == "return":
        return tickets.return_to_queue(tx, tid, user_id=user_id, version=version)
    if action == "transfer":
        return tickets.transfer(tx, tid, other_queue(office, ticket.queue_id),
                                user_id=user_id, version=version)
    if action == "reorder":
        return tickets.reorder(tx, tid, after=None, version=version)
    raise AssertionError(action)


def make_ticket(store: Any, office: dict[str, Any], start: str, user_id: str) -> tickets.Ticket:
    """A ticket in queue A (with one ticket ahead of it) brought to ``start``."""
    with store.write() as tx:
        tickets.join(tx, office["a"].id, source="kiosk")  # someone ahead, so places matter
        ticket = tickets.join(tx, office["a"].id, source="kiosk", name="Aino")
    for step in STARTS[start][1]:
        with store.write() as tx:
            ticket = domain_apply(tx, step, tickets.get(tx, ticket.id), office, user_id)
    assert ticket.state == STARTS[start][0]
    return ticket


def snapshot(store: Any, ticket_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stored ticket row and its interaction rows, exactly as in the database."""
    with store.read() as tx:
        row = dict(tx.one("SELECT * FROM tickets WHERE id = ?", (ticket_id,)))
        rows = [dict(r) for r in tx.all(
            "SELECT * FROM interactions WHERE ticket_id = ? ORDER BY id", (ticket_id,))]
    return row, rows


def queue_counters(store: Any) -> list[dict[str, Any]]:
    with store.read() as tx:
        return [dict(r) for r in tx.all("SELECT * FROM queues ORDER BY id")]


@pytest.fixture
def events(store: Any) -> Any:
    """Every change event the store publishes after a commit (during this test)."""
    seen: list[dict[str, Any]] = []
    store.listeners.append(seen.extend)
    yield seen
    store.listeners.remove(seen.extend)


def check_allowed(store: Any, office: dict[str, Any], user_id: str | None, action: str,
                  before: dict[str, Any], inter_before: list[dict[str, Any]],
                  target: str) -> None:
    """The stored effect of an allowed action by ``user_id``, compared with the row before it."""
    after, inter_after = snapshot(store, before["id"])
    assert after["state"] == target
    assert after["version"] == before["version"] + 1
    assert after["updated_at"] >= before["updated_at"]
    changed = {k for k in after if after[k] != before[k]} - {"version", "updated_at"}
    assert changed <= MAY_CHANGE[action], f"{action} also changed {changed - MAY_CHANGE[action]}"
    # Code, number and hash never change, whatever happens.
    for key in ("code", "number", "hash", "origin_queue_id", "created_at"):
        assert after[key] == before[key]
    now = after["updated_at"]
    if action == "call":
        assert after["called_at"] == now and after["desk_id"] == office["room2"].id
        assert after["called_by"] == user_id and after["recall_count"] == 0
        assert inter_after[:-1] == inter_before, "earlier interactions must stay as they were"
        new = inter_after[-1]
        assert len(inter_after) == len(inter_before) + 1
        assert new["started_at"] == now and new["ended_at"] is None and new["outcome"] is None
        assert new["desk_id"] == office["room2"].id and new["user_id"] == user_id
        assert new["queue_id"] == after["queue_id"]
        return
    if action == "recall":
        assert after["recall_count"] == before["recall_count"] + 1
        assert after["called_at"] == before["called_at"] and after["desk_id"] == before["desk_id"]
        assert inter_after == inter_before, "a recall is not a new call"
        return
    # Every other allowed action ends the open call, if there is one.
    if before["state"] == CALLED:
        assert len(inter_after) == len(inter_before)
        assert inter_after[:-1] == inter_before[:-1]
        last = inter_after[-1]
        assert inter_before[-1]["ended_at"] is None
        assert last["ended_at"] == now and last["outcome"] == OUTCOME[action]
        assert last["started_at"] == inter_before[-1]["started_at"]
        # Who ended the call is recorded; a customer's cancel keeps the caller.
        acted = inter_before[-1]["user_id"] if action == "cancel_customer" else user_id
        assert last["user_id"] == acted
        assert after["called_by"] == before["called_by"]
    else:
        assert inter_after == inter_before
    assert all(i["ended_at"] is not None for i in inter_after)
    if action == "complete":
        assert after["completed_at"] == now
    elif action == "skip":
        assert after["skipped_at"] == now
    elif action.startswith("cancel"):
        assert after["canceled_at"] == now
        assert after["canceled_by"] == action.removeprefix("cancel_")
    elif action == "return":
        assert after["queue_id"] == before["queue_id"]
        assert after["order_key"] == before["order_key"], "return keeps the ticket's place"
    elif action == "transfer":
        assert after["queue_id"] == other_queue(office, before["queue_id"])
        assert after["code"] == before["code"]
    elif action == "reorder":
        with store.read() as tx:
            first = tx.one("SELECT MIN(order_key) AS k FROM tickets WHERE queue_id = ? "
                           "AND state IN ('WAITING', 'CALLED')", (after["queue_id"],))["k"]
        assert after["order_key"] == first, "after=None moves it to the front"


# -- the domain ------------------------------------------------------------------------------

# -- the registry --------------------------------------------------------------------------

def test_every_registered_action_has_rows_in_this_table():
    assert set(ACTIONS.values()) == set(tickets.TRANSITIONS)
    assert set(MAY_CHANGE) == set(ACTIONS)


def _check_list(sql: str, column: str) -> set[str]:
    found = re.search(rf"CHECK\s*\(\s*{column}\s+IN\s*\(([^)]*)\)", sql)
    assert found, f"no CHECK list for {column}"
    return set(re.findall(r"'([^']*)'", found.group(1)))


def test_the_registry_matches_the_schemas_check_lists(store):
    """States and outcomes are declared by the registry; the schema's CHECKs must agree."""
    with store.read() as tx:
        sql = {r["name"]: r["sql"] for r in tx.all(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
    assert _check_list(sql["tickets"], "state") == tickets.TRANSITIONS.states() == set(STATES)
    assert _check_list(sql["interactions"], "outcome") == set(tickets.OUTCOMES)


def test_every_registered_action_has_its_route(world):
    routes = {rule.endpoint: rule for rule in world.app.url_map.iter_rules()}
    for name in tickets.TRANSITIONS:
        rule = routes[f"api.ticket_{name}"]
        assert rule.rule == f"/api/v1/tickets/<ticket_id>/{name}"
        assert rule.methods == {"POST", "OPTIONS"}


def test_an_action_is_refused_with_its_own_wording(store, office):
    ticket = make_ticket(store, office, "waiting", staff_id(store))
    with pytest.raises(InvalidTransition) as err, store.write() as tx:
        tickets.return_to_queue(tx, ticket.id)
    assert err.value.message.endswith("it cannot be returned to the queue.")
    assert err.value.details == {"state": WAITING, "action": "return"}


# -- the domain ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_domain_transition_table(world, store, office, events, case):
    start, action = case
    uid = staff_id(store)
    ticket = make_ticket(store, office, start, world.admin_id)  # the action is by STAFF
    before, inter_before = snapshot(store, ticket.id)
    queues_before = queue_counters(store)
    events.clear()
    target = ALLOWED.get((ticket.state, action))
    if target is None:
        with pytest.raises(InvalidTransition) as err, store.write() as tx:
            domain_apply(tx, action, ticket, office, uid)
        assert err.value.code == "invalid_transition"
        assert ticket.code in err.value.message and ticket.state in err.value.message
        assert snapshot(store, ticket.id) == (before, inter_before)
        assert queue_counters(store) == queues_before
        assert events == []
        return
    with store.write() as tx:
        returned = domain_apply(tx, action, ticket, office, uid, version=ticket.version)
    check_allowed(store, office, uid, action, before, inter_before, target)
    assert returned.version == ticket.version + 1 and returned.state == target
    assert [e["ticket_id"] for e in events] == [ticket.id]
    assert events[0]["state"] == target and events[0]["version"] == returned.version


@pytest.mark.parametrize("offset", [-1, 1])
@pytest.mark.parametrize("case", [c for c in CASES if (STARTS[c[0]][0], c[1]) in ALLOWED],
                         ids=_case_id)
def test_domain_stale_version_changes_nothing(store, office, events, case, offset):
    start, action = case
    uid = staff_id(store)
    ticket = make_ticket(store, office, start, uid)
    before = snapshot(store, ticket.id)
    events.clear()
    with pytest.raises(VersionConflict) as err, store.write() as tx:
        domain_apply(tx, action, ticket, office, uid, version=ticket.version + offset)
    assert err.value.code == "version_conflict"
    assert err.value.details["current_version"] == ticket.version
    assert snapshot(store, ticket.id) == before
    assert events == []


TERMINAL_STARTS = [s for s, (state, _) in STARTS.items()
                   if state in (COMPLETED, SKIPPED, CANCELED)]


@pytest.mark.parametrize("start", TERMINAL_STARTS)
def test_domain_terminal_tickets_refuse_edits(store, office, events, start):
    uid = staff_id(store)
    ticket = make_ticket(store, office, start, uid)
    with store.write() as tx:
        other = tickets.join(tx, office["a"].id)
    before = snapshot(store, ticket.id)
    events.clear()
    edits: list[Callable[[Any], Any]] = [
        lambda tx: tickets.update(tx, ticket.id, version=ticket.version, notes="late note"),
        lambda tx: tickets.update(tx, ticket.id, version=ticket.version, priority="priority"),
        lambda tx: tickets.update(tx, ticket.id, version=ticket.version, labels=["VIP"]),
        lambda tx: tickets.reorder(tx, ticket.id, after=None),
        lambda tx: tickets.reorder(tx, ticket.id, after=other.id),
    ]
    for edit in edits:
        with pytest.raises(InvalidTransition), store.write() as tx:
            edit(tx)
    assert snapshot(store, ticket.id) == before
    assert events == []


@pytest.mark.parametrize("start", ["called", "called_recalled"])
def test_domain_called_tickets_cannot_be_reordered(store, office, start):
    uid = staff_id(store)
    ticket = make_ticket(store, office, start, uid)
    before = snapshot(store, ticket.id)
    with pytest.raises(InvalidTransition), store.write() as tx:
        tickets.reorder(tx, ticket.id, after=None)
    assert snapshot(store, ticket.id) == before


def test_recall_counts_and_a_new_call_starts_from_zero(store, office):
    uid = staff_id(store)
    ticket = make_ticket(store, office, "called", uid)
    for n in (1, 2, 3):
        with store.write() as tx:
            ticket = tickets.recall(tx, ticket.id, version=ticket.version)
        assert ticket.recall_count == n and ticket.state == CALLED
    with store.write() as tx:
        tickets.return_to_queue(tx, ticket.id)
        ticket = tickets.call(tx, ticket.id, office["room1"].id)
        history = tickets.interactions(tx, ticket.id)
    assert ticket.recall_count == 0 and ticket.desk_id == office["room1"].id
    assert [i.outcome for i in history] == ["returned", None]
    assert [i.desk_id for i in history] == [office["room2"].id, office["room1"].id]


def test_version_increases_by_one_on_every_change(store, office):
    uid = staff_id(store)
    with store.write() as tx:
        t = tickets.join(tx, office["a"].id)
    versions = [t.version]
    steps = [
        lambda tx: tickets.update(tx, t.id, version=versions[-1], notes="needs interpreter"),
        lambda tx: tickets.call(tx, t.id, office["room1"].id, user_id=uid),
        lambda tx: tickets.recall(tx, t.id),
        lambda tx: tickets.update(tx, t.id, version=versions[-1], labels=["VIP"]),
        lambda tx: tickets.transfer(tx, t.id, office["lab"].id),
        lambda tx: tickets.update(tx, t.id, version=versions[-1], priority="priority"),
        lambda tx: tickets.call(tx, t.id, office["room2"].id),
        lambda tx: tickets.return_to_queue(tx, t.id),
        lambda tx: tickets.reorder(tx, t.id, after=None),
        lambda tx: tickets.call(tx, t.id, office["room2"].id),
        lambda tx: tickets.complete(tx, t.id),
    ]
    for step in steps:
        with store.write() as tx:
            versions.append(step(tx).version)
    assert versions == list(range(1, len(steps) + 2))


def test_update_with_stale_version_is_a_conflict(store, office):
    with store.write() as tx:
        t = tickets.join(tx, office["a"].id)
        tickets.update(tx, t.id, version=1, notes="first")
    before = snapshot(store, t.id)
    with pytest.raises(VersionConflict), store.write() as tx:
        tickets.update(tx, t.id, version=1, notes="second")
    assert snapshot(store, t.id) == before


# -- the HTTP API ------------------------------------------------------------------------------

def http_apply(client: Any, headers: dict[str, str], action: str, ticket: tickets.Ticket,
               office: dict[str, Any], version: int | None = None) -> Any:
    """Run one action of the table through the JSON API."""
    body: dict[str, Any] = {}
    if version is not None:
        body["version"] = version
    if action == "cancel_customer":
        return client.post(f"/api/v1/tickets/by-hash/{ticket.hash}/cancel")
    path = {"cancel_staff": "cancel"}.get(action, action)
    if action == "call":
        body["desk_id"] = office["room2"].id
    elif action == "transfer":
        body["queue_id"] = other_queue(office, ticket.queue_id)
    elif action == "reorder":
        body["after"] = None
    return client.post(f"/api/v1/tickets/{ticket.id}/{path}", json=body, headers=headers)


def assert_problem(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["code"] == code and body["status"] == status and body["message"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_http_transition_table(world, client, store, office, staff_headers, case):
    start, action = case
    uid = staff_id(store)
    ticket = make_ticket(store, office, start, world.admin_id)  # the action is by STAFF
    before, inter_before = snapshot(store, ticket.id)
    target = ALLOWED.get((ticket.state, action))
    version = None if action == "cancel_customer" else ticket.version
    resp = http_apply(client, staff_headers, action, ticket, office, version=version)
    if target is None:
        assert_problem(resp, 409, "invalid_transition")
        assert snapshot(store, ticket.id) == (before, inter_before)
        return
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["state"] == target and body["version"] == ticket.version + 1
    assert body["code"] == ticket.code and body["id"] == ticket.id
    check_allowed(store, office, uid, action, before, inter_before, target)
    if target == WAITING:
        assert body["position"] >= 1
    else:
        assert body["position"] is None
    detail = client.get(f"/api/v1/tickets/{ticket.id}", headers=staff_headers).get_json()
    _, stored = snapshot(store, ticket.id)
    assert detail["version"] == body["version"] and detail["state"] == target
    assert [(i["desk_id"], i["outcome"], i["started_at"], i["ended_at"])
            for i in detail["interactions"]] == \
        [(i["desk_id"], i["outcome"], i["started_at"], i["ended_at"]) for i in stored]


@pytest.mark.parametrize("case", [c for c in CASES if (STARTS[c[0]][0], c[1]) in ALLOWED
                                  and c[1] != "cancel_customer"], ids=_case_id)
def test_http_stale_version_is_409_version_conflict(client, store, office, staff_headers, case):
    start, action = case
    ticket = make_ticket(store, office, start, staff_id(store))
    before = snapshot(store, ticket.id)
    resp = http_apply(client, staff_headers, action, ticket, office, version=ticket.version - 1)
    assert_problem(resp, 409, "version_conflict")
    assert snapshot(store, ticket.id) == before


@pytest.mark.parametrize("start", TERMINAL_STARTS)
def test_http_terminal_tickets_refuse_edits(client, store, office, staff_headers, start):
    ticket = make_ticket(store, office, start, staff_id(store))
    before = snapshot(store, ticket.id)
    for body in ({"version": ticket.version, "notes": "late"},
                 {"version": ticket.version, "priority": "priority"},
                 {"version": ticket.version, "labels": [{"value": "VIP"}]}):
        resp = client.patch(f"/api/v1/tickets/{ticket.id}", json=body, headers=staff_headers)
        assert_problem(resp, 409, "invalid_transition")
    resp = client.post(f"/api/v1/tickets/{ticket.id}/reorder", json={"after": None},
                       headers=staff_headers)
    assert_problem(resp, 409, "invalid_transition")
    resp = client.post(f"/api/v1/tickets/by-hash/{ticket.hash}/cancel")
    assert_problem(resp, 409, "invalid_transition")
    assert snapshot(store, ticket.id) == before


def test_http_edit_with_stale_version_is_409(client, store, office, staff_headers):
    with store.write() as tx:
        t = tickets.join(tx, office["a"].id)
    r = client.patch(f"/api/v1/tickets/{t.id}", json={"version": 1, "notes": "first"},
                     headers=staff_headers)
    assert r.status_code == 200 and r.get_json()["version"] == 2
    before = snapshot(store, t.id)
    r = client.patch(f"/api/v1/tickets/{t.id}", json={"version": 1, "notes": "second"},
                     headers=staff_headers)
    assert_problem(r, 409, "version_conflict")
    assert snapshot(store, t.id) == before


def test_http_call_next_on_an_empty_queue_is_404_queue_empty(client, office, staff_headers):
    r = client.post(f"/api/v1/desks/{office['room1'].id}/call-next", headers=staff_headers)
    assert_problem(r, 404, "queue_empty")


# -- edits refuse values of the wrong type (they used to empty the field) ----------------------

WRONG_EDITS = [
    (field, value)
    for field, values in {
        "extra": [{}, 0, False, "", "text", 1.5, {"title": "Reason"}],
        "labels": [{}, 0, False, "", "VIP", 1.5, {"value": "VIP"}],
        "name": [0, False, {}, [], ["Aino"]],
        "phone": [0, True, {}, []],
        "notes": [0, False, {}, []],
        "priority": [None, 0, 1, "", "high", {}, []],
        "version": [None, "1", True, 1.5],
    }.items()
    for value in values
]


@pytest.mark.parametrize("field,value", WRONG_EDITS,
                         ids=[f"{f}={v!r}" for f, v in WRONG_EDITS])
def test_http_edit_of_the_wrong_type_is_422_and_changes_nothing(client, store, office,
                                                                  staff_headers, field, value):
    with store.write() as tx:
        t = tickets.join(tx, office["a"].id, name="Aino", phone="040 123", notes="interpreter",
                         labels=["VIP"], extra=[{"title": "Reason", "value": "blood test"}])
    before = snapshot(store, t.id)
    body = {"version": t.version, field: value}
    r = client.patch(f"/api/v1/tickets/{t.id}", json=body, headers=staff_headers)
    assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in r.get_json()["errors"]] == [field]
    assert snapshot(store, t.id) == before


def test_http_edit_null_and_empty_lists_still_clear(client, store, office, staff_headers):
    with store.write() as tx:
        t = tickets.join(tx, office["a"].id, name="Aino", labels=["VIP"],
                         extra=[{"title": "Reason", "value": "x"}])
    r = client.patch(f"/api/v1/tickets/{t.id}", headers=staff_headers,
                     json={"version": t.version, "name": None, "labels": [], "extra": None})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["name"], body["labels"], body["extra"]) == (None, [], [])
