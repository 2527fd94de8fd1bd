"""Text that people typed, made safe to show on a screen, a receipt or in a report.

Every short text that enters the office (a ticket's name and phone, label values,
extra titles and values, names of queues, desks, displays, devices and staff)
goes through ``clean_line``; staff notes, which may span lines, go through
``clean_notes``. Both normalise to NFC and deal with what could fake text on a
display or break a receipt or a CSV line:

- line breaks (CR, LF, VT, FF, NEL U+0085, U+2028, U+2029) and tabs: in a line,
  whitespace like any other (runs of spaces become one); in notes, one newline;
- other control characters (C0, DEL, C1): refused;
- text-direction overrides, embeddings and isolates (U+202A-U+202E,
  U+2066-U+2069), which can make a name read backwards: refused;
- other invisible format characters (zero-width space and joiners, word
  joiner, soft hyphen, byte-order mark, direction marks …): removed;
- more than ``MAX_COMBINING_RUN`` combining marks on one letter (text that
  smears over the lines around it): refused;
- lone surrogates: refused.

Values that start with ``=``, ``+``, ``-`` or ``@`` are kept as typed: they are
a concern of CSV export (spreadsheet formulas), which must neutralise them
there, not of the names people have.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from .errors import ValidationError

MAX_COMBINING_RUN = 4

_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_line(field: str, value: Any, limit: int, *, required: bool = False) -> str | None:
    """One line of text, safe to show: NFC, no controls, single spaces, trimmed.

    Returns ``None`` for ``None`` or a text that is empty once cleaned, unless
    ``required`` (then ``ValidationError`` "is required"). Raises
    ``ValidationError`` naming ``field`` for a non-string, for text longer than
    ``limit`` characters once cleaned, or for characters that are refused (see
    the module's docstring).
    """
    text = _as_text(field, value, required)
    if text is None:
        return None
    if text.isascii() and text.isprintable():
        cleaned = " ".join(text.split())  # the common case, cheap on the join path
    else:
        cleaned = " ".join(_filter(field, text, keep_breaks=False).split())
    return _finish(field, cleaned, limit, required)


def clean_name(field: str, value: Any, limit: int) -> str:
    """A required one-line text (a name of a queue, desk, display …): ``clean_line``, not empty."""
    cleaned = clean_line(field, value, limit, required=True)
    if cleaned is None:  # pragma: no cover - required=True never gives None
        raise ValidationError.field(field, "is required")
    return cleaned


def clean_notes(field: str, value: Any, limit: int) -> str:
    """Text of several lines (staff notes): like ``clean_line`` but line breaks stay.

    Every kind of line break becomes ``\\n``, tabs become spaces, trailing spaces
    of each line and blank lines at both ends go. ``None`` gives ``""``.
    """
    text = _as_text(field, value, False)
    if not text:  # None or "" (most tickets' notes): nothing to clean
        return ""
    lines = _filter(field, text, keep_breaks=True).split("\n")
    cleaned = "\n".join(line.rstrip() for line in lines).strip("\n")
    return _finish(field, cleaned, limit, False) or ""


def _as_text(field: str, value: Any, required: bool) -> str | None:
    if value is None:
        if required:
            raise ValidationError.field(field, "is required")
        return None
    if not isinstance(value, str):
        raise ValidationError.field(field, "must be text")
    return value


def _filter(field: str, text: str, *, keep_breaks: bool) -> str:
    """``text`` in NFC with breaks and spaces made plain and format characters removed."""
    out: list[str] = []
    run = 0
    text = text.replace("\r\n", "\n")
    for ch in unicodedata.normalize("NFC", text):
        if ch in _BREAKS:
            out.append("\n" if keep_breaks else " ")
            run = 0
            continue
        cat = unicodedata.category(ch)
        if cat == "Zs" or ch == "\t":
            out.append(" ")
            run = 0
        elif cat == "Cc":
            raise ValidationError.field(field, "must not contain control characters")
        elif ch in _BIDI_CONTROLS:
            raise ValidationError.field(
                field, "must not contain text-direction controls (they can make text "
                       "read backwards)")
        elif cat == "Cf":
            continue
        elif cat == "Cs":
            raise ValidationError.field(field, "must be valid text")
        elif cat in ("Mn", "Me"):
            run += 1
            if run > MAX_COMBINING_RUN:
                raise ValidationError.field(
                    field, f"must not stack more than {MAX_COMBINING_RUN} accents on a letter")
            out.append(ch)
        else:
            run = 0
            out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _finish(field: str, cleaned: str, limit: int, required: bool) -> str | None:
    if not cleaned:
        if required:
            raise ValidationError.field(field, "is required")
        return None
    if len(cleaned) > limit:
        raise ValidationError.field(field, f"must be at most {limit} characters")
    return cleaned


__all__ = ["MAX_COMBINING_RUN", "clean_line", "clean_name", "clean_notes"]


def language_code(field: str, value: Any) -> str:
    """A language code as stored (``fi``, ``en-gb``): 2–16 characters, lower case."""
    if not isinstance(value, str) or not 2 <= len(value.strip()) <= 16:
        raise ValidationError.field(field, "must be a language code such as en or fi")
    return value.strip().lower()
