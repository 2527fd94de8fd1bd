"""The people-facing pages: the TV display, the ticket page, staff sign-in (more join here).

Each page is a module with its routes on the ``pages`` blueprint; views are thin
adapters over the same domain functions and payloads the JSON API uses.
``init_app`` wires the pages, their languages and their static files to an app.
"""

from __future__ import annotations

from flask import Blueprint, Flask
from werkzeug.routing import BaseConverter

from .. import i18n
from ..paths import displays_dir


class PageSegment(BaseConverter):
    """A first path segment that is not one of the server's own prefixes (api, static, …)."""

    regex = r"(?!(?:api|static|assets)(?:/|$))[^/]+"


blueprint: Blueprint = Blueprint("pages", __name__)
# The TV display's own templates and assets (chime, script, styles) live in displays/.
display_assets = Blueprint("display_assets", __name__,
                           template_folder=str(displays_dir() / "templates"),
                           static_folder=str(displays_dir() / "static"),
                           static_url_path="/assets/display")

from . import admin, desk, display, kiosk, pairing, reports, session, ticket  # noqa: E402,F401  (routes register on import)
from .assets import init_assets  # noqa: E402
from .session import init_session  # noqa: E402


def init_app(app: Flask) -> None:
    """Register the pages, Flask-Babel and the versioned static files on ``app``."""
    app.url_map.converters.setdefault("page_segment", PageSegment)
    i18n.init_app(app)
    init_assets(app)
    app.register_blueprint(blueprint)
    init_session(app)
    app.register_blueprint(display_assets)
