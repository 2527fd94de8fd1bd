"""The cloud instance's Flask app: the sync receiver and the public ticket paths.

``create_cloud_app(settings)`` opens the store (SQLite in the data dir, or the
PostgreSQL of ``cloud_database_url``) and registers the routes. Offices speak
under ``/api/v1/sync/`` with their bearer token; patients use the same public
paths as on an office (``/api/v1/tickets/by-hash/…``, ``/api/v1/queues/…/tickets``,
``/t/<hash>``) for the tickets the cloud holds. The ticket page is the office's
own (``jonot_local.pages.ticket``: its templates, script, styles, fonts and chime,
served from the package with versioned URLs), in the patient's language, following
the cloud's stream and cancelling through the cloud.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from jonot_local.sync import protocol
from werkzeug.middleware.proxy_fix import ProxyFix

from jonot_local import __version__, i18n
from jonot_local.api import errors as api_errors
from jonot_local.api.common import json_body
from jonot_local.api.errors import ApiError
from jonot_local.api.ratelimit import TokenBuckets
from jonot_local.domain.errors import ValidationError
from jonot_local.ids import is_ticket_hash
from jonot_local.pages import display_assets
from jonot_local.pages import ticket as ticket_page_parts
from jonot_local.pages.assets import init_assets
from jonot_local.paths import web_dir
from jonot_local.settings import Settings

from . import receiver, relay
from .fanout import GONE, Fanout, sse
from .offices import office_for_token
from .store import CloudStore, TransientError, open_cloud_store


class LookupLimits:
    """Look-up budgets keyed so phones behind one carrier address are not throttled together.

    A look-up of a known hash draws from that hash's budget (one holder polling
    fast is held back; its neighbours are not); every look-up also draws from a
    generous per-address budget, and a miss from a tight per-address one
    (guessing). Addresses come from ``X-Forwarded-For`` behind ``trusted_proxies``.
    """

    def __init__(self, per_hash_per_min: int, misses_per_min: int,
                 per_address_per_min: int) -> None:
        self.per_hash = TokenBuckets(per_hash_per_min)
        self.misses = TokenBuckets(misses_per_min)
        self.per_address = TokenBuckets(per_address_per_min)

    def admit(self, address: str) -> int:
        return self.misses.retry_after(address) or self.per_address.take(address)

    def found(self, digest: str) -> int:
        return self.per_hash.take(digest)

    def missed(self, address: str) -> None:
        self.misses.take(address)


class Cloud:
    """The per-app objects of a cloud instance."""

    def __init__(self, settings: Settings, store: CloudStore) -> None:
        self.settings = settings
        self.store = store
        self.limits = LookupLimits(settings.hash_lookup_per_min, settings.hash_miss_per_min,
                                   settings.hash_lookup_per_min * 20)
        self.stop = threading.Event()
        self.fanout = Fanout(store, settings.cloud_stale_after_s, settings.default_service_s,
                             settings.sse_heartbeat_s)
        self._sweeper = threading.Thread(target=self._sweep, name="cloud-expiry", daemon=True)
        self._sweeper.start()

    def _sweep(self) -> None:
        """Expire unfetched commands even when their office never polls again."""
        period = max(0.5, min(30.0, self.settings.cloud_command_ttl_s / 4))
        while not self.stop.wait(period):
            try:
                relay.expire_all(self.store, self.settings.cloud_command_ttl_s)
            except Exception:  # noqa: BLE001 - a sweep must never end the thread
                current_log().exception("cloud: expiring commands failed")

    def close(self) -> None:
        self.stop.set()
        self.fanout.close()
        self.store.close()


def current_log() -> Any:
    import logging

    return logging.getLogger("jonot_local.cloud")


def cloud() -> Cloud:
    return current_app.extensions["jonot_cloud"]


def create_cloud_app(config: dict[str, Any] | Settings | None = None) -> Flask:
    """Build the cloud app. ``config``: a ``Settings`` or overrides of the defaults."""
    settings = config if isinstance(config, Settings) else Settings.load(config)
    store = open_cloud_store(Path(settings.data_dir), settings.cloud_database_url,
                             pool_size=settings.db_pool_size)
    app = Flask("jonot_local.cloud", template_folder=str(web_dir() / "templates"),
                static_folder=str(web_dir() / "static"))
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024  # a full batch of snapshots
    app.config["JONOT_VERSION"] = __version__
    app.config["JONOT_LANGUAGE"] = settings.language
    i18n.init_app(app)  # the ticket page in the patient's language, as on the office
    init_assets(app)
    app.register_blueprint(display_assets)  # the chime
    app.extensions["jonot_cloud"] = Cloud(settings, store)
    if settings.trusted_proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=settings.trusted_proxies,
                                x_host=settings.trusted_proxies)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    api_errors.register(app)
    app.register_error_handler(TransientError, _transient)
    return app


def _transient(err: TransientError) -> Response:
    current_log().warning("cloud: database unavailable: %s", err)
    return api_errors.problem(503, "unavailable", "The cloud's database is busy or restarting; "
                              "nothing was applied. Try again shortly.",
                              headers={"Retry-After": "2"})


api = Blueprint("cloud_api", __name__, url_prefix="/api/v1")
pages = Blueprint("cloud_pages", __name__)


@api.get("/health")
def health() -> Response:
    rt = cloud()
    with rt.store.read() as tx:
        tx.one("SELECT 1 AS ok")
    return jsonify({"status": "ok", "role": "cloud", "version": __version__,
                    "database": rt.store.dialect})


# -- the office's side: push and actions --------------------------------------------------------

def _office() -> dict[str, Any]:
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    with cloud().store.read() as tx:
        office = office_for_token(tx, token)
    if office is None:
        raise ApiError(401, "unauthorized", "This office token is unknown; check "
                       "JONOT_CLOUD_TOKEN, or ask the cloud's admin for one "
                       "(jonot-local cloud office add).")
    if office["status"] == "revoked":
        raise _revoked()
    return office


def _revoked() -> ApiError:
    return ApiError(403, "revoked", "This office's token was revoked by the cloud's admin; "
                    "ask for a new one (jonot-local cloud office reenrol).")


@api.post("/sync/push")
def push() -> Response:
    """Apply a batch of the office's outbox; answers the durable ``acked_seq`` and what to do."""
    office = _office()
    body = receiver.check_push(json_body())
    try:
        result = receiver.apply_push(cloud().store, office["office_id"], body)
    except PermissionError:
        raise _revoked() from None
    return jsonify(result.as_json())


@api.get("/sync/actions")
def actions() -> Response:
    """Long-poll for relayed commands after ``after``; at most ``wait`` (≤ MAX_WAIT_S) seconds."""
    office = _office()
    try:
        after = int(request.args.get("after", "0"))
        wait = float(request.args.get("wait", "0"))
    except ValueError:
        raise ValidationError.field("after", "after and wait must be numbers") from None
    if after < 0 or not 0 <= wait <= protocol.MAX_WAIT_S:
        raise ValidationError.field("wait", f"after ≥ 0 and 0 ≤ wait ≤ {protocol.MAX_WAIT_S}")
    rt = cloud()
    install_id = request.args.get("install_id")
    if install_id and office["status"] == "active" and receiver.install_alert(office, install_id):
        # A second install polls under this token: frozen before it gets any command.
        with rt.store.write(lock_office=office["office_id"]) as tx:
            locked = tx.lock_office(office["office_id"])
            alert = receiver.install_alert(locked, install_id) if locked else None
            if alert:
                receiver.freeze_office(tx, office["office_id"], alert)
                tx.wake(office["office_id"])
        with rt.store.read() as tx:
            office = tx.one("SELECT * FROM office WHERE office_id = ?",
                            (office["office_id"],)) or office
    if office["status"] == "frozen":
        return jsonify({"actions": [], "frozen": True, "message": office["alert"]})
    deadline = time.monotonic() + wait
    while True:
        seen = rt.store.changes.seen(office["office_id"])
        found = relay.take_actions(rt.store, office["office_id"], after,
                                   rt.settings.cloud_command_ttl_s)
        left = deadline - time.monotonic()
        if found or left <= 0 or rt.stop.is_set():
            return jsonify({"actions": found})
        # A commit here wakes at once; one in another process within 0.5 s at worst.
        rt.store.changes.wait(seen, min(left, 0.5), office["office_id"])


# -- public paths ---------------------------------------------------------------------------

def _client() -> str:
    return request.remote_addr or "unknown"


def _too_many(wait: int) -> ApiError:
    return ApiError(429, "rate_limited", f"Too many look-ups; try again in {wait} s.",
                    headers={"Retry-After": str(wait)})


def _lookup(ticket_hash: str) -> dict[str, Any]:
    """The cloud's ticket row for a hash, rate limited; 404 when there is none."""
    rt = cloud()
    address = _client()
    wait = rt.limits.admit(address)
    if wait:
        raise _too_many(wait)
    row = None
    if is_ticket_hash(ticket_hash):
        with rt.store.read() as tx:
            row = relay.find_by_hash(tx, ticket_hash)
    if row is None:
        rt.limits.missed(address)
        raise ApiError(404, "not_found",
                       "No ticket has this link. Check the address, or take a new number.")
    wait = rt.limits.found(row["hash_digest"])
    if wait:
        raise _too_many(wait)
    return row


def _view(ticket_hash: str, row: dict[str, Any] | None = None) -> dict[str, Any] | None:
    rt = cloud()
    with rt.store.read() as tx:
        row = tx.one("SELECT * FROM ticket WHERE ticket_id = ?", (row["ticket_id"],)) \
            if row is not None else relay.find_by_hash(tx, ticket_hash)
        if row is None:
            return None
        return relay.holder_view(
            tx, row, url=request.host_url.rstrip("/") + "/t/" + ticket_hash,
            stale_after_s=rt.settings.cloud_stale_after_s,
            default_service_s=rt.settings.default_service_s)


@api.get("/tickets/by-hash/<ticket_hash>")
def by_hash(ticket_hash: str) -> Response:
    """The holder's view of their ticket as the cloud last heard it from the office."""
    row = _lookup(ticket_hash)
    return jsonify(_view(ticket_hash, row))


@api.post("/tickets/by-hash/<ticket_hash>/cancel")
def cancel_by_hash(ticket_hash: str) -> tuple[Response, int]:
    """Relay a cancel to the office: 202 with ``cancel_pending`` until the office confirms."""
    row = _lookup(ticket_hash)
    relay.remote_cancel(cloud().store, row["ticket_id"])
    return jsonify(_view(ticket_hash, row)), 202


@api.post("/queues/<queue_id>/tickets")
def remote_join(queue_id: str) -> tuple[Response, int]:
    """A remote join: 202 with a cloud-minted id and hash, state ``PENDING`` until applied."""
    json_body(required=False, allowed=("source",))
    rt = cloud()
    wait = rt.limits.per_address.take(_client())
    if wait:
        raise _too_many(wait)
    ticket_hash, row = relay.remote_join(rt.store, queue_id)
    data = _view(ticket_hash, row) or {}
    data["hash"] = ticket_hash
    resp = jsonify(data)
    resp.headers["Location"] = f"/api/v1/tickets/by-hash/{ticket_hash}"
    return resp, 202


@api.get("/tickets/by-hash/<ticket_hash>/events")
def ticket_events(ticket_hash: str) -> Response:
    """Server-sent events: ``ticket`` on every change of the holder's view, ``end`` when over.

    The views come from the cloud's fan-out (``fanout.Fanout``): read once per change
    of the office for all its streams, the streams whose own ticket changed woken first.
    """
    row = _lookup(ticket_hash)
    rt = cloud()
    office_id = row["office_id"]
    seen = rt.store.changes.seen(office_id)
    first = _view(ticket_hash, row)
    heartbeat = rt.settings.sse_heartbeat_s
    base = request.host_url.rstrip("/")

    def stream() -> Iterator[str]:
        view = first
        # Watched from the first step (a body never started is never closed into finally).
        watch = (rt.fanout.watch(office_id, row["ticket_id"], ticket_hash, base, first, seen)
                 if first is not None else None)
        try:
            yield "retry: 3000\n\n" + sse("ticket", view)
            last_sent = time.monotonic()
            while (watch is not None and view is not None
                   and view["state"] not in relay.TERMINAL and not rt.stop.is_set()):
                got = rt.fanout.next(watch, max(0.0, heartbeat - (time.monotonic() - last_sent)))
                if got == GONE:
                    view = None
                    break
                last_sent = time.monotonic()
                if got is None:
                    if not rt.stop.is_set():
                        yield ": keep-alive\n\n"
                    continue
                assert not isinstance(got, str)
                view, frame = got
                yield frame
            yield sse("end", {"state": view["state"] if view else None})
        finally:
            if watch is not None:
                rt.fanout.unwatch(watch)

    resp = Response(stream(), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


# -- the ticket page ------------------------------------------------------------------------------

@pages.get("/t/<ticket_hash>")
def ticket_page(ticket_hash: str) -> Response | str:
    """The office's ticket page for the cloud's copy: live from the cloud's stream.

    Also says how fresh the copy is, a remote join on its way (PENDING), a refusal
    (REJECTED) or a number the clinic no longer has (RETIRED) in words, and a
    cancel as requested until the clinic confirms it.
    """
    try:
        row = _lookup(ticket_hash)
    except ApiError as err:
        return ticket_page_parts.problem_page(err)
    view = _view(ticket_hash, row)
    if view is None:
        return ticket_page_parts.problem_page(
            ApiError(404, "not_found", "No ticket has this link."))
    with cloud().store.read() as tx:
        office = tx.one("SELECT name FROM office WHERE office_id = ?", (row["office_id"],))
    context = ticket_page_parts.page_context(
        view, (office or {}).get("name", ""), ticket_hash,
        stream=url_for("cloud_api.ticket_events", ticket_hash=ticket_hash),
        cancel=url_for("cloud_api.cancel_by_hash", ticket_hash=ticket_hash),
        stale_after_s=cloud().settings.cloud_stale_after_s)
    context["config"]["texts"]["reasons"] = {
        words: gettext(words) for words in relay.REASONS.values()}
    return render_template("pages/ticket.html", **context)
