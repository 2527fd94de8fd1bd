"""Registered devices: kiosks, displays and desk PCs that carry a long-lived credential.

A device is registered by an admin and gets a token once (only its hash is
kept). Requests that present a live device token are the office's own
equipment: kiosks are never limited by the per-client join budget, and
displays and desks get live-stream slots from a reserve of their own.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..db import Tx
from ..ids import new_token, new_ulid
from ..timeutil import utcnow_iso
from . import office
from .errors import NotFound, ValidationError
from .text import clean_name, language_code

KINDS = ("kiosk", "display", "desk")
MAX_NAME = 80
COLUMNS = "id, kind, name, printer, created_at, revoked_at, options, paired_at"

# A kiosk's options and their defaults (``queue_ids`` None: every queue, in kiosk order).
KIOSK_DEFAULTS: dict[str, Any] = {
    "queue_ids": None,
    "priority_button": False,
    "language": None,
    "printing": True,
    "return_s": office.KIOSK_RETURN_S_DEFAULT,  # the office's kiosk_return_s when saved
}
RETURN_S_RANGE = office.KIOSK_RETURN_S_RANGE

# A display's options (``queue_ids`` None: every queue; ``language`` None: the server's
# display language, else the TV browser's). Its announcements speak this language.
DISPLAY_DEFAULTS: dict[str, Any] = {
    "queue_ids": None,
    "language": None,
}

#: the options each kind of device has, with their defaults
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {"kiosk": KIOSK_DEFAULTS,
                                              "display": DISPLAY_DEFAULTS}


def register(tx: Tx, kind: Any, name: Any,
             display_id: Any = None) -> tuple[dict[str, Any], str]:
    """Register a device; returns its public record and its token (shown only now).

    A display device may name the display (``display_id``) its screen shows.
    Raises ``ValidationError`` for an unknown kind, an empty/over-long name, or a
    ``display_id`` that is no display's (or given for another kind).
    """
    if kind not in KINDS:
        raise ValidationError.field("kind", f"must be one of {', '.join(KINDS)}")
    name = clean_name("name", name, MAX_NAME)
    options = None
    if display_id is not None:
        if kind != "display":
            raise ValidationError.field("display_id", "only a display device shows a display")
        if not isinstance(display_id, str) or tx.one(
                "SELECT 1 FROM displays WHERE id = ?", (display_id,)) is None:
            raise ValidationError.field("display_id", f"no display with id {display_id}")
        options = json.dumps({"display_id": display_id})
    device_id, token = new_ulid(), new_token()
    tx.execute(
        "INSERT INTO devices (id, kind, name, token_hash, created_at, options) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (device_id, kind, name, token_hash(token), utcnow_iso(), options))
    return get(tx, device_id), token


def renew_token(tx: Tx, device_id: str) -> tuple[dict[str, Any], str]:
    """A new credential (and so a new pairing link) for a live device; the old one stops
    working and the device counts as not paired until the new link is opened.

    Raises ``NotFound``, or ``ValidationError`` for a revoked device.
    """
    device = get(tx, device_id)
    if not device["active"]:
        raise ValidationError.field("device", "is revoked; register a new device instead")
    token = new_token()
    tx.execute("UPDATE devices SET token_hash = ?, paired_at = NULL WHERE id = ?",
               (token_hash(token), device_id))
    return get(tx, device_id), token


def mark_paired(tx: Tx, device_id: str) -> None:
    """Record that the device opened its pairing link now."""
    tx.execute("UPDATE devices SET paired_at = ? WHERE id = ?", (utcnow_iso(), device_id))


def get(tx: Tx, device_id: str) -> dict[str, Any]:
    """The public record of a device. Raises ``NotFound``."""
    row = tx.one(f"SELECT {COLUMNS} FROM devices WHERE id = ?",
                 (device_id,))
    if row is None:
        raise NotFound(f"No device with id {device_id}.")
    return _public(row, kiosk_defaults(tx))


def list_devices(tx: Tx) -> list[dict[str, Any]]:
    """Every device, newest first, revoked ones included (``active`` says which)."""
    rows = tx.all(f"SELECT {COLUMNS} FROM devices "
                  "ORDER BY created_at DESC, id DESC")
    defaults = kiosk_defaults(tx)
    return [_public(r, defaults) for r in rows]


def revoke(tx: Tx, device_id: str) -> dict[str, Any]:
    """Stop a device's credential working (kept for the record). Raises ``NotFound``."""
    get(tx, device_id)
    tx.execute("UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
               (utcnow_iso(), device_id))
    return get(tx, device_id)


def for_token(tx: Tx, token: str) -> dict[str, Any] | None:
    """The live (not revoked) device this token belongs to, or ``None``."""
    row = tx.one(f"SELECT {COLUMNS} FROM devices "
                 "WHERE token_hash = ? AND revoked_at IS NULL", (token_hash(token),))
    return _public(row, kiosk_defaults(tx)) if row else None


def set_printer(tx: Tx, device_id: str, printer: Any) -> dict[str, Any]:
    """Give a kiosk its own receipt printer (a URI), or ``None`` for the default one.

    Raises ``NotFound``, or ``ValidationError`` for a device that is not a kiosk
    or a value that is not a printer URI.
    """
    from ..printing.printer import parse_uri

    device = get(tx, device_id)
    if printer is not None:
        if not isinstance(printer, str):
            raise ValidationError.field("printer", "must be a printer URI or null")
        printer = printer.strip() or None
    if printer is not None:
        if device["kind"] != "kiosk":
            raise ValidationError.field("printer", "only a kiosk prints receipts")
        try:
            printer = parse_uri(printer).uri
        except ValueError as exc:
            raise ValidationError.field("printer", str(exc)) from None
    tx.execute("UPDATE devices SET printer = ? WHERE id = ?", (printer, device_id))
    return get(tx, device_id)


def printers(tx: Tx) -> list[str]:
    """The own printers of live kiosks, each once."""
    rows = tx.all("SELECT DISTINCT printer FROM devices WHERE printer IS NOT NULL "
                  "AND revoked_at IS NULL ORDER BY printer")
    return [r["printer"] for r in rows]


def token_hash(token: str) -> str:
    """What is stored of a device token."""
    return hashlib.sha256(token.encode()).hexdigest()


def kiosk_options(tx: Tx, device_id: str) -> dict[str, Any]:
    """A kiosk's options, every key present (defaults filled in). Raises ``NotFound``.

    Keys: ``queue_ids`` (list of queue ids shown, in kiosk order; ``None`` = every
    queue), ``priority_button`` (bool), ``language`` (a language code or ``None``:
    the browser's), ``printing`` (bool), ``return_s`` (seconds the new ticket stays
    on screen, 3–120).
    """
    return get(tx, device_id)["options"]


def display_options(tx: Tx, device_id: str) -> dict[str, Any]:
    """A display's options, every key present: ``queue_ids`` (the queues it shows;
    ``None`` = every queue) and ``language`` (``None``: the server's display
    language, else the TV browser's). Raises ``NotFound``."""
    return get(tx, device_id)["options"]


def set_options(tx: Tx, device_id: str, changes: Any) -> dict[str, Any]:
    """Change some of a kiosk's or display's options (only the keys given; ``None``
    restores a default). Returns the device record.

    Raises ``NotFound``, or ``ValidationError`` for a device without options (a
    desk PC), a key its kind does not have or a bad value (unknown queue ids too).
    """
    device = get(tx, device_id)
    defaults = OPTION_DEFAULTS.get(device["kind"])
    if defaults is None:
        raise ValidationError.field("options", "only kiosks and displays have options")
    if not isinstance(changes, dict):
        raise ValidationError.field("options", "must be an object")
    unknown = sorted(set(changes) - set(defaults))
    if unknown:
        raise ValidationError.field(
            "options", f"unknown option(s) for a {device['kind']}: {', '.join(unknown)}")
    stored = _stored_options(tx, device_id)
    for key, value in changes.items():
        if value is None:
            stored.pop(key, None)
        else:
            stored[key] = _checked_option(tx, key, value)
    tx.execute("UPDATE devices SET options = ? WHERE id = ?",
               (json.dumps(stored, sort_keys=True) if stored else None, device_id))
    return get(tx, device_id)


def _stored_options(tx: Tx, device_id: str) -> dict[str, Any]:
    row = tx.one("SELECT options FROM devices WHERE id = ?", (device_id,))
    return _decode(row["options"] if row else None)


def _decode(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _checked_option(tx: Tx, key: str, value: Any) -> Any:
    field = f"options.{key}"
    if key in ("priority_button", "printing"):
        if not isinstance(value, bool):
            raise ValidationError.field(field, "must be true or false")
        return value
    if key == "return_s":
        low, high = RETURN_S_RANGE
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValidationError.field(field, f"must be an integer between {low} and {high}")
        return value
    if key == "language":
        return language_code(field, value)
    # queue_ids
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError.field(field, "must be a list of queue ids")
    ids = list(dict.fromkeys(value))
    if ids:
        marks = ", ".join("?" * len(ids))
        found = {r["id"] for r in tx.all(f"SELECT id FROM queues WHERE id IN ({marks})", ids)}
        missing = [q for q in ids if q not in found]
        if missing:
            raise ValidationError.field(field, f"no queue with id {', '.join(missing)}")
    return ids


def kiosk_defaults(tx: Tx) -> dict[str, Any]:
    """The options of a kiosk that set none of its own (the office's return time in)."""
    return {**KIOSK_DEFAULTS, "return_s": office.kiosk_return_s(tx)}


def _public(row: Any, kiosk_defaults: dict[str, Any]) -> dict[str, Any]:
    data = dict(row)
    data["active"] = data["revoked_at"] is None
    stored = _decode(data.pop("options", None))
    if data["kind"] == "kiosk":
        defaults: dict[str, Any] | None = kiosk_defaults
    else:
        defaults = OPTION_DEFAULTS.get(data["kind"])
    data["options"] = {**defaults, **stored} if defaults is not None else stored
    return data
