"""The application factory: one ``create_app`` for waitress, the desk window and tests.

Nothing happens at import time. ``create_app`` opens (and migrates) the
database and wires the event hub; background threads are started by
``jonot_local.services`` when serving, never here.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from . import __version__
from .api import errors as api_errors
from .api.ratelimit import HashLookupLimits, TokenBuckets
from .db import open_store
from .domain.location import rename_location
from .domain.report_rollup import install_zone
from .events import EventHub
from .paths import web_dir, write_private_text
from .printing import PrintService
from .runtime import Runtime
from .settings import Settings
from .signin import SignInGuard
from .speech import SpeechService, find_espeak
from .tokencache import TokenCache


def create_app(config: dict[str, Any] | Settings | None = None) -> Flask:
    """Build the office app. ``config``: a ``Settings`` or overrides of the defaults."""
    settings = config if isinstance(config, Settings) else Settings.load(config)
    data_dir = Path(settings.data_dir)
    store = open_store(data_dir, pool_size=settings.db_pool_size)
    store.password_hash_method = settings.password_hash_method
    from .sync import outbox as sync_outbox

    if sync_enabled(settings):
        sync_outbox.install(store)  # before any change of this process, so none is missed
    else:
        sync_outbox.stop_recording(store)
    with store.write() as tx:  # the reports' days are the office's days
        install_zone(tx, settings.time_zone)
    if settings.location_name.strip():
        with store.write() as tx:
            rename_location(tx, settings.location_name.strip())
    hub = EventHub()
    store.listeners.append(hub.publish)

    app = Flask(
        "jonot_local",
        template_folder=str(web_dir() / "templates"),
        static_folder=str(web_dir() / "static"),
    )
    app.config["SECRET_KEY"] = _secret_key(data_dir)
    app.session_interface = CookieSessions()
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    app.config["JONOT_VERSION"] = __version__
    from .api.streams import StreamRegistry

    app.extensions["jonot"] = Runtime(
        settings=settings, store=store, hub=hub,
        hash_limits=HashLookupLimits(settings.hash_lookup_per_min, settings.hash_miss_per_min),
        signin=SignInGuard(store, settings),
        streams=StreamRegistry(settings, store, hub),
        printing=make_print_service(settings, store),
        speech=SpeechService(find_espeak(settings.espeak)),
        speech_budget=TokenBuckets(settings.speech_per_min),
        tokens=TokenCache(store, settings.token_cache_s),
    )
    from .domain import office

    with store.read() as tx:
        app.extensions["jonot"].apply_office_settings(office.stored(tx))
    if settings.trusted_proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=settings.trusted_proxies,
                                x_host=settings.trusted_proxies)

    from .api import blueprint as api_blueprint
    from .api import join_budget

    join_budget.wire(app, settings)

    app.register_blueprint(api_blueprint)
    api_errors.register(app)
    from .pages import init_app as init_pages  # the people-facing pages and their languages
    init_pages(app)
    return app


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signer for a request that
    carries no session cookie (an API client's, a kiosk's join): it gets the same
    empty session."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # No Cookie header at all (most API calls): not even the header is parsed.
        if app.secret_key and ("HTTP_COOKIE" not in request.environ
                               or not request.cookies.get(self.get_cookie_name(app))):
            return self.session_class()
        return super().open_session(app, request)


def make_print_service(settings: Settings, store: Any) -> PrintService:
    """The kiosk print queue (its thread is started by ``serve``). ``ValueError`` for a bad
    printer setting, naming it."""
    from .domain.location import get_location

    def clinic_name() -> str:
        with store.read() as tx:
            return str(get_location(tx)["name"] or "")

    if settings.printer_status not in ("query", "off"):
        raise ValueError(f"JONOT_PRINTER_STATUS: {settings.printer_status!r} is not query or off")
    return PrintService(
        settings.printer, timeout=settings.printer_timeout_s,
        status=settings.printer_status == "query", qr=settings.printer_qr,
        profile=settings.printer_profile, language=settings.receipt_language,
        max_age_s=settings.printer_max_age_s, attempts=settings.printer_attempts,
        queue_size=settings.printer_queue, clinic_name=clinic_name,
        lan_urls=settings.host in ("0.0.0.0", "::", ""))  # noqa: S104


def sync_enabled(settings: Settings) -> bool:
    """Whether this office syncs with a cloud (both its URL and its token are set)."""
    return bool(settings.cloud_url and settings.cloud_token)


def _secret_key(data_dir: Path) -> str:
    """The secret key kept in the data dir, made on first start (never a fallback in code)."""
    path = data_dir / "secret_key"
    if path.exists():
        key = path.read_text().strip()
        if key:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)  # made readable by others before this version
            return key
    key = secrets.token_hex(32)
    write_private_text(path, key)
    return key
