"""Admin: staff accounts (add, reset password, disable, role) and the office's settings.

Passwords are hashed before the write transaction (``users.hash_password``), as
sign-in and ``jonot-local user add`` do. The settings are the clinic's name
(``location.rename_location``) and the office settings of ``domain/office.py``,
which the running server uses at once.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from ...domain import office, users
from ...domain.errors import DomainError, ValidationError
from ...domain.location import get_location, rename_location
from ...i18n import available_languages
from ...runtime import runtime
from .. import blueprint
from ..common import is_htmx
from ..session import current_staff, staff_page
from .common import after_post, refused, render

# -- staff accounts --------------------------------------------------------------------


def _staff_context() -> dict[str, Any]:
    with runtime().store.read() as tx:
        return {"users": users.list_users(tx), "roles": users.ROLES,
                "min_password": users.MIN_PASSWORD}


def _staff(notice: str | None = None) -> BaseResponse:
    if request.method == "POST" and not is_htmx():
        return after_post(notice, "pages.admin_staff")
    return render("staff", {**_staff_context(), "notice": notice})


def _hashed(password: str) -> users.PasswordHash:
    return users.hash_password(password, runtime().settings.password_hash_method)


@blueprint.get("/admin/staff")
@staff_page("admin")
def admin_staff() -> BaseResponse:
    """Every account: its role and state, with the actions on it."""
    return _staff()


@blueprint.post("/admin/staff")
@staff_page("admin")
def admin_staff_create() -> BaseResponse:
    """Add an account (``users.create_user``)."""
    form = request.form
    try:
        hashed = _hashed(form.get("password", ""))
        with runtime().store.write() as tx:
            user = users.create_user(tx, form.get("username", "").strip(), hashed,
                                     role=form.get("role", "staff"),
                                     display_name=form.get("display_name", ""))
    except DomainError as err:
        return refused("staff", _staff_context(), err, "new-user")
    return _staff(gettext("Account %(name)s added.", name=user["username"]))


@blueprint.post("/admin/staff/<user_id>/password")
@staff_page("admin")
def admin_staff_password(user_id: str) -> BaseResponse:
    """Give an account a new password; its sessions end (``users.set_password_of``)."""
    try:
        hashed = _hashed(request.form.get("password", ""))
        with runtime().store.write() as tx:
            user = users.set_password_of(tx, user_id, hashed)
    except DomainError as err:
        return refused("staff", _staff_context(), err, f"password-{user_id}")
    return _staff(gettext("New password set for %(name)s; their sessions have ended.",
                          name=user["username"]))


@blueprint.post("/admin/staff/<user_id>/role")
@staff_page("admin")
def admin_staff_role(user_id: str) -> BaseResponse:
    """Make an account staff or admin (``users.set_role``)."""
    try:
        with runtime().store.write() as tx:
            user = users.set_role(tx, user_id, request.form.get("role", ""))
    except DomainError as err:
        return refused("staff", _staff_context(), err, f"user-{user_id}")
    return _staff(gettext("%(name)s is now %(role)s.", name=user["username"],
                          role=role_name(user["role"])))


@blueprint.post("/admin/staff/<user_id>/active")
@staff_page("admin")
def admin_staff_active(user_id: str) -> BaseResponse:
    """Disable (``active=0``) or enable an account (``users.set_active``)."""
    wanted = request.form.get("active") == "1"
    me = current_staff()
    try:
        if me is not None and me["id"] == user_id and not wanted:
            raise ValidationError.field("active", gettext(
                "You cannot disable your own account while signed in to it."))
        with runtime().store.write() as tx:
            user = users.set_active(tx, user_id, wanted)
    except DomainError as err:
        return refused("staff", _staff_context(), err, f"user-{user_id}")
    text = (gettext("%(name)s can sign in again.", name=user["username"]) if wanted
            else gettext("%(name)s is disabled and signed out everywhere.",
                         name=user["username"]))
    return _staff(text)


def role_name(role: str) -> str:
    """A role as people read it."""
    return {"admin": gettext("admin"), "staff": gettext("staff")}.get(role, role)


# -- settings -----------------------------------------------------------------------------

def _settings_context() -> dict[str, Any]:
    rt = runtime()
    with rt.store.read() as tx:
        clinic = get_location(tx)["name"]
        saved = office.stored(tx)
    return {"clinic": clinic, "saved": saved, "languages": available_languages(),
            "language": rt.settings.language,
            "service_min": _minutes(rt.settings.default_service_s),
            "kiosk_return_s": saved.get("kiosk_return_s", office.KIOSK_RETURN_S_DEFAULT),
            "return_range": office.KIOSK_RETURN_S_RANGE}


def _minutes(seconds: float) -> str:
    value = seconds / 60
    return f"{value:g}" if value != int(value) else str(int(value))


def _number(raw: str, scale: float = 1) -> Any:
    """A typed number times ``scale``; the text itself when it is not one (the domain
    then says so)."""
    text = raw.strip().replace(",", ".")
    try:
        return float(text) * scale
    except ValueError:
        return text or None


def _in_minutes(problem: dict[str, str]) -> dict[str, str]:
    """The service time is typed in minutes: say its problem in minutes."""
    if problem["field"] != "default_service_s":
        return problem
    high = office.BY_NAME["default_service_s"].maximum or 0
    return {"field": "service_min", "message": gettext(
        "must be a number of minutes, more than 0 and at most %(n)s", n=f"{high / 60:g}")}


@blueprint.get("/admin/settings")
@staff_page("admin")
def admin_settings() -> BaseResponse:
    """The clinic's name, language, typical service time and kiosk return time."""
    return render("settings", _settings_context())


@blueprint.post("/admin/settings")
@staff_page("admin")
def admin_settings_save() -> BaseResponse:
    """Save the settings in one transaction: every field is checked, nothing is saved when
    one is wrong."""
    form = request.form
    rt = runtime()
    back = _number(form.get("kiosk_return_s", ""))
    if isinstance(back, float) and back.is_integer():
        back = int(back)
    changes = {"language": form.get("language", ""),
               "default_service_s": _number(form.get("service_min", ""), 60),
               "kiosk_return_s": back}
    try:
        with rt.store.write() as tx:
            problems: list[dict[str, str]] = []
            try:
                rename_location(tx, form.get("clinic", ""))
            except ValidationError as err:
                problems += [{**e, "field": "clinic"} for e in err.errors]
            try:
                saved = office.update(tx, changes, languages=available_languages())
            except ValidationError as err:
                problems += [_in_minutes(e) for e in err.errors]
            if problems:
                raise ValidationError("; ".join(f"{p['field']}: {p['message']}"
                                                for p in problems), problems)
    except DomainError as err:
        return refused("settings", _settings_context(), err, "settings")
    rt.apply_office_settings(saved)
    notice = gettext("Settings saved.")
    if not is_htmx():
        return after_post(notice, "pages.admin_settings")
    return render("settings", {**_settings_context(), "notice": notice})
