"""A stateful property test: random queue traffic against a real store and a Python model.

Two queues, two or three desks with random queue orders and pick modes; random
joins (with and without priority), call-next per desk, call of a chosen ticket,
recall, complete, skip, cancel (customer or staff), return, transfer (to the end
or the front), reorder, priority changes and stale edits — on any ticket, so
refused moves are exercised as often as allowed ones. After every step the
stored state must match the model:

- numbers per origin queue are exactly 1..N (no gap, no duplicate);
- a ticket is called by at most one desk at a time, and never called again
  while CALLED: one open interaction exactly while CALLED, one row per call;
- the positions of the waiting tickets of a queue are exactly 1..W, in the
  model's order (priority first, then the queue's order);
- terminal tickets never change again (the stored rows are compared);
- ``version`` goes up by one on each change, and nothing changes without it.
"""

from __future__ import annotations

import itertools
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from jonot_local.db import Store, open_store
from jonot_local.domain import queues, status, tickets
from jonot_local.domain.errors import (
    InvalidTransition,
    QueueEmpty,
    ValidationError,
    VersionConflict,
)
from jonot_local.domain.model import (
    CALLED,
    CANCELED,
    COMPLETED,
    SKIPPED,
    TERMINAL,
    WAITING,
    Ticket,
)

# Bounded so the whole run takes a few seconds on CI's two cores.
MODEL_SETTINGS = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

DESK_QUEUES = [[0], [1], [0, 1], [1, 0]]
_PREFIXES = ("".join(p) for p in itertools.product(string.ascii_uppercase, repeat=3))


@dataclass
class M:
    """What the model knows of one ticket."""

    id: str
    number: int
    origin: int
    queue: int
    created: int
    priority: bool
    state: str = WAITING
    desk: int | None = None
    version: int = 1
    recall_count: int = 0
    canceled_by: str | None = None
    calls: list[list[Any]] = field(default_factory=list)  # [desk, outcome] per call


class QueueMachine(RuleBasedStateMachine):
    store: Store  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.queue_ids: list[str] = []
        self.desk_ids: list[str] = []
        self.desk_queues: list[list[int]] = []
        self.desk_modes: list[str] = []
        self.model: dict[str, M] = {}
        self.ids: list[str] = []  # in issue order
        self.order: list[list[str]] = [[], []]  # live (waiting or called) tickets, in order
        self.last_number = [0, 0]
        self.frozen: dict[str, Any] = {}  # terminal ticket -> (row, interactions) when it ended
        self.seen: dict[str, dict[str, Any]] = {}  # last stored row of every ticket

    # -- set-up -----------------------------------------------------------------------------

    @initialize(desks=st.lists(st.tuples(st.sampled_from(DESK_QUEUES),
                                         st.sampled_from(["queue_order", "oldest"])),
                               min_size=2, max_size=3))
    def set_up(self, desks: list[tuple[list[int], str]]) -> None:
        with self.store.write() as tx:
            for _ in range(2):
                prefix = next(_PREFIXES)
                self.queue_ids.append(
                    queues.create_queue(tx, name=f"Queue {prefix}", prefix=prefix).id)
            for i, (qs, mode) in enumerate(desks):
                desk = queues.create_desk(tx, name=f"Desk {self.queue_ids[0]}-{i}",
                                          queue_ids=[self.queue_ids[q] for q in qs],
                                          pick_mode=mode)
                self.desk_ids.append(desk.id)
                self.desk_queues.append(qs)
                self.desk_modes.append(mode)

    # -- model helpers ----------------------------------------------------------------------

    def service_order(self, q: int) -> list[str]:
        waiting = [i for i in self.order[q] if self.model[i].state == WAITING]
        return ([i for i in waiting if self.model[i].priority]
                + [i for i in waiting if not self.model[i].priority])

    def expected_next(self, d: int) -> str | None:
        heads = [self.service_order(q)[0] for q in self.desk_queues[d] if self.service_order(q)]
        if not heads:
            return None
        if self.desk_modes[d] == "queue_order":
            return heads[0]
        # "oldest" is issue order: the office-wide order key, which a transfer or a move
        # gives anew (store_matches_model checks the keys agree with each queue's order).
        with self.store.read() as tx:
            keys = {r["id"]: r["order_key"] for r in tx.all(
                "SELECT id, order_key FROM tickets WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(heads),))}
        return min(heads, key=lambda i: (not self.model[i].priority, keys[i]))

    def pick(self, n: int, fit: bool = False, *states: str) -> M:
        """Ticket ``n`` (mod count); with ``fit``, one in ``states`` if there is one.

        Rules ask half the time for a ticket the action suits and half the time
        for any ticket, so that allowed and refused moves both come up often.
        """
        ids = [i for i in self.ids if fit and self.model[i].state in states] or self.ids
        return self.model[ids[n % len(ids)]]

    def write(self, fn: Any, *args: Any, **kw: Any) -> Any:
        with self.store.write() as tx:
            return fn(tx, *args, **kw)

    def refused(self, error: type[Exception], fn: Any, *args: Any, **kw: Any) -> None:
        """The call must raise ``error``; the invariants then check nothing changed."""
        with pytest.raises(error):
            self.write(fn, *args, **kw)

    def changed(self, t: M, returned: tickets.Ticket) -> None:
        t.version += 1
        assert returned.version == t.version and returned.state == t.state

    def end_call(self, t: M, outcome: str) -> None:
        assert t.calls and t.calls[-1][1] is None
        t.calls[-1][1] = outcome

    def leave(self, t: M, state: str) -> None:
        self.order[t.queue].remove(t.id)
        t.state = state

    def do_call(self, t: M, d: int) -> None:
        t.state, t.desk, t.recall_count = CALLED, d, 0
        t.calls.append([d, None])

    # -- rules ------------------------------------------------------------------------------

    @rule(q=st.integers(0, 1), priority=st.booleans())
    def join(self, q: int, priority: bool) -> None:
        ticket = self.write(tickets.join, self.queue_ids[q], source="kiosk", priority=priority)
        self.last_number[q] += 1
        assert ticket.number == self.last_number[q]
        self.model[ticket.id] = M(ticket.id, ticket.number, q, q, len(self.ids), priority)
        self.ids.append(ticket.id)
        self.order[q].append(ticket.id)

    @rule(joins=st.lists(st.tuples(st.integers(0, 1), st.booleans()), min_size=2, max_size=4))
    def join_several(self, joins: list[tuple[int, bool]]) -> None:
        for q, priority in joins:
            self.join(q, priority)

    @rule(d=st.integers(0, 2))
    def call_next(self, d: int) -> None:
        d %= len(self.desk_ids)
        expected = self.expected_next(d)
        if expected is None:
            self.refused(QueueEmpty, tickets.call_next, self.desk_ids[d])
            return
        called = self.write(tickets.call_next, self.desk_ids[d])
        assert called.id == expected
        t = self.model[expected]
        self.do_call(t, d)
        self.changed(t, called)

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), d=st.integers(0, 2), fit=st.booleans())
    def call(self, n: int, d: int, fit: bool) -> None:
        t, d = self.pick(n, fit, WAITING), d % len(self.desk_ids)
        if t.state != WAITING:
            self.refused(InvalidTransition, tickets.call, t.id, self.desk_ids[d])
            return
        self.do_call(t, d)
        self.changed(t, self.write(tickets.call, t.id, self.desk_ids[d], version=t.version))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), fit=st.booleans())
    def recall(self, n: int, fit: bool) -> None:
        t = self.pick(n, fit, CALLED)
        if t.state != CALLED:
            self.refused(InvalidTransition, tickets.recall, t.id)
            return
        t.recall_count += 1
        self.changed(t, self.write(tickets.recall, t.id))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), skip=st.booleans(), fit=st.booleans())
    def finish(self, n: int, skip: bool, fit: bool) -> None:
        t = self.pick(n, fit, CALLED)
        fn = tickets.skip if skip else tickets.complete
        if t.state != CALLED:
            self.refused(InvalidTransition, fn, t.id)
            return
        self.end_call(t, "skipped" if skip else "completed")
        self.leave(t, SKIPPED if skip else COMPLETED)
        self.changed(t, self.write(fn, t.id, version=t.version))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), by=st.sampled_from(["customer", "staff"]),
          fit=st.booleans())
    def cancel(self, n: int, by: str, fit: bool) -> None:
        t = self.pick(n, fit, WAITING, CALLED)
        if t.state not in (WAITING, CALLED):
            self.refused(InvalidTransition, tickets.cancel, t.id, by=by)
            return
        if t.state == CALLED:
            self.end_call(t, "canceled")
        self.leave(t, CANCELED)
        t.canceled_by = by
        self.changed(t, self.write(tickets.cancel, t.id, by=by))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), fit=st.booleans())
    def return_to_queue(self, n: int, fit: bool) -> None:
        t = self.pick(n, fit, CALLED)
        if t.state != CALLED:
            self.refused(InvalidTransition, tickets.return_to_queue, t.id)
            return
        self.end_call(t, "returned")
        t.state = WAITING  # keeps its place in self.order
        self.changed(t, self.write(tickets.return_to_queue, t.id))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), to_front=st.booleans(), fit=st.booleans())
    def transfer(self, n: int, to_front: bool, fit: bool) -> None:
        t = self.pick(n, fit, CALLED)
        target = 1 - t.queue
        if t.state != CALLED:
            self.refused(InvalidTransition, tickets.transfer, t.id, self.queue_ids[target])
            return
        self.end_call(t, "transferred")
        self.leave(t, WAITING)
        t.queue = target
        if to_front:
            self.order[target].insert(0, t.id)
        else:
            self.order[target].append(t.id)
        self.changed(t, self.write(tickets.transfer, t.id, self.queue_ids[target],
                                   to_front=to_front))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), fit=st.booleans())
    def reorder_to_front(self, n: int, fit: bool) -> None:
        t = self.pick(n, fit, WAITING)
        if t.state != WAITING:
            self.refused(InvalidTransition, tickets.reorder, t.id, after=None)
            return
        self.order[t.queue].remove(t.id)
        self.order[t.queue].insert(0, t.id)
        self.changed(t, self.write(tickets.reorder, t.id, after=None, version=t.version))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), a=st.integers(0, 10_000), neighbour=st.booleans(),
          fit=st.booleans())
    def reorder_after(self, n: int, a: int, neighbour: bool, fit: bool) -> None:
        t = self.pick(n, fit, WAITING)
        candidates = [i for i in self.order[t.queue]
                      if i != t.id and self.model[i].state == WAITING]
        if neighbour and candidates:
            anchor = self.model[candidates[a % len(candidates)]]
        else:
            anchor = self.pick(a)
        if t.state != WAITING:
            self.refused(InvalidTransition, tickets.reorder, t.id, after=anchor.id)
            return
        if anchor.id not in candidates:
            self.refused(ValidationError, tickets.reorder, t.id, after=anchor.id)
            return
        order = self.order[t.queue]
        order.remove(t.id)
        order.insert(order.index(anchor.id) + 1, t.id)
        self.changed(t, self.write(tickets.reorder, t.id, after=anchor.id))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), fit=st.booleans())
    def toggle_priority(self, n: int, fit: bool) -> None:
        t = self.pick(n, fit, WAITING, CALLED)
        value = "normal" if t.priority else "priority"
        if t.state in TERMINAL:
            self.refused(InvalidTransition, tickets.update, t.id, version=t.version,
                         priority=value)
            return
        t.priority = not t.priority
        self.changed(t, self.write(tickets.update, t.id, version=t.version, priority=value))

    @precondition(lambda self: self.ids)
    @rule(n=st.integers(0, 10_000), action=st.sampled_from(["update", "complete", "cancel"]))
    def stale_version(self, n: int, action: str) -> None:
        t = self.pick(n)
        stale = t.version - 1
        if action == "update":
            self.refused(VersionConflict, tickets.update, t.id, version=stale, notes="x")
        elif action == "complete":
            self.refused(VersionConflict, tickets.complete, t.id, version=stale)
        else:
            self.refused(VersionConflict, tickets.cancel, t.id, by="staff", version=stale)

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        if not self.queue_ids:
            return
        with self.store.read() as tx:
            self._check_numbers(tx)
            rows = {r["id"]: dict(r) for r in tx.all(
                "SELECT * FROM tickets WHERE origin_queue_id IN (?, ?)", self.queue_ids)}
            calls: dict[str, list[dict[str, Any]]] = {i: [] for i in rows}
            for r in tx.all("SELECT i.* FROM interactions i JOIN tickets t ON t.id = "
                            "i.ticket_id WHERE t.origin_queue_id IN (?, ?) ORDER BY i.id",
                            self.queue_ids):
                calls[r["ticket_id"]].append(dict(r))
            assert set(rows) == set(self.model)
            for tid, t in self.model.items():
                self._check_ticket(t, rows[tid], calls[tid])
            for q in (0, 1):
                self._check_positions(tx, q, rows)

    def _check_numbers(self, tx: Any) -> None:
        for q, queue_id in enumerate(self.queue_ids):
            numbers = [r["number"] for r in tx.all(
                "SELECT number FROM tickets WHERE origin_queue_id = ? ORDER BY number",
                (queue_id,))]
            assert numbers == list(range(1, self.last_number[q] + 1))
            last = tx.one("SELECT last_number FROM queues WHERE id = ?", (queue_id,))[0]
            assert last == self.last_number[q]

    def _check_ticket(self, t: M, row: dict[str, Any], calls: list[dict[str, Any]]) -> None:
        assert row["state"] == t.state
        assert row["version"] == t.version
        assert row["queue_id"] == self.queue_ids[t.queue]
        assert row["origin_queue_id"] == self.queue_ids[t.origin]
        assert row["number"] == t.number
        assert row["priority"] == (1 if t.priority else 0)
        assert row["recall_count"] == t.recall_count
        assert row["canceled_by"] == t.canceled_by
        assert row["desk_id"] == (self.desk_ids[t.desk] if t.desk is not None else None)
        # One interaction per call; one open exactly while CALLED, at the ticket's desk.
        assert [[self.desk_ids.index(c["desk_id"]), c["outcome"]] for c in calls] == t.calls
        open_calls = [c for c in calls if c["ended_at"] is None]
        assert len(open_calls) == (1 if t.state == CALLED else 0)
        if open_calls:
            assert open_calls[0]["desk_id"] == row["desk_id"]
        assert all((c["ended_at"] is None) == (c["outcome"] is None) for c in calls)
        # Nothing changes without a new version (order keys may be respaced).
        prev = self.seen.get(t.id)
        if prev is not None and prev["version"] == row["version"]:
            assert {**prev, "order_key": 0} == {**row, "order_key": 0}
        self.seen[t.id] = row
        if t.state in TERMINAL:
            frozen = self.frozen.setdefault(t.id, (row, calls))
            assert (row, calls) == frozen, "a terminal ticket changed"

    def _check_positions(self, tx: Any, q: int, rows: dict[str, dict[str, Any]]) -> None:
        placed = []
        for row in rows.values():
            if row["queue_id"] == self.queue_ids[q] and row["state"] == WAITING:
                placed.append((status.position(tx, Ticket.from_row(row)), row["id"]))
        placed.sort()
        assert [p for p, _ in placed] == list(range(1, len(placed) + 1))
        assert [i for _, i in placed] == self.service_order(q)


def test_queue_model(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data", pool_size=1)
    # Durability is not under test here: skip the fsync of every commit to keep it fast.
    with store.connection() as conn:
        conn.execute("PRAGMA synchronous = OFF")
    QueueMachine.store = store
    try:
        run_state_machine_as_test(QueueMachine, settings=MODEL_SETTINGS)
    finally:
        store.close()
