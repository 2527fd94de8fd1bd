"""The main happy paths of every endpoint, through the Flask test client.

One app for the module (accounts cost a password hash each); every test sets
up its own queues and desks and filters by them, so tests do not depend on
each other.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from jonot_local import __version__

from .support import STAFF

_PREFIXES = ("".join(p) for p in itertools.product("ABCDEFGHIJKLMNOPQRSTUVWXYZ", repeat=2))


pytestmark = pytest.mark.shared_world(default_service_s=120, join_live_max=10_000,
                                       join_per_min=100_000)


class Api:
    """Small helpers that assert the expected status and return the JSON body."""

    def __init__(self, client: Any, world: Any) -> None:
        self.client, self.world = client, world

    def call(self, method: str, path: str, status: int, body: Any = None,
             who: str | None = "staff") -> Any:
        headers = getattr(self.world, who) if who else {}
        r = self.client.open(f"/api/v1{path}", method=method, json=body, headers=headers)
        assert r.status_code == status, (method, path, r.status_code, r.json)
        return r.json

    def get(self, path: str, status: int = 200, **kw: Any) -> Any:
        return self.call("GET", path, status, **kw)

    def post(self, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        return self.call("POST", path, status, body, **kw)

    def patch(self, path: str, body: Any, status: int = 200, **kw: Any) -> Any:
        return self.call("PATCH", path, status, body, **kw)

    def join(self, queue_id: str, body: dict[str, Any] | None = None,
             who: str | None = None) -> Any:
        return self.post(f"/queues/{queue_id}/tickets", body or {}, 201, who=who)


@pytest.fixture
def api(client: Any, world: Any) -> Api:
    return Api(client, world)


@pytest.fixture
def api_office(api: Api) -> Any:
    """Two fresh queues and two desks: desk1 serves q1; desk2 serves q1 then q2."""
    p1, p2 = next(_PREFIXES), next(_PREFIXES)
    q1 = api.post("/queues", {"name": f"General {p1}", "prefix": p1}, 201, who="admin")
    q2 = api.post("/queues", {"name": f"Lab {p2}", "prefix": p2}, 201, who="admin")
    d1 = api.post("/desks", {"name": f"Room {p1}", "queue_ids": [q1["id"]]}, 201, who="admin")
    d2 = api.post("/desks", {"name": f"Room {p2}", "queue_ids": [q1["id"], q2["id"]]}, 201,
                  who="admin")
    return SimpleNamespace(q1=q1, q2=q2, d1=d1, d2=d2, p1=p1, p2=p2)


# -- meta ---------------------------------------------------------------------------------------

def test_health(api):
    body = api.get("/health", who=None)
    assert body["status"] == "ok" and body["version"] == __version__
    assert len(body["location_id"]) >= 16 and body["location_name"]
    assert body["sync"]["state"] in ("off", "online", "offline")


def test_openapi_document_is_served(api):
    doc = api.get("/openapi.json", who=None)
    assert doc["openapi"] == "3.1.0" and "/api/v1/queues" in doc["paths"]


def test_me(api):
    assert api.get("/auth/me")["username"] == STAFF[0]
    assert api.get("/auth/me", who="admin")["role"] == "admin"


# -- queues ------------------------------------------------------------------------------------

def test_queue_create_read_update_close_and_reopen(api):
    p = next(_PREFIXES)
    q = api.post("/queues", {"name": "  Vaccinations ", "prefix": p.lower()}, 201, who="admin")
    assert q["name"] == "Vaccinations" and q["prefix"] == p and q["open"] is True
    assert q["colour"].startswith("#") and q["waiting"] == 0 and q["now_serving"] is None
    assert q["estimated_wait_s"] == 0 and q["service_time_s"] == 120
    assert api.get(f"/queues/{q['id']}", who=None) == q

    changed = api.patch(f"/queues/{q['id']}", {"name": "Flu shots", "colour": "#AA0000",
                                               "sort_order": 99}, who="admin")
    assert (changed["name"], changed["colour"], changed["sort_order"]) == (
        "Flu shots", "#aa0000", 99)
    closed = api.patch(f"/queues/{q['id']}", {"open": False}, who="admin")
    assert closed["open"] is False and closed["name"] == "Flu shots"
    refused = api.post(f"/queues/{q['id']}/tickets", {}, 409, who=None)
    assert refused["code"] == "queue_closed"
    assert api.patch(f"/queues/{q['id']}", {"open": True}, who="admin")["open"] is True
    assert api.join(q["id"])["code"] == f"{p}001"

    taken = api.post("/queues", {"name": "Other", "prefix": p}, 409, who="admin")
    assert taken["code"] == "conflict"


def test_queue_list_order_counts_and_paging(api, api_office):
    api.join(api_office.q1["id"])
    api.join(api_office.q1["id"])
    everything = api.get("/queues?limit=500", who=None)
    assert everything["total"] == len(everything["items"]) and everything["offset"] == 0
    orders = [q["sort_order"] for q in everything["items"]]
    assert orders == sorted(orders)
    mine = {q["id"]: q for q in everything["items"]}
    assert mine[api_office.q1["id"]]["waiting"] == 2 and mine[api_office.q2["id"]]["waiting"] == 0
    # desk1 and desk2 both serve q1: 2 people × 120 s ÷ 2 desks
    assert mine[api_office.q1["id"]]["estimated_wait_s"] == 120
    page = api.get("/queues?limit=1&offset=1", who=None)
    assert page["items"] == [everything["items"][1]]
    assert (page["total"], page["limit"], page["offset"]) == (everything["total"], 1, 1)


# -- desks and displays -------------------------------------------------------------------------

def test_desk_create_list_get_update(api, api_office):
    assert api_office.d2["queue_ids"] == [api_office.q1["id"], api_office.q2["id"]]
    assert api_office.d2["pick_mode"] == "queue_order"
    listed = api.get("/desks?limit=500")
    assert api_office.d1 in listed["items"] and listed["total"] >= 2
    assert api.get(f"/desks/{api_office.d1['id']}") == api_office.d1
    updated = api.patch(f"/desks/{api_office.d2['id']}", {
        "name": "Room 9" + api_office.p2, "queue_ids": [api_office.q2["id"], api_office.q1["id"]],
        "pick_mode": "oldest"}, who="admin")
    assert updated["queue_ids"] == [api_office.q2["id"], api_office.q1["id"]]
    assert updated["pick_mode"] == "oldest" and updated["name"] == "Room 9" + api_office.p2
    clash = api.post("/desks", {"name": updated["name"].lower(),
                                "queue_ids": [api_office.q1["id"]]}, 409, who="admin")
    assert clash["code"] == "conflict"


def test_display_create_list_and_state(api, api_office):
    display = api.post("/displays", {"name": "Lobby " + api_office.p1,
                                     "queue_ids": [api_office.q1["id"]]}, 201, who="admin")
    assert display["queue_ids"] == [api_office.q1["id"]]
    assert display in api.get("/displays?limit=500", who=None)["items"]
    ticket = api.join(api_office.q1["id"])
    api.join(api_office.q1["id"])
    api.post(f"/desks/{api_office.d1['id']}/call-next")
    state = api.get(f"/displays/{display['id']}/state", who=None)
    assert state["display"] == display
    assert [q["id"] for q in state["queues"]] == [api_office.q1["id"]]
    q = state["queues"][0]
    assert q["waiting"] == 1 and q["now_serving"]["code"] == ticket["code"]
    assert q["now_serving"]["desk_name"] == api_office.d1["name"]
    assert state["recent_calls"][0]["code"] == ticket["code"]
    assert state["recent_calls"][0]["desk_name"] == api_office.d1["name"]
    everything = api.post("/displays", {"name": "All " + api_office.p1}, 201, who="admin")
    assert everything["queue_ids"] == []
    shown = {q["id"] for q in api.get(f"/displays/{everything['id']}/state", who=None)["queues"]}
    assert {api_office.q1["id"], api_office.q2["id"]} <= shown


# -- joining -----------------------------------------------------------------------------------

def test_anonymous_join_returns_the_ticket_with_its_link(api, client, api_office):
    first = api.join(api_office.q1["id"], {"name": "Maija", "labels": ["wheelchair"],
                                       "extra": [{"title": "Reason", "value": "lab"}]})
    second = api.join(api_office.q1["id"], {"source": "kiosk"})
    assert (first["number"], first["code"]) == (1, f"{api_office.p1}001")
    assert (second["number"], second["code"]) == (2, f"{api_office.p1}002")
    assert first["state"] == "WAITING" and first["source"] == "remote"
    assert second["source"] == "kiosk"
    assert (first["position"], second["position"]) == (1, 2)
    assert second["estimated_wait_s"] == 60  # 1 ahead × 120 s ÷ 2 desks
    assert len(first["hash"]) == 22 and first["url"].endswith("/t/" + first["hash"])
    assert first["labels"] == []  # staff-only unless marked public
    assert first["queue_name"] == api_office.q1["name"]
    r = client.post(f"/api/v1/queues/{api_office.q1['id']}/tickets", json={})
    assert r.headers["Location"] == f"/api/v1/tickets/by-hash/{r.json['hash']}"


def test_a_join_answers_the_same_json_as_every_other_endpoint(api, client, world, api_office):
    """The join's own encoder gives jsonify's bytes: sorted keys, ASCII, compact."""
    from flask import jsonify

    r = client.post(f"/api/v1/queues/{api_office.q1['id']}/tickets",
                    json={"name": "Äiti \u2603", "labels": ["x"]}, headers=world.staff)
    assert r.status_code == 201 and r.mimetype == "application/json"
    with client.application.test_request_context():
        assert r.data == jsonify(r.json).data
    assert r.json["name"] == "Äiti \u2603" and r.data.isascii()


def test_staff_join_with_priority_labels_and_extra(api, api_office):
    api.join(api_office.q1["id"])
    vip = api.join(api_office.q1["id"], {
        "name": "Aino", "phone": "+358 40 1", "priority": "priority", "notes": "walks slowly",
        "labels": [{"value": "VIP", "color": "#f0f"}],
        "extra": [{"title": "Insurance", "value": "Kela"}]}, who="staff")
    assert vip["priority"] == "priority" and vip["position"] == 1
    assert vip["source"] == "desk" and vip["name"] == "Aino" and vip["phone"] == "+358 40 1"
    assert vip["notes"] == "walks slowly" and vip["extra"] == [
        {"title": "Insurance", "value": "Kela"}]
    assert vip["labels"] == [{"value": "VIP", "color": "#ff00ff", "public": False}]
    booked = api.join(api_office.q1["id"], {"source": "appointment"}, who="admin")
    assert booked["source"] == "appointment"
    called = api.post(f"/desks/{api_office.d1['id']}/call-next")
    assert called["id"] == vip["id"]


# -- the staff list ----------------------------------------------------------------------------

def test_ticket_list_filters_sort_and_paging(api, api_office):
    q1, q2 = api_office.q1["id"], api_office.q2["id"]
    a1 = api.join(q1, {"source": "kiosk"})
    a2 = api.join(q1)
    b1 = api.join(q2, {"source": "kiosk"})
    a3 = api.join(q1, {"priority": True}, who="staff")
    api.post(f"/tickets/{a2['id']}/call", {"desk_id": api_office.d1["id"]})
    both = f"queue={q1},{q2}"

    def ids(query: str) -> list[str]:
        page = api.get(f"/tickets?{query}")
        assert page["total"] >= len(page["items"])
        return [t["id"] for t in page["items"]]

    assert ids(f"{both}&sort=created_at") == [a1["id"], a2["id"], b1["id"], a3["id"]]
    assert ids(f"{both}") == [a3["id"], b1["id"], a2["id"], a1["id"]]  # newest first
    assert ids(f"queue={q2}") == [b1["id"]]
    assert ids(f"{both}&state=called") == [a2["id"]]
    assert ids(f"{both}&state=WAITING,CALLED&sort=number") == [
        a1["id"], b1["id"], a2["id"], a3["id"]]
    assert ids(f"{both}&source=kiosk&sort=created_at") == [a1["id"], b1["id"]]
    assert ids(f"{both}&source=desk") == [a3["id"]]
    assert ids(f"queue={q1}&state=WAITING&sort=queue") == [a3["id"], a1["id"]]
    assert ids(f"{both}&created_after={b1['created_at']}&sort=created_at") == [
        b1["id"], a3["id"]]
    assert ids(f"{both}&created_before={b1['created_at']}&sort=created_at") == [
        a1["id"], a2["id"]]
    page = api.get(f"/tickets?{both}&sort=created_at&limit=2&offset=1")
    assert [t["id"] for t in page["items"]] == [a2["id"], b1["id"]]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert page["items"][0]["name"] is None and "notes" in page["items"][0]
    assert api.get(f"/tickets?{both}&offset=10")["items"] == []


# -- one ticket through its life ----------------------------------------------------------------

def test_detail_shows_interactions_in_order(api, api_office):
    t = api.join(api_office.q1["id"])
    api.post(f"/tickets/{t['id']}/call", {"desk_id": api_office.d1["id"]})
    api.post(f"/tickets/{t['id']}/return")
    api.post(f"/tickets/{t['id']}/call", {"desk_id": api_office.d2["id"]})
    api.post(f"/tickets/{t['id']}/complete")
    detail = api.get(f"/tickets/{t['id']}")
    assert detail["state"] == "COMPLETED" and detail["completed_at"]
    assert [(i["desk_id"], i["outcome"]) for i in detail["interactions"]] == [
        (api_office.d1["id"], "returned"), (api_office.d2["id"], "completed")]
    assert all(i["user_id"] == api.world.staff_id for i in detail["interactions"])
    assert detail["called_by"] == api.world.staff_id and detail["version"] == 5


def test_call_next_recall_complete_and_queue_empty(api, api_office):
    t = api.join(api_office.q1["id"])
    called = api.post(f"/desks/{api_office.d1['id']}/call-next")
    assert called["id"] == t["id"] and called["state"] == "CALLED"
    assert called["desk_id"] == api_office.d1["id"] and called["desk_name"] == api_office.d1["name"]
    assert called["now_serving"]["code"] == t["code"] and called["position"] is None
    recalled = api.post(f"/tickets/{t['id']}/recall", {"version": called["version"]})
    assert recalled["recall_count"] == 1 and recalled["state"] == "CALLED"
    done = api.post(f"/tickets/{t['id']}/complete")
    assert done["state"] == "COMPLETED"
    empty = api.post(f"/desks/{api_office.d1['id']}/call-next", status=404)
    assert empty["code"] == "queue_empty"


def test_call_out_of_order_skip_and_staff_cancel(api, api_office):
    first, second = api.join(api_office.q1["id"]), api.join(api_office.q1["id"])
    called = api.post(f"/tickets/{second['id']}/call", {"desk_id": api_office.d2["id"]})
    assert called["desk_name"] == api_office.d2["name"]
    assert api.post(f"/tickets/{second['id']}/skip")["state"] == "SKIPPED"
    canceled = api.post(f"/tickets/{first['id']}/cancel")
    assert canceled["state"] == "CANCELED" and canceled["canceled_by"] == "staff"


def test_return_keeps_the_place(api, api_office):
    first, second = api.join(api_office.q1["id"]), api.join(api_office.q1["id"])
    api.post(f"/desks/{api_office.d1['id']}/call-next")
    back = api.post(f"/tickets/{first['id']}/return")
    assert back["state"] == "WAITING" and back["position"] == 1
    assert api.get(f"/tickets/{second['id']}")["position"] == 2


def test_transfer_keeps_the_code(api, api_office):
    t = api.join(api_office.q1["id"])
    waiting = api.join(api_office.q2["id"])
    api.post(f"/tickets/{t['id']}/call", {"desk_id": api_office.d1["id"]})
    moved = api.post(f"/tickets/{t['id']}/transfer", {"queue_id": api_office.q2["id"]})
    assert moved["queue_id"] == api_office.q2["id"] and moved["code"] == t["code"]
    assert moved["state"] == "WAITING" and moved["position"] == 2
    t2 = api.join(api_office.q1["id"])
    api.post(f"/tickets/{t2['id']}/call", {"desk_id": api_office.d1["id"]})
    front = api.post(f"/tickets/{t2['id']}/transfer", {"queue_id": api_office.q2["id"],
                                                       "to_front": True})
    assert front["position"] == 1
    assert api.get(f"/tickets/{waiting['id']}")["position"] == 2


def test_reorder_within_the_queue(api, api_office):
    a, b, c = (api.join(api_office.q1["id"]) for _ in range(3))
    moved = api.post(f"/tickets/{c['id']}/reorder", {"after": None})
    assert moved["position"] == 1
    moved = api.post(f"/tickets/{a['id']}/reorder", {"after": b["id"]})
    order = api.get(f"/tickets?queue={api_office.q1['id']}&state=WAITING&sort=queue")["items"]
    assert [t["id"] for t in order] == [c["id"], b["id"], a["id"]]


def test_edit_with_version_and_stale_version(api, api_office):
    t = api.join(api_office.q1["id"])
    edited = api.patch(f"/tickets/{t['id']}", {
        "version": t["version"], "name": "Maija", "phone": "040 1", "notes": "deaf",
        "labels": ["interpreter"], "extra": [{"title": "Language", "value": "sign"}],
        "priority": "priority"})
    assert edited["version"] == t["version"] + 1
    assert (edited["name"], edited["phone"], edited["notes"]) == ("Maija", "040 1", "deaf")
    assert edited["labels"][0]["value"] == "interpreter" and edited["priority"] == "priority"
    assert edited["extra"] == [{"title": "Language", "value": "sign"}]
    stale = api.patch(f"/tickets/{t['id']}", {"version": t["version"], "name": "X"}, 409)
    assert stale["code"] == "version_conflict" and stale["current_version"] == edited["version"]
    cleared = api.patch(f"/tickets/{t['id']}", {"version": edited["version"], "name": None,
                                                "labels": None})
    assert cleared["name"] is None and cleared["labels"] == []


# -- the holder ----------------------------------------------------------------------------------

def test_holder_reads_follows_and_cancels_by_hash(api, api_office):
    ahead = api.join(api_office.q1["id"])
    mine = api.join(api_office.q1["id"])
    view = api.get(f"/tickets/by-hash/{mine['hash']}", who=None)
    assert view["code"] == mine["code"] and view["position"] == 2
    assert view["estimated_wait_s"] == 60 and view["desk_name"] is None
    assert view["url"].endswith("/t/" + mine["hash"])
    api.post(f"/desks/{api_office.d1['id']}/call-next")
    view = api.get(f"/tickets/by-hash/{mine['hash']}", who=None)
    assert view["position"] == 1 and view["now_serving"]["code"] == ahead["code"]
    api.post(f"/tickets/{mine['id']}/call", {"desk_id": api_office.d2["id"]})
    view = api.get(f"/tickets/by-hash/{mine['hash']}", who=None)
    assert view["state"] == "CALLED" and view["desk_name"] == api_office.d2["name"]
    canceled = api.post(f"/tickets/by-hash/{mine['hash']}/cancel", who=None)
    assert canceled["state"] == "CANCELED" and canceled["canceled_by"] == "customer"
    again = api.post(f"/tickets/by-hash/{mine['hash']}/cancel", status=409, who=None)
    assert again["code"] == "invalid_transition"


def test_location_name_setting_renames_the_office(tmp_path):
    from jonot_local.app import create_app

    app = create_app({"data_dir": tmp_path / "d", "location_name": "  Kylä Clinic "})
    try:
        assert app.test_client().get("/api/v1/health").json["location_name"] == "Kylä Clinic"
    finally:
        app.extensions["jonot"].store.close()
