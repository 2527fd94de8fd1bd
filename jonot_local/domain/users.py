"""Staff accounts and API tokens. Passwords and tokens are stored only as hashes.

A password hash is slow to make and to check on purpose (scrypt: a core and
about 32 MB for a fifth of a second), so neither happens inside a write
transaction on a server: ``hash_password`` runs before one, and sign-in
(``jonot_local.signin``) reads the stored hash in a short read, checks it with
no transaction open, then issues the token in a short write.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
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
DEFAULT_HASH_METHOD = "scrypt"  # werkzeug's scrypt: n=32768, r=8, p=1
_METHOD_RE = re.compile(
    r"^(scrypt(:\d{1,7}:\d{1,3}:\d{1,3})?|pbkdf2(:[a-z0-9_]{3,16}(:\d{1,9})?)?)$")


@dataclass(frozen=True)
class PasswordHash:
    """A new password, checked and hashed (made by ``hash_password``, before a transaction)."""

    value: str


@dataclass(frozen=True)
class Credentials:
    """What sign-in needs of an account: its id, stored hash and whether it is active."""

    user_id: str
    password_hash: str
    active: bool


def check_hash_method(method: Any) -> str:
    """``method`` if it names a werkzeug password hash (``scrypt[:n:r:p]``,
    ``pbkdf2[:hash[:iterations]]``), else ``ValueError``."""
    if not isinstance(method, str) or not _METHOD_RE.match(method):
        raise ValueError(f"not a password hash method: {method!r} "
                         "(use scrypt[:n:r:p] or pbkdf2[:hash[:iterations]])")
    return method


def hash_password(password: Any, method: str = DEFAULT_HASH_METHOD) -> PasswordHash:
    """Check a new password's length and hash it (slow: call it outside any transaction).

    Raises ``ValidationError`` when the password is too short.
    """
    _password(password)
    return PasswordHash(generate_password_hash(password, method))


def dummy_hash(method: str = DEFAULT_HASH_METHOD) -> str:
    """A hash of no one's password with ``method``'s parameters, checked for unknown users
    so that they cost what a wrong password costs."""
    return generate_password_hash("not-a-real-password-0000", method)


def create_user(tx: Tx, username: Any, password: PasswordHash | Any, *, role: str = "staff",
                display_name: str = "") -> dict[str, Any]:
    """Add an account. Raises ``ValidationError`` or ``Conflict`` (name taken).

    Pass ``password`` as a ``PasswordHash`` made before the transaction; a plain
    string is hashed here, inside it, with the store's method (scripts and tests).
    """
    username = _username(username)
    display_name = clean_line("display_name", display_name, MAX_DISPLAY_NAME) or ""
    hashed = _hashed(tx, password)
    if role not in ROLES:
        raise ValidationError.field("role", "must be staff or admin")
    if tx.one("SELECT 1 FROM users WHERE username = ?", (username,)):
        raise Conflict(f"User {username!r} already exists.", field="username")
    user_id = new_ulid()
    tx.execute(
        "INSERT INTO users (id, username, display_name, password_hash, role, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, username, display_name or username, hashed, role, utcnow_iso()))
    return get_user(tx, user_id)


def set_password(tx: Tx, username: Any, password: PasswordHash | Any) -> None:
    """Change a password and revoke the user's tokens. Raises ``NotFound``.

    ``password`` as for ``create_user``: a ``PasswordHash`` made before the transaction.
    """
    hashed = _hashed(tx, password)
    row = tx.one("SELECT id FROM users WHERE username = ?", (username,))
    if row is None:
        raise NotFound(f"No user called {username!r}.")
    tx.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, row["id"]))
    tx.execute("DELETE FROM api_tokens WHERE user_id = ?", (row["id"],))


def set_password_of(tx: Tx, user_id: str, password: PasswordHash | Any) -> dict[str, Any]:
    """``set_password`` for the account with this id (its sessions end). Raises ``NotFound``."""
    user = get_user(tx, user_id)
    set_password(tx, user["username"], password)
    return user


def set_active(tx: Tx, user_id: str, active: Any) -> dict[str, Any]:
    """Disable (``False``) or enable an account. Disabling ends its sessions at once.

    Raises ``NotFound``, ``ValidationError`` for a non-boolean, or ``Conflict``
    when it would leave the office without an active admin.
    """
    if not isinstance(active, bool):
        raise ValidationError.field("active", "must be true or false")
    user = get_user(tx, user_id)
    if not active and user["role"] == "admin":
        _keep_an_admin(tx, user_id)
    tx.execute("UPDATE users SET active = ? WHERE id = ?", (1 if active else 0, user_id))
    if not active:
        tx.execute("DELETE FROM api_tokens WHERE user_id = ?", (user_id,))
    return get_user(tx, user_id)


def set_language(tx: Tx, user_id: str, language: Any, allowed: Iterable[str]) -> dict[str, Any]:
    """Set the language the account's pages are shown in (``None``: the browser's).

    ``allowed``: the languages the pages have. Raises ``NotFound`` or
    ``ValidationError`` for a language not among them.
    """
    if language is not None and language not in set(allowed):
        raise ValidationError.field("language", "must be one of the languages the pages have")
    get_user(tx, user_id)
    tx.execute("UPDATE users SET language = ? WHERE id = ?", (language, user_id))
    return get_user(tx, user_id)


def set_role(tx: Tx, user_id: str, role: Any) -> dict[str, Any]:
    """Make an account ``staff`` or ``admin``. Raises ``NotFound``, ``ValidationError``, or
    ``Conflict`` when it would leave the office without an active admin."""
    if role not in ROLES:
        raise ValidationError.field("role", "must be staff or admin")
    user = get_user(tx, user_id)
    if role != "admin" and user["role"] == "admin" and user["active"]:
        _keep_an_admin(tx, user_id)
    tx.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
    return get_user(tx, user_id)


def _keep_an_admin(tx: Tx, leaving_id: str) -> None:
    """Refuse a change that takes away the last active admin account."""
    others = tx.one("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND active = 1 "
                    "AND id != ?", (leaving_id,))["n"]
    if not others:
        raise Conflict("This is the only active admin account; make another account an "
                       "admin first.", field="role")


PUBLIC_COLUMNS = ("id", "username", "display_name", "role", "active", "created_at",
                  "language")
_SELECT_PUBLIC = ", ".join(f"u.{c}" for c in PUBLIC_COLUMNS)


def get_user(tx: Tx, user_id: str) -> dict[str, Any]:
    """The public fields of an account. Raises ``NotFound``."""
    row = tx.one(f"SELECT {_SELECT_PUBLIC} FROM users u WHERE id = ?", (user_id,))
    if row is None:
        raise NotFound(f"No user with id {user_id}.")
    return _public(row)


def _public(row: Any) -> dict[str, Any]:
    return {**dict(row), "active": bool(row["active"])}


def list_users(tx: Tx) -> list[dict[str, Any]]:
    """Every account, by username."""
    return [get_user(tx, r["id"]) for r in tx.all("SELECT id FROM users ORDER BY username")]


def require_login_fields(username: Any, password: Any) -> tuple[str, str]:
    """``(username, password)`` when both are strings, else ``ValidationError`` naming each."""
    if not isinstance(username, str) or not isinstance(password, str):
        raise ValidationError("username and password are required.", [
            {"field": f, "message": "is required"}
            for f, v in (("username", username), ("password", password))
            if not isinstance(v, str)])
    return username, password


def find_credentials(tx: Tx, username: str) -> Credentials | None:
    """The stored hash and state of the account called ``username``, or ``None``."""
    row = tx.one("SELECT id, password_hash, active FROM users WHERE username = ?", (username,))
    if row is None:
        return None
    return Credentials(row["id"], row["password_hash"], bool(row["active"]))


def password_matches(creds: Credentials | None, password: str, dummy: str) -> bool:
    """True when ``creds`` is an active account and ``password`` is its password.

    Always costs one hash check (against ``dummy`` when there is no account), so
    an unknown user answers as slowly as a wrong password. Run it with no
    transaction open. Stored hashes of any werkzeug method are understood.
    """
    ok = check_password_hash(creds.password_hash if creds else dummy, password)
    return bool(creds and ok and creds.active)


def authenticate(tx: Tx, username: Any, password: Any) -> dict[str, Any]:
    """The account for these credentials, checked inside ``tx`` (the CLI and the demo).

    Raises ``ValidationError`` or ``AuthError`` (same cost either way). The
    server signs in through ``jonot_local.signin`` instead, with no
    transaction open during the hash check.
    """
    username, password = require_login_fields(username, password)
    creds = find_credentials(tx, username)
    if creds is None:
        dummy_hash(_method(tx))  # as slow as a check: unknown names answer no faster
        raise AuthError("Wrong username or password.")
    if not password_matches(creds, password, creds.password_hash):
        raise AuthError("Wrong username or password.")
    return get_user(tx, creds.user_id)


def open_session(tx: Tx, creds: Credentials, ttl_s: int) -> tuple[str, str, dict[str, Any]]:
    """Issue a token for an account whose password was checked outside this transaction.

    Returns ``(token, expires_at, user)``. Raises ``AuthError`` when the account
    changed meanwhile (deactivated, password changed, removed).
    """
    row = tx.one("SELECT password_hash, active FROM users WHERE id = ?", (creds.user_id,))
    if row is None or not row["active"] or row["password_hash"] != creds.password_hash:
        raise AuthError("Wrong username or password.")
    token, expires = issue_token(tx, creds.user_id, ttl_s)
    return token, expires, get_user(tx, creds.user_id)


def issue_token(tx: Tx, user_id: str, ttl_s: int) -> tuple[str, str]:
    """A new bearer token for the user: ``(token, expires_at)``; only its hash is kept."""
    token = new_token()
    expires = to_iso(utcnow() + timedelta(seconds=ttl_s))
    tx.execute("DELETE FROM api_tokens WHERE expires_at < ?", (utcnow_iso(),))
    tx.execute("INSERT INTO api_tokens (token_hash, user_id, created_at, expires_at) "
               "VALUES (?, ?, ?, ?)", (token_hash(token), user_id, utcnow_iso(), expires))
    return token, expires


def user_for_token(tx: Tx, token: str) -> dict[str, Any] | None:
    """The active account a live token belongs to, or ``None``.

    One statement, so it is consistent without a transaction of its own.
    """
    found = token_owner(tx, token_hash(token))
    return found[0] if found else None


def token_owner(tx: Tx, hashed: str) -> tuple[dict[str, Any], str] | None:
    """``(account, expires_at)`` of a live token given by its hash (``token_hash``), the
    account active; ``None`` otherwise. One statement."""
    row = tx.one(
        f"SELECT {_SELECT_PUBLIC}, t.expires_at AS token_expires_at FROM api_tokens t "
        "JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = ? AND t.expires_at > ? AND u.active = 1",
        (hashed, utcnow_iso()))
    if row is None:
        return None
    user = _public(row)
    expires = user.pop("token_expires_at")
    return user, str(expires)


def revoke_token(tx: Tx, token: str) -> None:
    """End one session: the token stops working at once (unknown tokens are ignored)."""
    tx.execute("DELETE FROM api_tokens WHERE token_hash = ?", (token_hash(token),))


def _method(tx: Tx) -> str:
    return getattr(tx.store, "password_hash_method", None) or DEFAULT_HASH_METHOD


def _hashed(tx: Tx, password: PasswordHash | Any) -> str:
    if isinstance(password, PasswordHash):
        return password.value
    return hash_password(password, _method(tx)).value


def token_hash(token: str) -> str:
    """What is kept of a bearer token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _username(value: Any) -> str:
    if not isinstance(value, str) or not USERNAME_RE.match(value):
        raise ValidationError.field(
            "username", "must be 1 to 64 letters, digits or . _ @ -")
    return value


def _password(value: Any) -> None:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        raise ValidationError.field("password", f"must be at least {MIN_PASSWORD} characters")
