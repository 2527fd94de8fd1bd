"""Per-client token buckets guarding look-ups by ticket hash against guessing.

Two budgets per client address: every look-up draws from a generous one
(a holder polling a few times a second is never throttled), and every look-up
of an unknown hash also from a tight one. An empty bucket answers 429 with
``Retry-After``. Keys are client addresses as the app sees them: behind the
cloud's reverse proxy, set ``trusted_proxies`` so ``X-Forwarded-For`` is used.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBuckets:
    """Many token buckets of one size, keyed by client, with bounded memory."""

    def __init__(self, per_minute: int, max_keys: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(max(1, per_minute))
        self.rate = self.capacity / 60.0
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        tokens, stamp = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - stamp) * self.rate)

    def retry_after(self, key: str) -> int:
        """Seconds until one token is there for ``key`` (0: available now)."""
        with self._lock:
            level = self._level(key, self._clock())
        return 0 if level >= 1 else max(1, math.ceil((1 - level) / self.rate))

    def take(self, key: str) -> int:
        """Draw one token; returns 0 on success, else the seconds to wait."""
        with self._lock:
            now = self._clock()
            level = self._level(key, now)
            if level < 1:
                return max(1, math.ceil((1 - level) / self.rate))
            self._buckets[key] = (level - 1, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return 0


class HashLookupLimits:
    """The two budgets of look-ups by hash: every look-up, and look-ups that missed."""

    def __init__(self, per_minute: int, misses_per_minute: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every = TokenBuckets(per_minute, clock=clock)
        self.misses = TokenBuckets(misses_per_minute, clock=clock)

    def admit(self, key: str) -> int:
        """0 when ``key`` may look up now (drawing one look-up), else the seconds to wait.

        A client whose miss budget is spent is refused every look-up, valid or not,
        until it refills: guessing must not be able to hide behind real look-ups.
        """
        return self.misses.retry_after(key) or self.every.take(key)

    def missed(self, key: str) -> None:
        """Record a look-up of an unknown hash."""
        self.misses.take(key)
