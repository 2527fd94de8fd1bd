"""The store's write path: group commit, and the waiting counts kept by triggers.

Group commit: concurrent write blocks share one transaction and one WAL sync;
each still commits, or fails, on its own terms (a block that raises undoes only
itself), every block's changes are durable when ``write`` (or ``run``) returns,
and change events reach listeners in commit order. ``run`` blocks, run by
whichever thread finds the write lock free, give each caller its own result or
error, also mixed with ``write`` blocks.

Waiting counts: ``queue_waiting`` (kept by triggers) always equals a count of
the waiting tickets, through every transition, and a join's position read from
it equals the position counted the long way.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from typing import Any

import pytest

from jonot_local.db import DB_FILENAME, Store, open_store
from jonot_local.domain import queues, status, tickets
from jonot_local.domain.errors import DomainError

THREADS = 12
PER_THREAD = 40


@pytest.fixture
def raw_store(tmp_path: Any) -> Any:
    store = open_store(tmp_path / "data")
    with store.write() as tx:
        tx.execute("CREATE TABLE t (thread INTEGER, i INTEGER, PRIMARY KEY (thread, i))")
    yield store
    store.close()


def _at_commit(store: Store, action: Any) -> sqlite3.Connection:
    """Wrap the store's write connection so ``action(conn)`` runs before every COMMIT (it
    may raise instead); returns the real connection, to put back."""
    conn = store._write_connection()
    real = conn.execute

    class Wrapped:
        def __getattr__(self, name: str) -> Any:
            return getattr(conn, name)

        def execute(self, sql: str, params: Any = ()) -> Any:
            if sql == "COMMIT":
                action(conn)
            return real(sql, params)

    store._writer = Wrapped()  # type: ignore[assignment]
    return conn


def _count_commits(store: Store) -> list[int]:
    """Count the store's COMMITs from now on."""
    commits = [0]
    _at_commit(store, lambda conn: commits.__setitem__(0, commits[0] + 1))
    return commits


def _fail_commits(conn: sqlite3.Connection) -> None:
    conn.rollback()
    raise sqlite3.OperationalError("disk I/O error")


def _hammer(store: Store, fail_every: int = 0, how: str = "write") -> list[BaseException]:
    """``THREADS`` threads each write ``PER_THREAD`` rows, one block a row: with ``write``,
    ``run`` or (``mixed``) both by turns. Each ``run`` block's result is checked."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def block(tx: Any, n: int, i: int) -> tuple[int, int]:
        tx.execute("INSERT INTO t VALUES (?, ?)", (n, i))
        tx.emit({"thread": n, "i": i})
        if fail_every and i % fail_every == 0:
            raise ValueError("refused")
        return n, i

    def work(n: int) -> None:
        start.wait()
        for i in range(PER_THREAD):
            try:
                if how == "run" or (how == "mixed" and (n + i) % 2):
                    # The block is run by whichever thread finds the write lock free.
                    got = store.run(lambda tx, n=n, i=i: block(tx, n, i))
                    if got != (n, i):  # pragma: no cover - reported below
                        errors.append(AssertionError(f"{(n, i)} got {got}"))
                else:
                    with store.write() as tx:
                        block(tx, n, i)
            except ValueError:
                pass
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


@pytest.mark.parametrize("how", ["write", "run", "mixed"])
def test_concurrent_blocks_share_commits_and_all_are_durable(raw_store: Store, tmp_path: Any,
                                                             how: str):
    commits = _count_commits(raw_store)
    seen: list[dict[str, Any]] = []
    raw_store.listeners.append(seen.extend)
    assert _hammer(raw_store, how=how) == []
    blocks = THREADS * PER_THREAD
    assert commits[0] < blocks, "no two blocks ever shared a commit"
    # Durable and visible to another connection (another process would see the same).
    other = sqlite3.connect(tmp_path / "data" / DB_FILENAME)
    assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == blocks
    other.close()
    assert len(seen) == blocks
    # Events arrive in commit order: each thread's own events in the order it wrote them.
    for n in range(THREADS):
        assert [e["i"] for e in seen if e["thread"] == n] == list(range(PER_THREAD))


@pytest.mark.parametrize("how", ["write", "run", "mixed"])
def test_a_failing_block_undoes_only_itself(raw_store: Store, how: str):
    seen: list[dict[str, Any]] = []
    raw_store.listeners.append(seen.extend)
    assert _hammer(raw_store, fail_every=3, how=how) == []
    with raw_store.read() as tx:
        rows = {(r[0], r[1]) for r in tx.all("SELECT thread, i FROM t")}
    kept = {(n, i) for n in range(THREADS) for i in range(PER_THREAD) if i % 3}
    assert rows == kept
    assert {(e["thread"], e["i"]) for e in seen} == kept, "a rolled-back block's events went out"


def test_a_failing_block_alone_leaves_nothing_and_the_store_goes_on(raw_store: Store):
    # A block that opens its group's transaction runs without a savepoint: undoing it
    # is rolling the transaction back.
    seen: list[dict[str, Any]] = []
    raw_store.listeners.append(seen.extend)
    with pytest.raises(ValueError), raw_store.write() as tx:
        tx.execute("INSERT INTO t VALUES (1, 1)")
        tx.emit({"thread": 1, "i": 1})
        raise ValueError("refused")
    assert not raw_store._write_connection().in_transaction
    with raw_store.write() as tx:
        tx.execute("INSERT INTO t VALUES (2, 2)")
        tx.emit({"thread": 2, "i": 2})
    with raw_store.read() as tx:
        assert [tuple(r) for r in tx.all("SELECT thread, i FROM t")] == [(2, 2)]
    assert seen == [{"thread": 2, "i": 2}]


@pytest.mark.parametrize("how", ["write", "run"])
def test_a_commit_that_fails_fails_every_block_of_its_group(raw_store: Store, how: str):
    def insert(row: tuple[int, int]) -> None:
        sql = "INSERT INTO t VALUES (?, ?)"
        if how == "run":
            raw_store.run(lambda tx: tx.execute(sql, row))
        else:
            with raw_store.write() as tx:
                tx.execute(sql, row)

    conn = _at_commit(raw_store, _fail_commits)
    with pytest.raises(sqlite3.OperationalError, match="not saved"):
        insert((1, 1))
    raw_store._writer = conn
    insert((2, 2))  # the store goes on working
    with raw_store.read() as tx:
        assert [tuple(r) for r in tx.all("SELECT thread, i FROM t")] == [(2, 2)]


def test_a_run_block_returns_its_result_and_raises_its_own_error(raw_store: Store):
    assert raw_store.run(lambda tx: tx.execute("INSERT INTO t VALUES (1, 1)").rowcount) == 1

    def refused(tx: Any) -> None:
        tx.execute("INSERT INTO t VALUES (2, 2)")
        raise DomainError("refused")

    with pytest.raises(DomainError, match="refused"):
        raw_store.run(refused)
    assert not raw_store._write_connection().in_transaction
    with raw_store.read() as tx:
        assert [tuple(r) for r in tx.all("SELECT thread, i FROM t")] == [(1, 1)]


def test_a_run_block_queued_behind_an_open_write_is_run_when_it_ends(raw_store: Store):
    """A ``run`` block that finds the write lock held sleeps until its group is over; the
    ``write`` holder runs it (in its group) on its way out, within the block's wait."""
    entered, release = threading.Event(), threading.Event()
    results: list[Any] = []

    def writer() -> None:
        with raw_store.write() as tx:
            tx.execute("INSERT INTO t VALUES (1, 1)")
            entered.set()
            release.wait(10)

    def runner() -> None:
        results.append(raw_store.run(lambda tx: tx.execute("INSERT INTO t VALUES (2, 2)")
                                     .rowcount))

    w = threading.Thread(target=writer)
    w.start()
    assert entered.wait(10)
    r = threading.Thread(target=runner)
    r.start()
    while not raw_store._queued:  # the block is queued behind the held lock
        threading.Event().wait(0.001)
    release.set()
    w.join(10)
    r.join(10)
    assert results == [1]
    with raw_store.read() as tx:
        assert sorted(tuple(r) for r in tx.all("SELECT thread, i FROM t")) == [(1, 1), (2, 2)]


# -- waiting counts ----------------------------------------------------------------------

def _counted(tx: Any) -> dict[tuple[str, int], int]:
    rows = tx.all("SELECT queue_id, priority, COUNT(*) AS n FROM tickets "
                  "WHERE state = 'WAITING' GROUP BY queue_id, priority")
    return {(r["queue_id"], r["priority"]): r["n"] for r in rows}


def _kept(tx: Any) -> dict[tuple[str, int], int]:
    rows = tx.all("SELECT queue_id, priority, n FROM queue_waiting WHERE n != 0")
    return {(r["queue_id"], r["priority"]): r["n"] for r in rows}


def test_waiting_counts_follow_every_transition(store: Any):
    rng = random.Random(7)
    with store.write() as tx:
        qa = queues.create_queue(tx, name="Counts A", prefix="CA")
        qb = queues.create_queue(tx, name="Counts B", prefix="CB")
        desk = queues.create_desk(tx, name="Counts desk", queue_ids=[qa.id, qb.id])
    qids = [qa.id, qb.id]
    for step in range(400):
        with store.write() as tx:
            live = [tickets.Ticket.from_row(r) for r in tx.all(
                "SELECT * FROM tickets WHERE queue_id IN (?, ?) AND state IN "
                "('WAITING', 'CALLED')", qids)]
            waiting = [t for t in live if t.state == "WAITING"]
            called = [t for t in live if t.state == "CALLED"]
            move = rng.choice(["join", "join", "join", "call", "next", "complete", "skip",
                               "cancel", "return", "transfer", "priority", "reorder"])
            try:
                if move == "join" or not live:
                    details: dict[str, Any] = rng.choice([{}, {
                        "name": " Ann  Lee ", "phone": "040 1", "notes": "a\nb",
                        "labels": ["VIP", {"value": "x", "color": "f0f", "public": True}],
                        "extra": [{"title": "Reason", "value": "blood test"}]}])
                    joined = tickets.issue(tx, rng.choice(qids), source="desk",
                                           priority=rng.random() < 0.2, **details)
                    ticket = joined.ticket
                    assert ticket == tickets.get(tx, ticket.id), "the join's ticket is not the row"
                    assert (joined.position == status.position_at_tail(tx, ticket)
                            == status.position(tx, ticket))
                    # What the join read in its counter's statement is what the holder's
                    # status reads the long way.
                    assert status.status_of(joined.queue, joined.position, joined.desks,
                                            joined.now_serving, 300.0) == \
                        status.ticket_status(tx, ticket, 300.0)
                elif move == "next":
                    tickets.call_next(tx, desk.id)
                elif move == "call" and waiting:
                    tickets.call(tx, rng.choice(waiting).id, desk.id)
                elif move in ("complete", "skip", "return") and called:
                    fn = {"complete": tickets.complete, "skip": tickets.skip,
                          "return": tickets.return_to_queue}[move]
                    fn(tx, rng.choice(called).id)
                elif move == "transfer" and called:
                    tickets.transfer(tx, rng.choice(called).id, rng.choice(qids))
                elif move == "cancel":
                    tickets.cancel(tx, rng.choice(live).id, by="staff")
                elif move == "priority" and waiting:
                    t = rng.choice(waiting)
                    tickets.update(tx, t.id, version=t.version,
                                   priority=t.priority != "priority")
                elif move == "reorder" and len(waiting) > 1:
                    t, after = rng.sample(waiting, 2)
                    tickets.reorder(tx, t.id, after=after.id)
            except DomainError:
                pass
            assert _kept(tx) == _counted(tx), f"step {step}: {move}"
    with store.read() as tx:
        assert status.waiting_count(tx, qa.id) == sum(
            n for (q, _), n in _counted(tx).items() if q == qa.id)


def test_a_join_takes_the_next_order_key_in_its_insert(store: Any):
    """The insert reads the order sequence and its trigger advances it: keys go up one
    by one, a ticket inserted with a higher key raises the sequence (a join after it
    sorts after it), and a join runs two statements of its own."""
    with store.write() as tx:
        q = queues.create_queue(tx, name="Order keys", prefix="OK")
    with store.write() as tx:
        keys = [tickets.issue(tx, q.id).ticket.order_key for _ in range(3)]
        assert keys == [keys[0], keys[0] + 1, keys[0] + 2]
        row = dict(tx.one("SELECT * FROM tickets WHERE order_key = ?", (keys[-1],)))
        row.update(id="01HIGHKEY0000000000000000", number=999, code="OK999",
                   hash="high-key-hash", order_key=keys[-1] + 50.5)
        tx.execute(f"INSERT INTO tickets ({', '.join(row)}) VALUES "
                   f"({', '.join('?' * len(row))})", list(row.values()))
        ran: list[str] = []
        tx.conn.set_trace_callback(ran.append)
        try:
            after = tickets.issue(tx, q.id).ticket
        finally:
            tx.conn.set_trace_callback(None)
        assert after.order_key == keys[-1] + 51
        assert after == tickets.get(tx, after.id)
        # SQLite traces the insert again for each trigger it fires: two statements.
        assert len(dict.fromkeys(ran)) == 2, ran
        assert float(tx.one("SELECT value FROM settings WHERE key = 'order_seq'")["value"]) \
            == after.order_key
