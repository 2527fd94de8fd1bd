"""Demo data for a first look: a few clinic queues, desks, a display and an admin login.

``make run`` starts the demo again and again on the same data dir, so the
demo admin's password is made once, kept in ``<data-dir>/demo-login.txt``
(readable by the owner only) and shown on every start while it still works.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .db import Store, Tx
from .domain import queues, users
from .domain.errors import AuthError
from .domain.location import rename_location

DEMO_LOCATION = "Demo Clinic"
DEMO_ADMIN = "admin"
LOGIN_FILENAME = "demo-login.txt"

# name, prefix, colour
DEMO_QUEUES = (
    ("General practice", "A", "#1f6feb"),
    ("Laboratory", "L", "#8250df"),
    ("Pharmacy", "P", "#1a7f37"),
)
# desk name, prefixes of the queues it serves, in priority order
DEMO_DESKS = (
    ("Room 1", ("A",)),
    ("Room 2", ("A", "L")),
    ("Lab", ("L",)),
    ("Pharmacy counter", ("P",)),
)
DEMO_DISPLAY = "Waiting room TV"


def load_demo(store: Store) -> tuple[str, str] | None:
    """Fill an empty database (no queues) with a small clinic; return the demo login.

    Creates the queues, desks and display above, renames the location to
    ``Demo Clinic`` and, unless an ``admin`` account exists already, an admin
    account with a new random password saved in ``demo-login.txt``. On a
    database that already has queues nothing changes. Either way the result
    is the saved login if it still opens the ``admin`` account, else ``None``.
    """
    login_file = store.path.parent / LOGIN_FILENAME
    password = secrets.token_urlsafe(12)
    with store.read() as tx:
        empty = not queues.list_queues(tx)
    # Hashed before the write transaction (slow on purpose), only when it may be needed.
    hashed = users.hash_password(password, store.password_hash_method or
                                 users.DEFAULT_HASH_METHOD) if empty else None
    with store.write() as tx:
        if hashed is not None and not queues.list_queues(tx):
            _fill(tx, login_file, password, hashed)
    return _saved_login(store, login_file)


def _fill(tx: Tx, login_file: Path, password: str, hashed: users.PasswordHash) -> None:
    by_prefix = {}
    for order, (name, prefix, colour) in enumerate(DEMO_QUEUES, start=1):
        q = queues.create_queue(tx, name=name, prefix=prefix, colour=colour, sort_order=order)
        by_prefix[prefix] = q.id
    for name, prefixes in DEMO_DESKS:
        queues.create_desk(tx, name=name, queue_ids=[by_prefix[p] for p in prefixes])
    queues.create_display(tx, name=DEMO_DISPLAY, queue_ids=[])
    rename_location(tx, DEMO_LOCATION)
    if tx.one("SELECT 1 FROM users WHERE username = ?", (DEMO_ADMIN,)) is None:
        users.create_user(tx, DEMO_ADMIN, hashed, role="admin",
                          display_name="Demo administrator")
        # Written before the commit: if this fails, the transaction rolls back.
        _write_private(login_file, f"username={DEMO_ADMIN}\npassword={password}\n")


def _saved_login(store: Store, login_file: Path) -> tuple[str, str] | None:
    """The login in ``demo-login.txt`` if the file exists and the password still works."""
    try:
        text = login_file.read_text()
    except OSError:
        return None
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    username, password = fields.get("username"), fields.get("password")
    if not username or not password:
        return None
    with store.read() as tx:
        try:
            users.authenticate(tx, username, password)
        except AuthError:
            return None
    return username, password


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by the owner only (0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
