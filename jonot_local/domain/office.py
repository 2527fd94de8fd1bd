"""The office's own settings, changed in admin and kept in the database.

Each is declared once here (``FIELDS``): its key, type, range and help line.
A value saved in admin wins over the server's setting of the same meaning
(``JONOT_LANGUAGE``, ``JONOT_DEFAULT_SERVICE_S``), which stays the default
until then; the clinic's name is the location's own (``location.rename_location``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..db import Tx
from .errors import ValidationError

KEY_PREFIX = "office."
KIOSK_RETURN_S_RANGE = (3, 120)
KIOSK_RETURN_S_DEFAULT = 12


@dataclass(frozen=True)
class OfficeSetting:
    """One setting: ``name``, its Python type and inclusive range; ``help`` for people."""

    name: str
    kind: type
    help: str
    minimum: float | None = None
    maximum: float | None = None


FIELDS: tuple[OfficeSetting, ...] = (
    OfficeSetting("language", str, "Language of the pages when the browser asks for none "
                  "the server has."),
    OfficeSetting("default_service_s", float, "Assumed service time per ticket (seconds) "
                  "before a queue has real data.", 1, 86_400),
    OfficeSetting("kiosk_return_s", int, "Seconds a new ticket stays on a kiosk's screen, "
                  "unless the kiosk has its own.", *KIOSK_RETURN_S_RANGE),
)
BY_NAME = {f.name: f for f in FIELDS}


def stored(tx: Tx) -> dict[str, Any]:
    """The values saved in admin, by name (settings never saved are absent)."""
    out: dict[str, Any] = {}
    for row in tx.all("SELECT key, value FROM settings WHERE key LIKE ?", (KEY_PREFIX + "%",)):
        name = row["key"][len(KEY_PREFIX):]
        if name in BY_NAME:
            try:
                out[name] = json.loads(row["value"])
            except ValueError:
                continue
    return out


def update(tx: Tx, changes: Any, *, languages: Sequence[str]) -> dict[str, Any]:
    """Save some settings (``None`` forgets one: back to the server's default); returns
    ``stored``. ``languages``: the codes the pages can be shown in.

    Raises ``ValidationError`` naming every bad field (nothing is saved then).
    """
    if not isinstance(changes, dict):
        raise ValidationError.field("settings", "must be an object")
    checked: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name, value in changes.items():
        spec = BY_NAME.get(name)
        if spec is None:
            errors.append({"field": name, "message": "is not a setting"})
            continue
        if value is None:
            checked[name] = None
            continue
        problem = _problem(spec, value, languages)
        if problem:
            errors.append({"field": name, "message": problem})
        else:
            checked[name] = value.strip().lower() if spec.kind is str else spec.kind(value)
    if errors:
        raise ValidationError("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    for name, value in checked.items():
        if value is None:
            tx.execute("DELETE FROM settings WHERE key = ?", (KEY_PREFIX + name,))
        else:
            tx.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       (KEY_PREFIX + name, json.dumps(value)))
    if checked:
        tx.emit({"kind": "settings", "action": "updated"})
    return stored(tx)


def kiosk_return_s(tx: Tx) -> int:
    """Seconds a new ticket stays on a kiosk that has no return time of its own."""
    value = stored(tx).get("kiosk_return_s")
    return int(value) if isinstance(value, int) else KIOSK_RETURN_S_DEFAULT


def _problem(spec: OfficeSetting, value: Any, languages: Sequence[str]) -> str | None:
    if spec.kind is str:
        if not isinstance(value, str) or value.strip().lower() not in languages:
            return f"must be one of {', '.join(languages)}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if spec.kind is int and not float(value).is_integer():
        return "must be a whole number"
    low, high = spec.minimum, spec.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        return f"must be between {_num(low)} and {_num(high)}"
    return None


def _num(value: float | None) -> str:
    return "" if value is None else (f"{value:g}")
