"""Live streams (Server-Sent Events): the public ``/events`` and a ticket's by-hash stream.

In-process tests (Flask test client) cover framing, scoping, replay, slots and
shutdown; the ``slow`` ones run a real ``jonot-local serve`` on loopback and
read the streams with a raw HTTP client, as a browser's EventSource would.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jonot_local.api.streams import PublicFeed, in_scope, sse_frame
from jonot_local.app import create_app
from jonot_local.domain import queues, tickets, users
from jonot_local.events import EventHub
from jonot_local.streamslots import SlotLimits, SlotRefused, StreamSlots

from .support import ADMIN, STAFF, LiveServer, seed_accounts, setup_office, token

# -- a small SSE client ------------------------------------------------------------------------


def parse_block(block: bytes) -> dict[str, Any]:
    """One SSE block as ``{"event", "id", "data", "retry", "comments"}``."""
    out: dict[str, Any] = {"event": None, "id": None, "data": None, "retry": None,
                           "comments": []}
    data_lines = []
    for line in block.decode().split("\n"):
        if line.startswith(":"):
            out["comments"].append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data_lines.append(value)
        elif name in ("event", "id", "retry"):
            out[name] = value
    if data_lines:
        out["data"] = json.loads("\n".join(data_lines))
    return out


def parse_stream(raw: bytes) -> list[dict[str, Any]]:
    """Every complete block of an SSE body."""
    return [parse_block(b) for b in raw.split(b"\n\n")[:-1] if b.strip()]


class SSEClient:
    """An SSE connection on a raw ``http.client`` connection, with timeouts everywhere."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream",
                                                **(headers or {})})
        self.resp = self.conn.getresponse()
        self.raw = b""      # everything received, for checks of what never appears
        self._buf = b""

    @property
    def status(self) -> int:
        return self.resp.status

    def next_block(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The next block (event or comment); ``None`` when the server ended the stream."""
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self._buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"no SSE block within {timeout} s; got {self.raw[-500:]!r}")
            try:
                chunk = self.resp.read1(65536)
            except (http.client.IncompleteRead, ValueError, ConnectionError):
                chunk = b""  # the server hung up mid-stream (shutdown)
            if not chunk:
                return None
            self.raw += chunk
            self._buf += chunk
        block, self._buf = self._buf.split(b"\n\n", 1)
        return parse_block(block)

    def until(self, want: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Blocks up to and including the first for which ``want(block)`` is true."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"condition not met in {timeout} s; saw {seen}")
            block = self.next_block(left)
            if block is None:
                raise AssertionError(f"stream ended before the condition; saw {seen}")
            seen.append(block)
            if want(block):
                return seen

    def close(self) -> None:
        """Hang up (the response holds the socket too: close both, or the fd stays open)."""
        self.resp.close()
        self.conn.close()


def event_named(name: str) -> Any:
    return lambda b: b["event"] == name


# -- fixtures -------------------------------------------------------------------------------


def make_app(tmp_path: Path, **settings: Any) -> Any:
    config = {"data_dir": tmp_path / "data", "hash_lookup_floor_ms": 0,
              "sse_heartbeat_s": 0.2, **settings}
    app = create_app(config)
    store = app.extensions["jonot"].store
    with store.write() as tx:
        users.create_user(tx, STAFF[0], STAFF[1], role="staff")
    return app


@pytest.fixture
def stream_app(tmp_path: Path) -> Iterator[Any]:
    app = make_app(tmp_path)
    yield app
    app.extensions["jonot"].hub.close()
    app.extensions["jonot"].store.close()


def small_office(store: Any) -> dict[str, Any]:
    with store.write() as tx:
        a = queues.create_queue(tx, name="General", prefix="A")
        lab = queues.create_queue(tx, name="Laboratory", prefix="L")
        desk = queues.create_desk(tx, name="Room 3", queue_ids=[a.id, lab.id])
        staff = users.create_user(tx, "nurse", "nurse-password", role="staff")
    return {"a": a, "lab": lab, "desk": desk, "staff": staff}


def body_of(resp: Any) -> bytes:
    """The whole body of a (terminating) streamed test-client response."""
    try:
        return b"".join(resp.response)
    finally:
        resp.close()


SECRETS = {"name": "Secretname Person", "phone": "+358401234567", "notes": "privatenote",
           "extra": [{"title": "Hetu", "value": "010101-123X"}]}


# -- framing and the hub ------------------------------------------------------------------------


def test_sse_frame_is_one_parseable_block() -> None:
    frame = sse_frame("ticket", {"code": "A001", "text": "two\nlines"}, "e-7", 3000)
    assert frame.endswith(b"\n\n") and frame.count(b"\n\n") == 1
    block = parse_block(frame[:-2])
    assert block == {"event": "ticket", "id": "e-7", "retry": "3000", "comments": [],
                     "data": {"code": "A001", "text": "two\nlines"}}


def test_hub_replays_the_tail_and_reports_a_gap() -> None:
    hub = EventHub(backlog=4)
    hub.publish([{"n": i} for i in range(1, 7)])  # seqs 1..6; the backlog keeps 3..6
    assert [s for s, _ in hub.since(4)] == [5, 6]
    assert [e["n"] for _, e in hub.since(2)] == [3, 4, 5, 6]
    assert hub.since(1) is None and hub.since(6) == []
    assert hub.parse_last_event_id(hub.event_id(5)) == 5
    assert hub.parse_last_event_id("other-5") is None
    assert hub.parse_last_event_id(hub.event_id(99)) is None


def test_slots_refuse_beyond_the_limit() -> None:
    slots = StreamSlots(SlotLimits.of(total=2, device_reserve=0, per_client=0, per_ticket=0))
    first = slots.acquire("a")
    slots.acquire("b")
    with pytest.raises(SlotRefused):
        slots.acquire("c")
    first()
    first()  # a second release gives nothing back twice
    slots.acquire("c")
    assert slots.in_use == 2
    with pytest.raises(SlotRefused):
        StreamSlots(SlotLimits.of(-3, 0, 0, 0)).acquire("a")


def test_scope_filters_by_queue_and_lets_desks_through() -> None:
    assert in_scope({"kind": "ticket", "queue_id": "q1"}, None)
    assert in_scope({"kind": "ticket", "queue_id": "q1"}, frozenset({"q1"}))
    assert not in_scope({"kind": "ticket", "queue_id": "q2"}, frozenset({"q1"}))
    assert in_scope({"kind": "ticket", "queue_id": "q2", "prev_queue_id": "q1"},
                    frozenset({"q1"}))
    assert in_scope({"kind": "desk", "desk_id": "d"}, frozenset({"q1"}))


# -- the public payload ---------------------------------------------------------------------------


def test_public_frames_carry_no_private_data(stream_app: Any) -> None:
    rt = stream_app.extensions["jonot"]
    office = small_office(rt.store)
    start = rt.hub.last_seq
    with rt.store.write() as tx:
        t = tickets.join(tx, office["a"].id, source="desk", **SECRETS)
        tickets.join(tx, office["a"].id)
        tickets.call(tx, t.id, office["desk"].id, user_id=office["staff"]["id"])
        tickets.transfer(tx, t.id, office["lab"].id, user_id=office["staff"]["id"])
    feed = PublicFeed(rt.store, rt.hub, 300.0)
    events = rt.hub.since(start)
    raw = feed.frames(events, None)
    for secret in (t.hash, t.id, SECRETS["name"], SECRETS["phone"], SECRETS["notes"],
                   "010101-123X", office["staff"]["id"]):
        assert secret.encode() not in raw
    blocks = parse_stream(raw)
    assert [b["data"]["action"] for b in blocks] == ["joined", "joined", "called",
                                                     "transferred"]
    called = blocks[2]["data"]
    assert called["code"] == "A001" and called["desk_name"] == "Room 3"
    assert called["queues"][0]["waiting"] == 1
    # Frames carry the queues as they are when built: here after the transfer, which
    # took the call back, so queue A serves nobody now.
    assert called["queues"][0]["now_serving"] is None
    moved = blocks[3]["data"]
    assert moved["prev_queue_id"] == office["a"].id and moved["queue_id"] == office["lab"].id
    assert {q["id"]: q["waiting"] for q in moved["queues"]} == {office["lab"].id: 1,
                                                                  office["a"].id: 1}
    assert [b["id"] for b in blocks] == [rt.hub.event_id(s) for s, _ in events]
    # shared: the same bytes for every viewer, built once
    assert feed.frame(events[2][0], events[2][1]) is feed.frame(events[2][0], events[2][1])
    # scoped: a viewer of the lab queue hears only of the transfer (which touches it)
    lab_only = parse_stream(feed.frames(events, frozenset({office["lab"].id})))
    assert [b["data"]["action"] for b in lab_only] == ["transferred"]


# -- GET /events in-process (poll mode ends the response) ----------------------------------------


def test_events_state_on_connect_then_replay_from_last_event_id(stream_app: Any) -> None:
    rt = stream_app.extensions["jonot"]
    office = small_office(rt.store)
    client = stream_app.test_client()
    r = client.get("/api/v1/events?poll=1", buffered=False)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    assert r.headers["Cache-Control"] == "no-cache"
    [state] = parse_stream(body_of(r))
    assert state["event"] == "state" and state["retry"] == "3000"
    assert [q["prefix"] for q in state["data"]["queues"]] == ["A", "L"]
    assert state["data"]["recent_calls"] == []

    with rt.store.write() as tx:
        tickets.join(tx, office["a"].id)
        tickets.join(tx, office["lab"].id)
    # the id of the state event, by header or query parameter: only the missed events
    for kwargs in ({"headers": {"Last-Event-ID": state["id"]}, "query_string": {"poll": "1"}},
                   {"query_string": {"poll": "1", "last_event_id": state["id"]}}):
        r = client.get("/api/v1/events", buffered=False, **kwargs)
        blocks = [b for b in parse_stream(body_of(r)) if b["event"]]
        assert [(b["event"], b["data"]["code"]) for b in blocks] == [
            ("ticket", "A001"), ("ticket", "L001")]
        assert blocks[-1]["id"] == rt.hub.event_id(rt.hub.last_seq)
    # an id from another run (or garbage) gets the full state instead
    r = client.get("/api/v1/events?poll=1", buffered=False,
                   headers={"Last-Event-ID": "deadbeef-1"})
    [state2] = parse_stream(body_of(r))
    assert state2["event"] == "state"
    assert [q["waiting"] for q in state2["data"]["queues"]] == [1, 1]


def test_events_poll_with_nothing_new_waits_a_heartbeat(stream_app: Any) -> None:
    rt = stream_app.extensions["jonot"]
    client = stream_app.test_client()
    t0 = time.monotonic()
    r = client.get("/api/v1/events?poll=1", buffered=False,
                   headers={"Last-Event-ID": rt.hub.event_id(rt.hub.last_seq)})
    raw = body_of(r)
    assert raw.startswith(b"retry: 3000\n\n") and raw.endswith(b": keep-alive\n\n")
    assert 0.15 <= time.monotonic() - t0 < 5


def test_events_scoped_to_a_display_or_queues(stream_app: Any) -> None:
    rt = stream_app.extensions["jonot"]
    office = small_office(rt.store)
    with rt.store.write() as tx:
        display = queues.create_display(tx, name="Lab TV", queue_ids=[office["lab"].id])
    client = stream_app.test_client()
    r = client.get(f"/api/v1/events?poll=1&display={display['id']}", buffered=False)
    [state] = parse_stream(body_of(r))
    assert state["data"]["display"]["name"] == "Lab TV"
    assert [q["prefix"] for q in state["data"]["queues"]] == ["L"]
    r = client.get(f"/api/v1/events?poll=1&queue={office['a'].id}", buffered=False)
    assert [q["prefix"] for q in parse_stream(body_of(r))[0]["data"]["queues"]] == ["A"]
    r = client.get(f"/api/v1/events?poll=1&queue={office['a'].id},{office['lab'].id}",
                   buffered=False)
    assert len(parse_stream(body_of(r))[0]["data"]["queues"]) == 2

    r = client.get("/api/v1/events?display=nope")
    assert r.status_code == 404 and r.json["code"] == "not_found"
    r = client.get("/api/v1/events?queue=nope")
    assert r.status_code == 422 and r.json["code"] == "validation_error"


def test_stream_slots_cap_and_release(tmp_path: Path) -> None:
    app = make_app(tmp_path, threads=3, stream_reserve=1,  # room for two streams
                   device_stream_reserve=0)
    client = app.test_client()
    try:
        office = small_office(app.extensions["jonot"].store)
        first = client.get("/api/v1/events", buffered=False)
        with app.extensions["jonot"].store.write() as tx:
            t = tickets.join(tx, office["a"].id)
        second = client.get(f"/api/v1/tickets/by-hash/{t.hash}/events", buffered=False)
        assert first.status_code == second.status_code == 200
        third = client.get("/api/v1/events")
        assert third.status_code == 503 and third.json["code"] == "streams_full"
        assert third.headers["Retry-After"] == "10"
        assert client.get(f"/api/v1/tickets/by-hash/{t.hash}/events").status_code == 503
        assert client.get("/api/v1/health").status_code == 200
        # closing a stream that never sent a byte still gives its slot back
        first.close()
        again = client.get("/api/v1/events", buffered=False)
        assert again.status_code == 200
        again.close()
        second.close()
        assert app.extensions["jonot"].streams.slots.in_use == 0
    finally:
        app.extensions["jonot"].hub.close()
        app.extensions["jonot"].store.close()


def test_hub_close_ends_open_streams_promptly(stream_app: Any) -> None:
    rt = stream_app.extensions["jonot"]
    office = small_office(rt.store)
    with rt.store.write() as tx:
        t = tickets.join(tx, office["a"].id)
    paths = ["/api/v1/events", f"/api/v1/tickets/by-hash/{t.hash}/events"]
    done = []

    def drain(path: str) -> None:
        # as under waitress, one thread runs the request and reads its whole stream
        resp = stream_app.test_client().get(path, buffered=False)
        done.append(body_of(resp))

    threads = [threading.Thread(target=drain, args=(p,), daemon=True) for p in paths]
    for th in threads:
        th.start()
    time.sleep(0.3)
    assert not done  # both still streaming (heartbeats)
    t0 = time.monotonic()
    rt.hub.close()
    for th in threads:
        th.join(5)
    assert len(done) == 2 and time.monotonic() - t0 < 4  # generous: it is immediate
    assert stream_app.extensions["jonot"].streams.slots.in_use == 0


def test_unknown_hash_gets_the_404_problem_before_any_stream(client: Any) -> None:
    r = client.get("/api/v1/tickets/by-hash/AAAAAAAAAAAAAAAAAAAAAA/events")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert r.json["code"] == "not_found"
    r = client.get("/api/v1/tickets/by-hash/short/events")
    assert r.status_code == 404 and r.json["code"] == "not_found"


# -- against a real server on loopback ---------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One real server for the stream tests, with short heartbeats, and a small office."""
    data_dir = tmp_path_factory.mktemp("streams") / "live"
    seed_accounts(data_dir)
    server = LiveServer(data_dir)
    server.env = {**clean_env(), "JONOT_SSE_HEARTBEAT_S": "0.3", "JONOT_THREADS": "48",
                  "JONOT_STREAM_RESERVE": "8"}
    server.start()
    try:
        headers = token(server.url, ADMIN)
        office = setup_office(server.url, headers, queues=2, desks=1)
        yield {"server": server, "url": server.url, "headers": headers, "office": office}
    finally:
        server.stop()


def clean_env() -> dict[str, str]:
    """The environment without the developer's JONOT_* settings (module fixtures run
    before the per-test scrubbing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JONOT_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def join(live: dict[str, Any], queue: int = 0, **body: Any) -> dict[str, Any]:
    qid = live["office"]["queues"][queue]["id"]
    r = requests.post(f"{live['url']}/api/v1/queues/{qid}/tickets", json=body,
                      headers=live["headers"] if body else None, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def staff_post(live: dict[str, Any], path: str, body: Any = None) -> dict[str, Any]:
    r = requests.post(live["url"] + path, json=body, headers=live["headers"], timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def drain_queue(live: dict[str, Any]) -> None:
    """Call and complete everything waiting, so each test starts from empty queues."""
    desk = live["office"]["desks"][0]["id"]
    while True:
        r = requests.post(f"{live['url']}/api/v1/desks/{desk}/call-next",
                          headers=live["headers"], timeout=10)
        if r.status_code == 404:
            return
        staff_post(live, f"/api/v1/tickets/{r.json()['id']}/complete")


@pytest.mark.slow
def test_a_call_reaches_both_streams(live: dict[str, Any]) -> None:
    drain_queue(live)
    mine = join(live)
    public = SSEClient(live["url"], "/api/v1/events")
    holder = SSEClient(live["url"], f"/api/v1/tickets/by-hash/{mine['hash']}/events")
    try:
        assert public.status == holder.status == 200
        assert public.resp.getheader("Content-Type").startswith("text/event-stream")
        [state] = public.until(event_named("state"))
        waiting = {q["id"]: q["waiting"] for q in state["data"]["queues"]}
        assert waiting[mine["queue_id"]] == 1
        [first] = holder.until(event_named("ticket"))
        assert first["data"]["state"] == "WAITING" and first["data"]["position"] == 1

        desk = live["office"]["desks"][0]
        called = staff_post(live, f"/api/v1/desks/{desk['id']}/call-next")
        assert called["code"] == mine["code"]

        got = public.until(lambda b: b["event"] == "ticket"
                           and b["data"]["code"] == mine["code"]
                           and b["data"]["action"] == "called")[-1]["data"]
        assert got["state"] == "CALLED" and got["desk_name"] == desk["name"]
        assert got["desk_id"] == desk["id"] and got["recall_count"] == 0
        [queue] = [q for q in got["queues"] if q["id"] == mine["queue_id"]]
        assert queue["waiting"] == 0 and queue["now_serving"]["code"] == mine["code"]
        for private in (mine["hash"], mine["id"]):
            assert private.encode() not in public.raw

        view = holder.until(lambda b: b["event"] == "ticket"
                            and b["data"]["state"] == "CALLED")[-1]["data"]
        assert view["desk_name"] == desk["name"] and view["hash"] == mine["hash"]

        staff_post(live, f"/api/v1/tickets/{mine['id']}/recall")
        recall = public.until(lambda b: b["event"] == "ticket"
                              and b["data"]["action"] == "recalled")[-1]["data"]
        assert recall["recall_count"] == 1
        assert holder.until(lambda b: b["event"] == "ticket"
                            and b["data"]["recall_count"] == 1)

        staff_post(live, f"/api/v1/tickets/{mine['id']}/complete")
        final = holder.until(event_named("end"))
        assert final[-1]["data"] == {"state": "COMPLETED"}
        assert final[-2]["event"] == "ticket" and final[-2]["data"]["state"] == "COMPLETED"
        assert int(final[-1]["retry"]) >= 60_000
        assert holder.next_block(5) is None  # the ticket's stream ends with it
    finally:
        public.close()
        holder.close()


@pytest.mark.slow
def test_a_tickets_stream_never_carries_another_tickets_data(live: dict[str, Any]) -> None:
    drain_queue(live)
    other = join(live, name="Othername Person", phone="+358409999999", notes="othernote",
                 extra=[{"title": "Secret", "value": "othervalue"}])
    mine = join(live)
    later = join(live, name="Latername Person")
    moved_in = join(live, queue=1, name="Transfername Person")
    holder = SSEClient(live["url"], f"/api/v1/tickets/by-hash/{mine['hash']}/events")
    try:
        [first] = holder.until(event_named("ticket"))
        assert first["data"]["position"] == 2 and first["data"]["id"] == mine["id"]
        # things happen to other tickets; only the position change is my business
        staff_post(live, f"/api/v1/tickets/{later['id']}/cancel")
        r = requests.patch(f"{live['url']}/api/v1/tickets/{other['id']}",
                           json={"version": 1, "notes": "othernote2"},
                           headers=live["headers"], timeout=10)
        assert r.status_code == 200, r.text
        staff_post(live, f"/api/v1/tickets/{moved_in['id']}/call",
                   {"desk_id": live["office"]["desks"][0]["id"]})
        staff_post(live, f"/api/v1/tickets/{moved_in['id']}/transfer",
                   {"queue_id": mine["queue_id"]})
        staff_post(live, f"/api/v1/tickets/{other['id']}/cancel")
        update = holder.until(lambda b: b["event"] == "ticket"
                              and b["data"]["position"] == 1)[-1]["data"]
        assert update["id"] == mine["id"] and update["state"] == "WAITING"
        holder.until(lambda b: "keep-alive" in b["comments"], timeout=5)
        for t in (other, later, moved_in):
            for value in (t["hash"], t["id"], t["code"]):
                assert value.encode() not in holder.raw, value
        for value in ("Othername", "Latername", "Transfername", "358409999999", "othernote",
                      "othervalue"):
            assert value.encode() not in holder.raw, value
        for block in parse_stream(holder.raw):
            if block["event"] == "ticket":
                assert block["data"]["id"] == mine["id"]
                assert block["data"]["hash"] == mine["hash"]
    finally:
        holder.close()
        drain_queue(live)


@pytest.mark.slow
def test_last_event_id_resume_replays_what_was_missed(live: dict[str, Any]) -> None:
    drain_queue(live)
    first = SSEClient(live["url"], "/api/v1/events")
    [state] = first.until(event_named("state"))
    first.close()
    a = join(live)
    b = join(live, queue=1)
    desk = live["office"]["desks"][0]["id"]
    staff_post(live, f"/api/v1/desks/{desk}/call-next")
    again = SSEClient(live["url"], "/api/v1/events", headers={"Last-Event-ID": state["id"]})
    try:
        blocks = again.until(lambda blk: blk["event"] == "ticket"
                             and blk["data"]["action"] == "called")
        events = [blk for blk in blocks if blk["event"]]
        assert [(e["event"], e["data"]["action"], e["data"]["code"]) for e in events] == [
            ("ticket", "joined", a["code"]), ("ticket", "joined", b["code"]),
            ("ticket", "called", a["code"])]
        epoch, _, seq = state["id"].partition("-")
        assert [e["id"] for e in events] == [f"{epoch}-{int(seq) + k}" for k in (1, 2, 3)]
    finally:
        again.close()
    # an id this server never issued: the full state instead
    other = SSEClient(live["url"], "/api/v1/events?last_event_id=0000-5")
    try:
        assert other.until(event_named("state"))[-1]["event"] == "state"
    finally:
        other.close()
    drain_queue(live)


@pytest.mark.slow
def test_heartbeats_arrive_and_unknown_hash_is_404(live: dict[str, Any]) -> None:
    public = SSEClient(live["url"], "/api/v1/events")
    try:
        public.until(event_named("state"))
        t0 = time.monotonic()
        public.until(lambda b: "keep-alive" in b["comments"], timeout=5)
        public.until(lambda b: "keep-alive" in b["comments"], timeout=5)
        assert time.monotonic() - t0 < 5
    finally:
        public.close()
    r = requests.get(f"{live['url']}/api/v1/tickets/by-hash/AAAAAAAAAAAAAAAAAAAAAA/events",
                     timeout=10)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"


@pytest.mark.slow
def test_stream_cap_gives_503_and_gone_clients_free_their_slot(tmp_path: Path) -> None:
    data_dir = tmp_path / "capped"
    seed_accounts(data_dir)
    # 6 threads, 4 kept for ordinary requests: two streams at most
    server = LiveServer(data_dir, env={"JONOT_THREADS": "6", "JONOT_STREAM_RESERVE": "4",
                                       "JONOT_DEVICE_STREAM_RESERVE": "0",
                                       "JONOT_SSE_HEARTBEAT_S": "0.3"}).start()
    streams: list[SSEClient] = []
    try:
        for _ in range(2):
            s = SSEClient(server.url, "/api/v1/events")
            streams.append(s)
            assert s.status == 200
            s.until(event_named("state"))
        r = requests.get(server.url + "/api/v1/events", timeout=10)
        assert r.status_code == 503 and r.json()["code"] == "streams_full"
        assert r.headers["Retry-After"].isdigit()
        assert requests.get(server.url + "/api/v1/health", timeout=10).status_code == 200
        for s in streams:
            s.close()  # the clients go away without a word
        streams.clear()
        deadline = time.monotonic() + 10
        accepted = 0
        while accepted < 2 and time.monotonic() < deadline:
            s = SSEClient(server.url, "/api/v1/events")
            if s.status == 200:
                streams.append(s)
                s.until(event_named("state"))
                accepted += 1
            else:
                s.close()
                time.sleep(0.1)
        assert accepted == 2, "slots of disconnected clients were not released"
        # shutting down with streams open: the process stops at once, streams end
        t0 = time.monotonic()
        server.stop()
        assert server.proc is not None and server.proc.returncode == 0
        assert time.monotonic() - t0 < 8  # LiveServer.stop would kill -9 at 10 s
        for s in streams:
            # keep-alive comments already on the wire may come first; then the end
            for _ in range(50):
                block = s.next_block(5)
                if block is None:
                    break
                assert block["event"] is None and block["data"] is None, block
            else:
                raise AssertionError("stream did not end after shutdown")
    finally:
        for s in streams:
            s.close()
        server.stop()


@pytest.mark.slow
def test_many_holders_each_get_their_own_view_from_the_shared_feed(live: dict[str, Any]) -> None:
    drain_queue(live)
    mine = [join(live, name=f"Holder {n}") for n in range(4)]
    public = SSEClient(live["url"], "/api/v1/events")
    holders = {t["id"]: SSEClient(live["url"], f"/api/v1/tickets/by-hash/{t['hash']}/events")
               for t in mine}
    try:
        for n, t in enumerate(mine):
            [first] = holders[t["id"]].until(event_named("ticket"))
            assert first["data"]["position"] == n + 1
        [state] = public.until(event_named("state"))
        desk = live["office"]["desks"][0]["id"]
        staff_post(live, f"/api/v1/desks/{desk}/call-next")
        head = holders[mine[0]["id"]].until(lambda b: b["event"] == "ticket")[-1]
        assert head["data"]["state"] == "CALLED" and head["data"]["id"] == mine[0]["id"]
        for n, t in enumerate(mine[1:], start=1):
            got = holders[t["id"]].until(lambda b: b["event"] == "ticket")[-1]["data"]
            assert (got["id"], got["hash"], got["position"]) == (t["id"], t["hash"], n)
            assert got["url"].endswith(f"/t/{t['hash']}")
        # The public stream, resumed from before the call, misses nothing of it.
        again = SSEClient(live["url"], "/api/v1/events",
                          headers={"Last-Event-ID": state["id"]})
        try:
            called = again.until(lambda b: b["event"] == "ticket")[-1]
            assert called["data"]["action"] == "called"
            assert called["data"]["code"] == mine[0]["code"]
        finally:
            again.close()
        # A holder who reconnects (with its last id) gets its view as it is now.
        last = head["id"]
        holders[mine[0]["id"]].close()
        deadline = time.monotonic() + 10
        while True:  # the closed streams' slots free up at their next heartbeat
            holders[mine[0]["id"]] = SSEClient(
                live["url"], f"/api/v1/tickets/by-hash/{mine[0]['hash']}/events",
                headers={"Last-Event-ID": last})
            if holders[mine[0]["id"]].status != 503 or time.monotonic() > deadline:
                break
            holders[mine[0]["id"]].close()
            time.sleep(0.2)
        assert holders[mine[0]["id"]].status == 200
        [view] = holders[mine[0]["id"]].until(event_named("ticket"))
        assert view["data"]["state"] == "CALLED"
    finally:
        public.close()
        for h in holders.values():
            h.close()
        drain_queue(live)
