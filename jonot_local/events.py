"""The in-process event hub: change events fanned out to live streams.

The store hands every committed batch of events to ``EventHub.publish``. Each
event gets a sequence number; a ring buffer keeps the recent ones so a client
that reconnects with ``Last-Event-ID`` can catch up. Readers block on one
condition variable; no thread of its own is needed.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections import deque
from typing import Any


class EventHub:
    """Thread-safe publish/wait over a bounded backlog of events."""

    def __init__(self, backlog: int = 2048) -> None:
        self.epoch = secrets.token_hex(4)
        self._cond = threading.Condition()
        self._events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=backlog)
        self._seq = 0
        self._closed = False

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (0 before any)."""
        return self._seq

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Append events and wake every waiting reader."""
        with self._cond:
            for event in events:
                self._seq += 1
                self._events.append((self._seq, event))
            self._cond.notify_all()

    def since(self, after: int) -> list[tuple[int, dict[str, Any]]] | None:
        """Events newer than ``after``; ``None`` if some of them have left the backlog."""
        with self._cond:
            return self._since(after)

    def _since(self, after: int) -> list[tuple[int, dict[str, Any]]] | None:
        if after >= self._seq:
            return []
        if not self._events or self._events[0][0] > after + 1:
            return None
        # Sequence numbers are contiguous with the newest last, so the answer is the
        # tail: O(events returned), not O(backlog), which matters when hundreds of
        # readers wake for one event.
        tail = list(itertools.islice(reversed(self._events), self._seq - after))
        tail.reverse()
        return tail

    def wait(self, after: int, timeout: float) -> list[tuple[int, dict[str, Any]]] | None:
        """Block until there are events newer than ``after`` or ``timeout`` passes.

        Returns them (possibly an empty list on timeout or close), or ``None``
        when the reader fell behind the backlog and must reload full state.
        """
        with self._cond:
            if after >= self._seq and not self._closed:
                self._cond.wait_for(lambda: self._seq > after or self._closed, timeout)
            return self._since(after)

    def close(self) -> None:
        """Wake every reader so streams can end (used at shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def parse_last_event_id(self, value: str | None) -> int | None:
        """The sequence number in a ``Last-Event-ID`` made by this hub, else ``None``."""
        if not value or "-" not in value:
            return None
        epoch, _, seq = value.partition("-")
        if epoch != self.epoch or not seq.isdigit():
            return None
        seq_n = int(seq)
        return seq_n if seq_n <= self._seq else None

    def event_id(self, seq: int) -> str:
        """The SSE id for a sequence number: ``<epoch>-<seq>``, unique across restarts."""
        return f"{self.epoch}-{seq}"
