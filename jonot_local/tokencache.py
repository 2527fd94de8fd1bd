"""Who a bearer token belongs to, remembered for a few seconds.

Every staff request (the desk's page calls, outside tools on the API) names its
account by a token; looking it up took a pooled connection and a statement per
request, and under load those look-ups, each handing the interpreter lock to
another thread, cost more than the statement itself.

A remembered answer is used only while all of these hold:

- no write of this process has touched accounts or tokens since it was looked
  up (``Store.auth_generation``): signing out, a password or role changed or an
  account deactivated in admin count at once;
- the token has not expired;
- it is at most ``token_cache_s`` old, which bounds how long a change made by
  another process (``jonot-local user …`` while the server runs) goes unseen.

Unknown tokens are never remembered, and the cache holds at most
``MAX_ENTRIES`` tokens (the oldest go first).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .db import Store
from .domain import users
from .timeutil import utcnow_iso

MAX_ENTRIES = 2048


class TokenCache:
    """Accounts of recently seen bearer tokens, for one store. Thread-safe."""

    def __init__(self, store: Store, max_age_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.max_age_s = max(0.0, max_age_s)
        self._clock = clock
        # token hash -> (account, token expiry (ISO, UTC), generation, when looked up)
        self._entries: dict[str, tuple[dict[str, Any], str, int, float]] = {}
        self._lock = threading.Lock()

    def account(self, token: str) -> dict[str, Any] | None:
        """The active account a live token belongs to, or ``None`` (a copy; change it freely)."""
        hashed = users.token_hash(token)
        generation = self.store.auth_generation  # before the look-up, see Store
        remember = generation is not None and self.max_age_s > 0
        now = self._clock()
        entry = self._entries.get(hashed) if remember else None
        if entry is not None:
            user, expires, seen_generation, seen_at = entry
            if (seen_generation == generation and now - seen_at <= self.max_age_s
                    and expires > utcnow_iso()):
                return dict(user)
        with self.store.read(snapshot=False) as tx:  # one statement
            found = users.token_owner(tx, hashed)
        if generation is None or not remember:
            return found[0] if found else None
        with self._lock:
            self._entries.pop(hashed, None)
            if found is None:
                return None
            user, expires = found
            self._entries[hashed] = (user, expires, generation, now)  # newest last
            while len(self._entries) > MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
        return dict(user)

    def __len__(self) -> int:
        return len(self._entries)
