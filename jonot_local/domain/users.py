"""Staff accounts and API tokens. Passwords and tokens are stored only as hashes."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from ..db import Tx
from ..ids import new_token, new_ulid
from ..timeutil import to_iso, utcnow, utcnow_iso
from .errors import AuthError, Conflict, NotFound, ValidationError
from .text import clean_line

ROLES = ("staff", "admin")
USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 8
MAX_DISPLAY_NAME = 80
# Checked against when the username is unknown, so both paths cost the same.
_DUMMY_HASH = generate_password_hash("not-a-real-password-0000")


def create_user(tx: Tx, username: Any, password: Any, *, role: str = "staff",
                display_name: str = "") -> dict[str, Any]:
    """Add an account. Raises ``ValidationError`` or ``Conflict`` (name taken)."""
    username = _username(username)
    display_name = clean_line("display_name", display_name, MAX_DISPLAY_NAME) or ""
    _password(password)
    if role not in ROLES:
        raise ValidationError.field("role", "must be staff or admin")
    if tx.one("SELECT 1 FROM users WHERE username = ?", (username,)):
        raise Conflict(f"User {username!r} already exists.", field="username")
    user_id = new_ulid()
    tx.execute(
        "INSERT INTO users (id, username, display_name, password_hash, role, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, username, display_name or username, generate_password_hash(password), role,
         utcnow_iso()))
    return get_user(tx, user_id)


def set_password(tx: Tx, username: Any, password: Any) -> None:
    """Change a password and revoke the user's tokens. Raises ``NotFound``."""
    _password(password)
    row = tx.one("SELECT id FROM users WHERE username = ?", (username,))
    if row is None:
        raise NotFound(f"No user called {username!r}.")
    tx.execute("UPDATE users SET password_hash = ? WHERE id = ?",
               (generate_password_hash(password), row["id"]))
    tx.execute("DELETE FROM api_tokens WHERE user_id = ?", (row["id"],))


def get_user(tx: Tx, user_id: str) -> dict[str, Any]:
    """The public fields of an account. Raises ``NotFound``."""
    row = tx.one("SELECT id, username, display_name, role, active, created_at FROM users "
                 "WHERE id = ?", (user_id,))
    if row is None:
        raise NotFound(f"No user with id {user_id}.")
    return {**dict(row), "active": bool(row["active"])}


def list_users(tx: Tx) -> list[dict[str, Any]]:
    """Every account, by username."""
    return [get_user(tx, r["id"]) for r in tx.all("SELECT id FROM users ORDER BY username")]


def authenticate(tx: Tx, username: Any, password: Any) -> dict[str, Any]:
    """The account for these credentials. Raises ``AuthError`` (same cost either way)."""
    if not isinstance(username, str) or not isinstance(password, str):
        raise ValidationError("username and password are required.", [
            {"field": f, "message": "is required"}
            for f, v in (("username", username), ("password", password))
            if not isinstance(v, str)])
    row = tx.one("SELECT id, password_hash, active FROM users WHERE username = ?", (username,))
    stored = row["password_hash"] if row else _DUMMY_HASH
    ok = check_password_hash(stored, password)
    if not row or not ok or not row["active"]:
        raise AuthError("Wrong username or password.")
    return get_user(tx, row["id"])


def issue_token(tx: Tx, user_id: str, ttl_s: int) -> tuple[str, str]:
    """A new bearer token for the user: ``(token, expires_at)``; only its hash is kept."""
    token = new_token()
    expires = to_iso(utcnow() + timedelta(seconds=ttl_s))
    tx.execute("DELETE FROM api_tokens WHERE expires_at < ?", (utcnow_iso(),))
    tx.execute("INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at) "
               "VALUES (?, ?, ?, ?)", (_token_hash(token), user_id, utcnow_iso(), expires))
    return token, expires


def user_for_token(tx: Tx, token: str) -> dict[str, Any] | None:
    """The active account a live token belongs to, or ``None``."""
    row = tx.one(
        "SELECT u.id FROM api_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = ? AND t.expires_at > ? AND u.active = 1",
        (_token_hash(token), utcnow_iso()))
    return get_user(tx, row["id"]) if row else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _username(value: Any) -> str:
    if not isinstance(value, str) or not USERNAME_RE.match(value):
        raise ValidationError.field(
            "username", "must be 1 to 64 letters, digits or . _ @ -")
    return value


def _password(value: Any) -> None:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        raise ValidationError.field("password", f"must be at least {MIN_PASSWORD} characters")
