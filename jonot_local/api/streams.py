"""Live streams (Server-Sent Events): the public change stream and one ticket's stream.

``GET /api/v1/events`` (anyone: displays, desks). On connect a ``state`` event
(queues with waiting counts and now serving, the latest calls), or, with a
``Last-Event-ID`` this server issued and still holds, the missed events
instead. Then one event per change: ``ticket`` (action, code, queue, state,
desk, recall count, and the fresh summary of each queue it touched),
``queue`` (a queue's set-up changed) and ``desk`` (a desk was added or
renamed). Only public facts: never a hash, name, phone, note, extra field or
user id. ``?display=<id>`` and ``?queue=<id>[,<id>]`` narrow it to some
queues; ``?last_event_id=`` stands in for the header and ``?poll=1`` ends the
response after the first batch (or a heartbeat's wait), for clients that poll.

``GET /api/v1/tickets/by-hash/<hash>/events`` (the holder). On connect and on
every reconnect the holder's view (as ``GET /tickets/by-hash/<hash>``; the
same rate limits and 404), then a ``ticket`` event whenever that view changes:
state, position, estimate, now serving. When the ticket ends (completed,
skipped, canceled) it sends the final view and an ``end`` event, raises the
``retry`` hint to an hour and closes: there is nothing more to wait for, and a
client that reconnects anyway gets the final view and ``end`` at once.

Threads: waitress runs each open stream in one worker thread. A stream holds
no database connection while it waits (it borrows one from the pool for each
recompute), at most ``threads - stream_reserve`` streams run at once, and a
slot is released when the response is closed — the client went away (noticed
at the latest at the next heartbeat), the hub closed at shutdown, or the
stream ended. The slots (``jonot_local.streamslots``) keep a reserve for
registered displays and desks and cap streams per client address and per
ticket: over a cap 429 ``rate_limited``, when the server is full 503
``streams_full``, both with ``Retry-After``.

Fan-out: the public payload of a hub event is computed once (one short read)
and the encoded frame shared by every viewer, so a call costs the same
database work whether one display watches or five hundred. Holders' streams
share the holder feed (``holder_feed.HolderFeed``): after a change, the views
of every watched ticket it may touch are read once, together, and each
stream writes its own ticket's ready-made JSON. A holder's stream is woken
with the office's screens by a change of its own ticket (it was called), and
with the crowd by the others (a position moved).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Response, request

from ..db import Store
from ..domain import queues, status, tickets
from ..domain.display import Scope, display_state, find_display
from ..domain.errors import NotFound, ValidationError
from ..domain.model import TERMINAL
from ..events import EventHub, Reader
from ..runtime import Runtime, runtime
from ..settings import Settings
from ..streamslots import CLIENT, TICKET, SlotLimits, SlotRefused, StreamSlots
from . import blueprint
from .clients import client_address, current_device
from .errors import ApiError
from .holder_feed import HolderFeed, touches
from .tickets import held_ticket, holder_view

RETRY_MS = 3000                # reconnect hint for a dropped stream
ENDED_RETRY_MS = 3_600_000     # after a ticket's final event: don't come back soon
FULL_RETRY_AFTER_S = 10        # Retry-After of a refused stream (429 or 503)
STREAM_DEVICE_KINDS = ("display", "desk")  # registered devices that may use the reserve
FRAME_CACHE = 512              # public frames kept (by event sequence number)
HEARTBEAT = b": keep-alive\n\n"
PUBLIC_TICKET_FIELDS = ("action", "code", "queue_id", "prev_queue_id", "state", "desk_id",
                        "desk_name", "recall_count", "at")


# -- framing -----------------------------------------------------------------------------

def sse_frame(event: str, data: Any, event_id: str | None = None,
              retry_ms: int | None = None) -> bytes:
    """One Server-Sent Event: optional ``retry`` and ``id``, the name, JSON data on one line."""
    return sse_frame_json(event, json.dumps(data, separators=(",", ":")), event_id, retry_ms)


def sse_frame_json(event: str, data_json: str, event_id: str | None = None,
                   retry_ms: int | None = None) -> bytes:
    """``sse_frame`` of data already encoded as JSON (one line)."""
    lines = []
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + data_json)
    return ("\n".join(lines) + "\n\n").encode()


class _Pulse:
    """When the next keep-alive comment is due on a stream."""

    def __init__(self, every_s: float) -> None:
        self.every_s = max(0.01, every_s)
        self.last = time.monotonic()

    def wrote(self) -> None:
        self.last = time.monotonic()

    def timeout(self) -> float:
        return max(0.0, self.last + self.every_s - time.monotonic())

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s


# -- slots -------------------------------------------------------------------------------

class _Closing:
    """The response body of a stream: releases its slot exactly once, when closed or done.

    waitress closes the body when the client has gone (a write failed) and when
    the stream ends; a plain generator's ``finally`` would not run if it were
    closed before it started, so the release lives here.
    """

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> _Closing:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        release, self._release = self._release, None
        if release is None:
            return
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            release()


def _sse_response(chunks: Iterator[bytes], release: Callable[[], None]) -> Response:
    resp = Response(_Closing(chunks, release), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


def _take_slot(rt: Runtime, ticket_id: str | None = None) -> Callable[[], None]:
    """A stream slot for this request, or the refusal as an ``ApiError`` (429 or 503).

    Registered displays and desks may use the reserve and are not counted per
    client; everyone else is, by ``client_address()``.
    """
    device = current_device()
    is_device = device is not None and device.get("kind") in STREAM_DEVICE_KINDS
    try:
        return registry(rt).slots.acquire(client_address(), ticket_id, device=is_device)
    except SlotRefused as refused:
        raise _refusal(rt, refused.reason) from None


def _refusal(rt: Runtime, reason: str) -> ApiError:
    headers = {"Retry-After": str(FULL_RETRY_AFTER_S)}
    limits = registry(rt).slots.limits
    if reason == CLIENT:
        return ApiError(429, "rate_limited",
                        f"This client already holds {limits.per_client} live streams; close "
                        f"one, or try again in {FULL_RETRY_AFTER_S} s.", headers=headers)
    if reason == TICKET:
        return ApiError(429, "rate_limited",
                        f"This ticket already has {limits.per_ticket} live streams open; "
                        f"close a tab, or try again in {FULL_RETRY_AFTER_S} s.",
                        headers=headers)
    return ApiError(503, "streams_full",
                    "The server has no room for another live stream right now; try again "
                    f"in {FULL_RETRY_AFTER_S} s (or poll).", headers=headers)


# -- the public feed ------------------------------------------------------------------------

class PublicFeed:
    """Public frames of hub events, built once per event and shared by every viewer."""

    def __init__(self, store: Store, hub: EventHub, default_service_s: float) -> None:
        self.store = store
        self.hub = hub
        self.default_service_s = default_service_s
        self._frames: OrderedDict[int, bytes | None] = OrderedDict()
        self._lock = threading.Lock()

    def frames(self, events: Iterable[tuple[int, dict[str, Any]]], scope: Scope) -> bytes:
        """The encoded frames of ``events`` that are public and within ``scope``, joined."""
        out = []
        for seq, event in events:
            if in_scope(event, scope):
                frame = self.frame(seq, event)
                if frame:
                    out.append(frame)
        return b"".join(out)

    def frame(self, seq: int, event: dict[str, Any]) -> bytes | None:
        """The frame for one event (``None``: nothing public to say about it)."""
        try:
            return self._frames[seq]
        except KeyError:
            pass
        with self._lock:  # one reader builds it; the others wait here, then share it
            if seq not in self._frames:
                self._frames[seq] = self._build(seq, event)
                while len(self._frames) > FRAME_CACHE:
                    self._frames.popitem(last=False)
            return self._frames[seq]

    def _build(self, seq: int, event: dict[str, Any]) -> bytes | None:
        kind = event.get("kind")
        event_id = self.hub.event_id(seq)
        with self.store.read() as tx:
            if kind == "ticket":
                data = {k: event[k] for k in PUBLIC_TICKET_FIELDS if k in event}
                touched = [q for q in (event.get("queue_id"), event.get("prev_queue_id")) if q]
                data["queues"] = self._summaries(tx, touched)
                return sse_frame("ticket", data, event_id)
            if kind == "queue":
                found = self._summaries(tx, [event.get("queue_id")])
                if not found:
                    return None
                return sse_frame("queue", {"action": event.get("action"), "queue": found[0]},
                                 event_id)
            if kind == "desk":
                try:
                    desk = queues.get_desk(tx, event.get("desk_id") or "")
                except NotFound:
                    return None
                return sse_frame("desk", {"action": event.get("action"), "desk": {
                    "id": desk.id, "name": desk.name, "queue_ids": desk.queue_ids}}, event_id)
        return None  # other kinds are not for the public

    def _summaries(self, tx: Any, queue_ids: list[Any]) -> list[dict[str, Any]]:
        out = []
        for queue_id in queue_ids:
            try:
                queue = queues.get_queue(tx, queue_id or "")
            except NotFound:
                continue
            out.append(status.queue_summary(tx, queue, self.default_service_s))
        return out


def in_scope(event: dict[str, Any], scope: Scope) -> bool:
    """Whether a viewer following ``scope`` hears of ``event`` (desks concern every display)."""
    if scope is None or event.get("kind") == "desk":
        return True
    return event.get("queue_id") in scope or event.get("prev_queue_id") in scope


class StreamRegistry:
    """Per-app stream bookkeeping, made in ``create_app``: the slots and the shared feed."""

    def __init__(self, settings: Settings, store: Store, hub: EventHub) -> None:
        self.slots = StreamSlots(SlotLimits.of(
            total=settings.threads - settings.stream_reserve,
            device_reserve=settings.device_stream_reserve,
            per_client=settings.streams_per_client,
            per_ticket=settings.streams_per_ticket))
        self.feed = PublicFeed(store, hub, settings.default_service_s)
        self.holders = HolderFeed(store, hub, settings)


def registry(rt: Runtime) -> StreamRegistry:
    """The app's stream registry (``RuntimeError`` if ``create_app`` did not wire one)."""
    if rt.streams is None:
        raise RuntimeError("this app has no stream registry (build it with create_app)")
    return rt.streams


def _client_gone() -> Callable[[], bool]:
    """A check that the client has disconnected (waitress, with request look-ahead)."""
    check = request.environ.get("waitress.client_disconnected")
    return check if callable(check) else (lambda: False)


# -- GET /events ---------------------------------------------------------------------------

def _scope(rt: Runtime) -> tuple[dict[str, Any] | None, Scope]:
    """The display and the queue ids this request asks for (404/422 on unknown ids)."""
    display_id = request.args.get("display")
    wanted = [q.strip() for raw in request.args.getlist("queue") for q in raw.split(",")
              if q.strip()]
    display = None
    scope: Scope = None
    with rt.store.read() as tx:
        if display_id:
            display = find_display(tx, display_id)
            if display["queue_ids"]:
                scope = frozenset(display["queue_ids"])
        if wanted:
            known = {q.id for q in queues.list_queues(tx)}
            unknown = [q for q in wanted if q not in known]
            if unknown:
                raise ValidationError.field("queue", f"unknown queue id(s): {', '.join(unknown)}")
            scope = frozenset(wanted) if scope is None else scope & frozenset(wanted)
    return display, scope


@blueprint.get("/events")
def public_events() -> Response:
    """The office's live changes for displays and desks (Server-Sent Events)."""
    rt = runtime()
    display, scope = _scope(rt)
    resume = rt.hub.parse_last_event_id(
        request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))
    poll = request.args.get("poll", "").lower() in ("1", "true", "yes")
    release = _take_slot(rt)
    try:
        reader = Reader() if _office_screen() else None
        chunks = _public_chunks(rt, registry(rt).feed, display, scope, resume, poll,
                                _client_gone(), reader)
        return _sse_response(chunks, release)
    except BaseException:
        release()
        raise


def _state_frame(rt: Runtime, display: dict[str, Any] | None, scope: Scope) -> tuple[int, bytes]:
    """The full state now, as a ``state`` frame, and the sequence number it covers."""
    seq = rt.hub.last_seq  # read first: everything up to seq is committed, so in the state
    with rt.store.read() as tx:
        data = display_state(tx, display, scope, rt.settings.default_service_s)
    return seq, sse_frame("state", data, rt.hub.event_id(seq), RETRY_MS)


def _office_screen() -> bool:
    """A registered display or desk PC, or a signed-in staff page: its stream goes first."""
    device = current_device()
    if device is not None and device.get("kind") in STREAM_DEVICE_KINDS:
        return True
    from ..pages.session import current_staff  # the desk page's session cookie

    return current_staff() is not None


def _public_chunks(rt: Runtime, feed: PublicFeed, display: dict[str, Any] | None,
                   scope: Scope, resume: int | None, poll: bool,
                   client_gone: Callable[[], bool],
                   reader: Reader | None = None) -> Iterator[bytes]:
    try:
        yield from _public_frames(rt, feed, display, scope, resume, poll, client_gone, reader)
    finally:
        if reader is not None:
            rt.hub.leave(reader)


def _public_frames(rt: Runtime, feed: PublicFeed, display: dict[str, Any] | None,
                   scope: Scope, resume: int | None, poll: bool,
                   client_gone: Callable[[], bool], reader: Reader | None) -> Iterator[bytes]:
    hub = rt.hub
    pulse = _Pulse(rt.settings.sse_heartbeat_s)
    replay = hub.since(resume) if resume is not None else None
    if replay is None:
        after, first = _state_frame(rt, display, scope)
        said = True
    else:
        after = replay[-1][0] if replay else (resume or 0)
        missed = feed.frames(replay, scope)
        first = f"retry: {RETRY_MS}\n\n".encode() + missed
        said = bool(missed)
    yield first
    if poll and said:
        return
    while not hub.closed and not client_gone():
        events = hub.wait(after, pulse.timeout(), reader)
        if hub.closed:
            return
        if events is None:  # fell behind the backlog: start over from the full state
            after, chunk = _state_frame(rt, display, scope)
        else:
            if events:
                after = events[-1][0]
            chunk = feed.frames(events, scope)
        if not chunk and pulse.due():
            chunk = HEARTBEAT
        if chunk:
            yield chunk
            pulse.wrote()
            if poll:
                return


# -- GET /tickets/by-hash/<hash>/events ------------------------------------------------------

@blueprint.get("/tickets/by-hash/<ticket_hash>/events")
def ticket_events(ticket_hash: str) -> Response:
    """The holder's live view of their ticket (Server-Sent Events)."""
    with held_ticket(ticket_hash) as ticket:
        pass  # looked up, limited and padded before the stream starts
    rt = runtime()
    release = _take_slot(rt, ticket.id)
    try:
        seq = rt.hub.last_seq
        with rt.store.read() as tx:
            view = holder_view(tx, tickets.get(tx, ticket.id))
        chunks = _ticket_chunks(rt, registry(rt).holders, ticket.id, view, seq,
                                request.host_url, _client_gone())
        return _sse_response(chunks, release)
    except BaseException:
        release()
        raise


def _ticket_chunks(rt: Runtime, holders: HolderFeed, ticket_id: str, view: dict[str, Any],
                   after: int, base_url: str, client_gone: Callable[[], bool]) -> Iterator[bytes]:
    reader = Reader(ticket_id)
    holders.watch(ticket_id)
    try:
        yield from _ticket_frames(rt, holders, reader, view, after, base_url, client_gone)
    finally:
        holders.unwatch(ticket_id)
        rt.hub.leave(reader)


def _ticket_frames(rt: Runtime, holders: HolderFeed, reader: Reader, view: dict[str, Any],
                   after: int, base_url: str,
                   client_gone: Callable[[], bool]) -> Iterator[bytes]:
    hub = rt.hub
    ticket_id = view["id"]
    pulse = _Pulse(rt.settings.sse_heartbeat_s)
    yield sse_frame("ticket", view, hub.event_id(after), RETRY_MS)
    while view["state"] not in TERMINAL:
        if hub.closed or client_gone():
            return
        events = hub.wait(after, pulse.timeout(), reader)
        if hub.closed:
            return
        chunk = b""
        if events is None or any(touches(e, ticket_id, view["queue_id"]) for _, e in events):
            after = hub.last_seq if events is None else events[-1][0]
            found = holders.view(ticket_id, after, base_url)
            if found is None:
                return  # the ticket is gone
            fresh, data = found
            if fresh != view:
                view = fresh
                chunk = sse_frame_json("ticket", data, hub.event_id(after))
        elif events:
            after = events[-1][0]
        if not chunk and pulse.due():
            chunk = HEARTBEAT
        if chunk:
            yield chunk
            pulse.wrote()
    yield sse_frame("end", {"state": view["state"]}, hub.event_id(after), ENDED_RETRY_MS)
