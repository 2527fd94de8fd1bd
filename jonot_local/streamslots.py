"""Live-stream slots: how many Server-Sent Events streams may be open, and for whom.

Every open stream holds one waitress worker thread, so streams are counted
against a hard limit (``threads - stream_reserve``). Within it:

- a **reserve** that only registered displays and desks may use: a lobby
  display carrying its device credential gets a slot even when anonymous
  clients have taken every other one;
- a cap **per client** (address as the app sees it): one phone, or one
  hostile client, cannot take the office's slots; registered devices are not
  counted against it;
- a cap **per ticket**: a holder needs one stream per open tab, a few at most.

A refusal says which rule it hit, so the API can answer 429 (a per-client
cap) or 503 (the server is full). Nothing here knows HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

FULL = "full"
CLIENT = "client"
TICKET = "ticket"


class SlotRefused(Exception):
    """No slot for this stream; ``reason`` is ``full``, ``client`` or ``ticket``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SlotLimits:
    """The caps, already sane: non-negative, the reserve within the total."""

    total: int
    device_reserve: int
    per_client: int
    per_ticket: int

    @classmethod
    def of(cls, total: int, device_reserve: int, per_client: int,
           per_ticket: int) -> SlotLimits:
        total = max(0, total)
        return cls(total=total, device_reserve=min(max(0, device_reserve), total),
                   per_client=max(0, per_client), per_ticket=max(0, per_ticket))


class StreamSlots:
    """Counts open streams in total, per client and per ticket, under ``SlotLimits``.

    ``per_client`` or ``per_ticket`` of 0 means no cap of that kind.
    """

    def __init__(self, limits: SlotLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._total = 0
        self._anonymous = 0
        self._clients: dict[str, int] = {}
        self._tickets: dict[str, int] = {}

    @property
    def in_use(self) -> int:
        """Streams open now."""
        return self._total

    def held_by(self, client: str) -> int:
        """Anonymous streams ``client`` holds now."""
        return self._clients.get(client, 0)

    def acquire(self, client: str, ticket: str | None = None,
                device: bool = False) -> Callable[[], None]:
        """Take a slot; returns its release (safe to call more than once).

        ``device``: a registered display or desk (may use the reserve, no
        per-client cap). Raises ``SlotRefused`` when a cap is reached.
        """
        lim = self.limits
        with self._lock:
            if ticket is not None and lim.per_ticket and \
                    self._tickets.get(ticket, 0) >= lim.per_ticket:
                raise SlotRefused(TICKET)
            if not device and lim.per_client and \
                    self._clients.get(client, 0) >= lim.per_client:
                raise SlotRefused(CLIENT)
            if self._total >= lim.total or (
                    not device and self._anonymous >= lim.total - lim.device_reserve):
                raise SlotRefused(FULL)
            self._total += 1
            if not device:
                self._anonymous += 1
                self._clients[client] = self._clients.get(client, 0) + 1
            if ticket is not None:
                self._tickets[ticket] = self._tickets.get(ticket, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._total -= 1
                if not device:
                    self._anonymous -= 1
                    _decrement(self._clients, client)
                if ticket is not None:
                    _decrement(self._tickets, ticket)

        return release


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
