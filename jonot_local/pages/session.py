"""Staff sign-in for the pages (desk, admin): a session cookie and CSRF protection.

Signing in goes through the same ``SignInGuard`` as ``POST /api/v1/auth/token``
(throttled per address and account, the password checked outside any
transaction) and opens the same kind of session: a bearer token, kept in the
signed, HttpOnly session cookie. So an expired token, a changed password or a
disabled account ends a page session exactly as it ends an API token.

Every state-changing page request needs the CSRF token (Flask-WTF's
``CSRFProtect``): forms carry ``csrf_token()``, htmx sends it in the
``X-CSRFToken`` header (``_base.html`` sets ``hx-headers``). The JSON API is
exempt: it never reads the session cookie, only bearer tokens and the
holder's hash, so a forged cross-site request has nothing to ride on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Flask,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response as BaseResponse

from ..api.clients import client_address, current_device
from ..domain import users
from ..domain.errors import AuthError, ValidationError
from ..runtime import runtime
from ..signin import SignInThrottled
from . import blueprint
from .common import is_htmx

F = TypeVar("F", bound=Callable[..., Any])
SESSION_KEY = "staff_token"
csrf = CSRFProtect()


def init_session(app: Flask) -> None:
    """Cookie settings and CSRF protection of the pages; the JSON API is exempt."""
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_NAME", "jonot_session")
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid for the session's life
    app.config.setdefault("WTF_CSRF_SSL_STRICT", False)  # office LAN over plain HTTP
    csrf.init_app(app)
    csrf.exempt(app.blueprints["api"])
    app.context_processor(lambda: {"staff_languages": staff_languages})


def staff_languages() -> list[tuple[str, str]]:
    """(code, name in that language) of every language the pages have."""
    from babel import Locale

    from .. import i18n

    return [(code, (Locale.parse(code).get_display_name(code) or code).capitalize())
            for code in i18n.available_languages()]


def current_staff() -> dict[str, Any] | None:
    """The signed-in account behind the page session, or ``None`` (looked up once)."""
    if "staff" in g:
        return g.staff
    token = session.get(SESSION_KEY)
    found = None
    if isinstance(token, str) and token:
        found = runtime().account_for_token(token)
    g.staff = found
    return found


def staff_page(role: str = "staff") -> Callable[[F], F]:
    """Decorator: the page needs a signed-in account of ``role`` (``staff`` or ``admin``).

    Not signed in: a page request is sent to the sign-in page (and back after);
    an htmx request gets 401 with ``HX-Redirect`` so the whole page goes there.
    Signed in without the role: 403 page.
    """

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_staff()
            if user is None:
                target = url_for("pages.signin", next=_here())
                if is_htmx():
                    return BaseResponse("", 401, {"HX-Redirect": target})
                return redirect(target)
            if role == "admin" and user["role"] != "admin":
                from ..api.errors import ApiError

                raise ApiError(403, "forbidden", gettext("This page needs an admin account."))
            if user.get("language"):
                g.page_language = user["language"]  # the account's own choice
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco


def _here() -> str:
    if is_htmx():  # a fragment or an action: come back to the page it was made from
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        if page.path.startswith("/") and page.netloc in ("", request.host):
            return page.path + ("?" + page.query if page.query else "")
    return request.full_path.rstrip("?") if request.query_string else request.path


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this server only (never another site)."""
    if not value:
        return url_for("pages.desk") if "pages.desk" in _endpoints() else "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


def _endpoints() -> set[str]:
    from flask import current_app

    return set(current_app.view_functions)


@blueprint.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    """The staff sign-in form; on success, back to the page that asked (``next``)."""
    error = None
    status = 200
    headers: dict[str, str] = {}
    username = ""
    nxt = request.values.get("next", "")
    if request.method == "POST":
        username = request.form.get("username", "")
        guard = runtime().signin
        assert guard is not None, "create_app wires the sign-in guard"
        try:
            done = guard.sign_in(username, request.form.get("password", ""), client_address(),
                                 registered_desk=_from_registered_desk)
        except SignInThrottled as exc:
            error = gettext("Too many attempts. Try again in %(s)s seconds.", s=exc.retry_after)
            status, headers = 429, {"Retry-After": str(exc.retry_after)}
        except (AuthError, ValidationError):
            error = gettext("Wrong username or password.")
            status = 401
        else:
            session.clear()
            session[SESSION_KEY] = done.token
            session.permanent = True
            return redirect(_safe_next(nxt))
    html = render_template("pages/signin.html", error=error, username=username, next=nxt,
                           staff=None)
    return html, status, headers


@blueprint.post("/staff/language")
@staff_page()
def staff_language() -> BaseResponse:
    """The signed-in account chooses its page language (empty: the browser's); back."""
    from .. import i18n

    user = current_staff()
    assert user is not None
    wanted = request.form.get("language") or None
    try:
        with runtime().store.write() as tx:
            users.set_language(tx, user["id"], wanted, i18n.available_languages())
    except ValidationError:
        pass  # not a language the pages have: nothing changes
    back = _safe_next(request.form.get("next"))
    return redirect(back)


@blueprint.post("/signout")
def signout() -> BaseResponse:
    """End the page session (its token stops working too); back to the sign-in page."""
    token = session.pop(SESSION_KEY, None)
    if isinstance(token, str) and token:
        with runtime().store.write() as tx:
            users.revoke_token(tx, token)
    return redirect(url_for("pages.signin"))


def _from_registered_desk() -> bool:
    device = current_device()
    return bool(device and device["kind"] == "desk")
