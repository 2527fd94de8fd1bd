"""The kiosk's double-tap guard: one ticket per screen key, remembered for a minute.

Each start screen carries a random key in its form; a second submission of the
same key from the same client (a double tap, a retried request) gets the
ticket the first one made instead of a new one. Two submissions racing each
other are serialised on the key, so the second waits for the first's answer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

TTL_S = 60.0
MAX_KEYS = 10_000


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ticket_id: str | None = None
    at: float = 0.0


class KioskKeys:
    """Recent (client, key) → ticket id, for ``ttl_s`` seconds, at most ``max_keys``."""

    def __init__(self, ttl_s: float = TTL_S, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def once(self, client: str, key: str, make: Callable[[], str]) -> tuple[str, bool]:
        """The ticket id for ``(client, key)``: made by ``make()`` the first time only.

        Returns ``(ticket_id, made_now)``. When ``make`` raises, nothing is
        remembered and the next submission tries again.
        """
        entry = self._entry(client, key)
        with entry.lock:
            if entry.ticket_id is not None and self.clock() - entry.at < self.ttl_s:
                return entry.ticket_id, False
            ticket_id = make()
            entry.ticket_id, entry.at = ticket_id, self.clock()
            return ticket_id, True

    def _entry(self, client: str, key: str) -> _Entry:
        now = self.clock()
        with self._lock:
            while self._entries:
                oldest_key, oldest = next(iter(self._entries.items()))
                expired = oldest.at and now - oldest.at >= self.ttl_s
                if not (expired or len(self._entries) >= self.max_keys):
                    break
                if oldest.lock.locked():
                    break
                del self._entries[oldest_key]
            found = self._entries.get((client, key))
            if found is None:
                found = self._entries[(client, key)] = _Entry(at=now)
            return found
