"""The in-process event hub: change events fanned out to live streams.

The store hands every committed batch of events to ``EventHub.publish``. Each
event gets a sequence number; a ring buffer keeps the recent ones so a client
that reconnects with ``Last-Event-ID`` can catch up.

The office's own screens go first. One change wakes every open stream, and
hundreds of patients' phones waking at once would each make the lobby TV wait
its turn for the GIL. Readers that wait with a ``Reader`` token (registered
displays and desks, signed-in staff) are woken at once; the others (the
crowd) when every first reader has come back for more, i.e. has written its
answer, or after ``hold_s`` at most, whichever comes first.

A ticket holder's stream is a first reader only for its own ticket: a
``Reader(ticket_id)`` is woken with the office's screens by an event about
that ticket (it was called, recalled, moved, ended), and with the crowd by any
other event (a position moved, say). Each such reader waits on its own
condition, so an event about one ticket wakes that ticket's streams alone.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from typing import Any


class Reader:
    """A first reader's token (see the module docstring); one per stream.

    ``ticket_id``: a holder's stream, first only for events about that ticket.
    """

    __slots__ = ("ticket_id", "_cond")

    def __init__(self, ticket_id: str | None = None) -> None:
        self.ticket_id = ticket_id
        self._cond: threading.Condition | None = None


class EventHub:
    """Thread-safe publish/wait over a bounded backlog of events."""

    def __init__(self, backlog: int = 2048, hold_s: float = 0.05) -> None:
        self.epoch = secrets.token_hex(4)
        self.hold_s = hold_s
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # the crowd
        self._first = threading.Condition(self._lock)  # first readers
        self._events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=backlog)
        self._seq = 0
        self._crowd_seq = 0  # what the crowd may see: the newest event released to it
        self._closed = False
        self._first_waiting: set[Reader] = set()  # first readers waiting now
        self._held: set[Reader] = set()  # first readers woken and not yet back
        self._hold_until: float | None = None
        self._releaser: threading.Thread | None = None
        self._releaser_cond = threading.Condition(self._lock)
        self._ticket_waiting: dict[str, set[Reader]] = {}  # holders' readers waiting now

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (0 before any)."""
        return self._seq

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Append events; wake the first readers now and the crowd after them."""
        with self._lock:
            for event in events:
                self._seq += 1
                self._events.append((self._seq, event))
            woken = self._wake_holders(events)
            if self._first_waiting:
                self._first.notify_all()
                self._held |= self._first_waiting
            if woken or self._first_waiting:
                if self._hold_until is None:
                    self._hold_until = time.monotonic() + self.hold_s
                    self._start_releaser()
                    self._releaser_cond.notify()
            elif not self._held:
                self._release()

    def _wake_holders(self, events: list[dict[str, Any]]) -> bool:
        """Wake the holders' readers of the tickets these events are about (under the lock)."""
        if not self._ticket_waiting:
            return False
        woken = False
        for ticket_id in {e.get("ticket_id") for e in events}:
            readers = self._ticket_waiting.get(ticket_id) if ticket_id else None
            if readers:
                for reader in readers:
                    assert reader._cond is not None
                    reader._cond.notify()
                self._held |= readers
                woken = True
        return woken

    def _release(self) -> None:
        """Let the crowd see everything published so far (under the lock)."""
        self._held.clear()
        self._hold_until = None
        self._crowd_seq = self._seq
        self._cond.notify_all()
        for readers in self._ticket_waiting.values():
            for reader in readers:
                assert reader._cond is not None
                reader._cond.notify()

    def _start_releaser(self) -> None:
        if self._releaser is None:
            self._releaser = threading.Thread(target=self._release_on_time,
                                              name="jonot-event-crowd", daemon=True)
            self._releaser.start()

    def _release_on_time(self) -> None:
        """Release the crowd when a hold lasts ``hold_s`` (a first reader is slow or gone)."""
        with self._lock:
            while not self._closed:
                if self._hold_until is None:
                    self._releaser_cond.wait()
                    continue
                left = self._hold_until - time.monotonic()
                if left > 0:
                    self._releaser_cond.wait(left)
                    continue
                self._release()

    def since(self, after: int) -> list[tuple[int, dict[str, Any]]] | None:
        """Events newer than ``after``; ``None`` if some of them have left the backlog."""
        with self._lock:
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

    def wait(self, after: int, timeout: float,
             reader: Reader | None = None) -> list[tuple[int, dict[str, Any]]] | None:
        """Block until there are events newer than ``after`` or ``timeout`` passes.

        Returns them (possibly an empty list on timeout or close), or ``None``
        when the reader fell behind the backlog and must reload full state.
        ``reader``: a first reader's token (woken before the crowd); calling
        ``wait`` again with it says it has written its answer to the last events.
        """
        with self._lock:
            if reader is None:
                if after >= self._crowd_seq and not self._closed:
                    self._cond.wait_for(lambda: self._crowd_seq > after or self._closed,
                                        timeout)
                return self._since(after)
            self._back(reader)
            if reader.ticket_id is not None:
                self._wait_holder(reader, after, timeout)
            elif after >= self._seq and not self._closed:
                self._first_waiting.add(reader)
                try:
                    self._first.wait_for(lambda: self._seq > after or self._closed, timeout)
                finally:
                    self._first_waiting.discard(reader)
            return self._since(after)

    def _wait_holder(self, reader: Reader, after: int, timeout: float) -> None:
        """Wait as a holder: until an event about the ticket, or the crowd's release."""
        if self._crowd_seq > after or self._closed:
            return
        if reader._cond is None:
            reader._cond = threading.Condition(self._lock)
        ticket_id = reader.ticket_id
        assert ticket_id is not None
        # Something about this ticket may be published but still held from the crowd.
        published = self._since(after)
        if published is None:
            return  # fell behind the backlog: the caller reloads at once
        if any(e.get("ticket_id") == ticket_id for _, e in published):
            self._held.add(reader)
            return
        waiting = self._ticket_waiting.setdefault(ticket_id, set())
        waiting.add(reader)
        try:
            reader._cond.wait_for(lambda: self._crowd_seq > after or reader in self._held
                                  or self._closed, timeout)
        finally:
            waiting.discard(reader)
            if not waiting and self._ticket_waiting.get(ticket_id) is waiting:
                del self._ticket_waiting[ticket_id]

    def leave(self, reader: Reader) -> None:
        """A first reader's stream has ended: the crowd no longer waits for it."""
        with self._lock:
            self._first_waiting.discard(reader)
            if reader.ticket_id is not None:
                self._ticket_waiting.get(reader.ticket_id, set()).discard(reader)
            self._back(reader)

    def _back(self, reader: Reader) -> None:
        if reader in self._held:
            self._held.discard(reader)
            if not self._held:
                self._release()

    def close(self) -> None:
        """Wake every reader so streams can end (used at shutdown)."""
        with self._lock:
            self._closed = True
            self._cond.notify_all()
            self._first.notify_all()
            self._releaser_cond.notify_all()
            for readers in self._ticket_waiting.values():
                for reader in readers:
                    assert reader._cond is not None
                    reader._cond.notify()

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
